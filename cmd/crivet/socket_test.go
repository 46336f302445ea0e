package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The CRI socket serves with mode 0660, and it appears at its path only by
// a rename of the finished socket (inotify sees IN_MOVED_TO, never
// IN_CREATE), so there is no moment when it is there with the umask's mode.
func TestCRISocketAppearsWithItsFinalMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "crivet.sock")
	// A permissive umask, under which a socket bound in place would be
	// created 0777 until chmod.
	old := syscall.Umask(0)
	defer syscall.Umask(old)

	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_ATTRIB); err != nil {
		t.Fatal(err)
	}

	lis, err := listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()

	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	// Queued events: read once, they are all there.
	var seen []uint32
	buf := make([]byte, 64<<10)
	n, err := unix.Read(fd, buf)
	if err != nil {
		t.Fatalf("read inotify events: %v", err)
	}
	for off := 0; off+unix.SizeofInotifyEvent <= n; {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
		if string(bytes.TrimRight(name, "\x00")) == "crivet.sock" {
			seen = append(seen, ev.Mask)
		}
		off += unix.SizeofInotifyEvent + int(ev.Len)
	}
	if len(seen) != 1 || seen[0]&unix.IN_MOVED_TO == 0 {
		t.Fatalf("events on the socket path %#x, want one IN_MOVED_TO (%#x): created or changed in place", seen, unix.IN_MOVED_TO)
	}
	// Nothing left of the private directory it was bound in.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("directory holds %v, want only the socket", entries)
	}

	// It serves.
	go func() {
		if c, err := lis.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the socket: %v", err)
	}
	c.Close()
}
