package monitor

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// oomKills reads how many processes the kernel's OOM killer has killed in
// the cgroup ("oom_kill" in v1 memory.oom_control, since Linux 4.13, and in
// v2 memory.events).
func oomKills(dir string) (int64, error) {
	if dir == "" {
		return 0, errors.New("no memory cgroup")
	}
	b, err := os.ReadFile(filepath.Join(dir, "memory.oom_control"))
	if errors.Is(err, os.ErrNotExist) {
		b, err = os.ReadFile(filepath.Join(dir, "memory.events"))
	}
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "oom_kill "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no oom_kill counter")
}

// oomWatch follows a v2 memory.events file with inotify (the kernel marks
// it modified on every change) and keeps the highest oom_kill count read.
// Under the systemd driver the container's scope, and with it its cgroup,
// goes away as soon as its last process is gone, usually before the
// monitor reads the counter at exit: seen in the cgroup-v2 guest
// (test/cgroupv2) as an OOM-killed container reported as "Error". The
// count read while the cgroup still existed decides then.
type oomWatch struct {
	max atomic.Int64
}

// watchOOM starts following dir's memory.events; an error means there is
// no such file (cgroup v1, no memory controller) or no inotify.
func watchOOM(dir string, base int64) (*oomWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, filepath.Join(dir, "memory.events"), unix.IN_MODIFY); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch %s/memory.events: %w", dir, err)
	}
	w := &oomWatch{}
	w.max.Store(base)
	go w.follow(fd, dir)
	return w, nil
}

// follow re-reads the counter after each batch of events, until the watch
// ends (IN_IGNORED: the cgroup was removed) or the monitor exits.
func (w *oomWatch) follow(fd int, dir string) {
	defer unix.Close(fd)
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n < unix.SizeofInotifyEvent {
			return
		}
		if c, err := oomKills(dir); err == nil {
			w.raise(c)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			if ev.Mask&unix.IN_IGNORED != 0 {
				return
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}

func (w *oomWatch) raise(c int64) {
	for {
		old := w.max.Load()
		if c <= old || w.max.CompareAndSwap(old, c) {
			return
		}
	}
}

// kills is the highest count seen: the watch's, or the file's now.
func (w *oomWatch) kills(dir string) (int64, error) {
	n, err := oomKills(dir)
	if w == nil {
		return n, err
	}
	if err == nil {
		w.raise(n)
	}
	return w.max.Load(), nil
}
