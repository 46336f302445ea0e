package monitor

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// The control socket speaks one JSON request line, then either one JSON
// reply line (reopen, wait) or, for attach, length-prefixed frames both ways:
// kind (1 byte), payload length (uint32, big endian), payload.
type request struct {
	Op    string `json:"op"`              // "attach", "reopen" or "wait"
	Stdin bool   `json:"stdin,omitempty"` // attach: the client will send stdin
}

type reply struct {
	Error string `json:"error,omitempty"`
	Exit  *Exit  `json:"exit,omitempty"`
}

const (
	frameStdin      = 'i' // client → monitor: bytes for the container's stdin
	frameStdinClose = 'c' // client → monitor: the client's stdin ended
	frameResize     = 'r' // client → monitor: width, height (uint16 each)
	frameStdout     = 'o' // monitor → client
	frameStderr     = 'e' // monitor → client
	frameExit       = 'x' // monitor → client: Exit as JSON, then the monitor hangs up
)

// maxFrame bounds what a peer can make the other side allocate.
const maxFrame = 1 << 20

// ioChunk is how much output one read takes from the container, and so the
// largest output frame.
const ioChunk = 32 * 1024

func writeFrame(w io.Writer, kind byte, p []byte) error {
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	// One write per frame: net.Buffers turns this into writev.
	bufs := net.Buffers{hdr[:], p}
	_, err := bufs.WriteTo(w)
	return err
}

func readFrame(r io.Reader, buf []byte) (kind byte, p []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("frame of %d bytes is too large", n)
	}
	if int(n) > cap(buf) {
		buf = make([]byte, n)
	}
	p = buf[:n]
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	return hdr[0], p, nil
}

// maxSunPath is the room for a socket path in sockaddr_un, less the NUL.
const maxSunPath = 107

// unixPath gives a path for dir/name that fits in sockaddr_un. State
// directories can be deep (kubelet-style run roots, test temp dirs); a long
// one is reached through an O_PATH descriptor of dir, whose /proc/self/fd
// name is always short. The returned closer releases that descriptor once
// the socket is bound or connected.
func unixPath(dir, name string) (string, func(), error) {
	p := filepath.Join(dir, name)
	if len(p) <= maxSunPath {
		return p, func() {}, nil
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", fd, name), func() { unix.Close(fd) }, nil
}

// ErrGone says the container's monitor is not there to answer: the
// container has exited (or never got a monitor, or its monitor was killed).
var ErrGone = errors.New("container monitor is not running")

func isGone(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
