package monitor

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// clientQueue is how many output chunks (up to ioChunk each) an attach
// client may lag behind. A client that falls further behind is disconnected
// rather than allowed to stall the container's output and its log.
const clientQueue = 128

type client struct {
	conn net.Conn
	out  chan outFrame
	done chan struct{} // closed when the writer has finished
}

type outFrame struct {
	kind byte
	p    []byte
}

func (m *monitor) listen() error {
	path, release, err := unixPath(m.dir, socketName)
	if err != nil {
		return err
	}
	defer release()
	os.Remove(filepath.Join(m.dir, socketName))
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return err
	}
	// The bound name may be a /proc/self/fd path that means nothing later;
	// finish removes the socket by its real name.
	ln.SetUnlinkOnClose(false)
	m.ln = ln
	return nil
}

func (m *monitor) serve() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		go m.serveConn(c)
	}
}

func (m *monitor) serveConn(c net.Conn) {
	br := bufio.NewReaderSize(c, ioChunk)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := br.ReadSlice('\n')
	if err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		writeJSONLine(c, reply{Error: "bad request: " + err.Error()})
		c.Close()
		return
	}
	switch req.Op {
	case "attach":
		m.attach(c, br, req)
	case "reopen":
		var rep reply
		if err := m.log.reopen(); err != nil {
			rep.Error = err.Error()
		}
		writeJSONLine(c, rep)
		c.Close()
	case "wait":
		gone := make(chan struct{})
		go func() { io.Copy(io.Discard, br); close(gone) }()
		select {
		case <-m.exited:
			e := m.exit
			writeJSONLine(c, reply{Exit: &e})
		case <-gone:
		}
		c.Close()
	default:
		writeJSONLine(c, reply{Error: "unknown op " + req.Op})
		c.Close()
	}
}

// attach streams output from now on to c, and feeds c's stdin and resize
// frames to the container, until either side ends.
func (m *monitor) attach(c net.Conn, br *bufio.Reader, req request) {
	cl := &client{conn: c, out: make(chan outFrame, clientQueue), done: make(chan struct{})}
	m.mu.Lock()
	select {
	case <-m.exited:
		m.mu.Unlock()
		b, _ := json.Marshal(m.exit)
		writeFrame(c, frameExit, b)
		c.Close()
		return
	default:
	}
	m.clients[cl] = struct{}{}
	m.mu.Unlock()

	go m.writeClient(cl)

	stdinEnded := false
	buf := make([]byte, ioChunk)
	for {
		kind, p, err := readFrame(br, buf)
		if err != nil {
			break
		}
		switch kind {
		case frameStdin:
			if req.Stdin && !stdinEnded {
				m.writeStdin(p)
			}
		case frameStdinClose:
			if req.Stdin && !stdinEnded {
				stdinEnded = true
				m.stdinEnded()
			}
		case frameResize:
			if len(p) == 4 {
				m.resize(binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:]))
			}
		}
	}
	// A client that hangs up ends its stdin too.
	if req.Stdin && !stdinEnded {
		m.stdinEnded()
	}
	m.drop(cl)
}

func (m *monitor) writeClient(cl *client) {
	defer close(cl.done)
	defer cl.conn.Close()
	for f := range cl.out {
		if err := writeFrame(cl.conn, f.kind, f.p); err != nil {
			m.drop(cl)
			for range cl.out {
			}
			return
		}
	}
}

// drop stops sending to cl; its writer then flushes what is queued and hangs up.
func (m *monitor) drop(cl *client) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.clients[cl]; ok {
		delete(m.clients, cl)
		close(cl.out)
	}
}

func (m *monitor) broadcast(kind byte, p []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.clients) == 0 {
		return
	}
	f := outFrame{kind, bytes.Clone(p)}
	for cl := range m.clients {
		select {
		case cl.out <- f:
		default:
			m.diagf("attach client is %d chunks behind; disconnecting it", clientQueue)
			delete(m.clients, cl)
			close(cl.out)
		}
	}
}

func (m *monitor) writeStdin(p []byte) {
	m.stdinMu.Lock()
	defer m.stdinMu.Unlock()
	if m.stdin == nil || m.stdinClosed {
		return
	}
	if _, err := m.stdin.Write(p); err != nil {
		m.diagf("write stdin: %v", err)
	}
}

// stdinEnded applies StdinOnce (CRI ContainerConfig.stdin_once: stdin is
// closed after the first attach session ends).
func (m *monitor) stdinEnded() {
	if !m.cfg.StdinOnce {
		return
	}
	m.stdinMu.Lock()
	defer m.stdinMu.Unlock()
	if m.stdin == nil || m.stdinClosed {
		return
	}
	m.stdinClosed = true
	if m.cfg.Tty {
		// The master carries the output too, so it stays open; end-of-file
		// on a terminal is the VEOF character (^D in canonical mode).
		m.stdin.Write([]byte{4})
		return
	}
	m.stdin.Close()
}

func (m *monitor) resize(width, height uint16) {
	if !m.cfg.Tty || m.out == nil {
		return
	}
	rc, err := m.out.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		if err := unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: height, Col: width}); err != nil {
			m.diagf("resize console: %v", err)
		}
	})
}

// finish publishes the exit to waiters and attach clients and stops serving.
func (m *monitor) finish(e Exit) {
	m.ln.Close()
	os.Remove(filepath.Join(m.dir, socketName))
	b, _ := json.Marshal(e)
	m.mu.Lock()
	m.exit = e
	close(m.exited)
	clients := m.clients
	m.clients = map[*client]struct{}{}
	for cl := range clients {
		select {
		case cl.out <- outFrame{frameExit, b}:
		default:
		}
		close(cl.out)
	}
	m.mu.Unlock()
	// Let the last output reach attached clients, within reason.
	deadline := time.After(2 * time.Second)
	for cl := range clients {
		select {
		case <-cl.done:
		case <-deadline:
			return
		}
	}
}
