package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// listenUnix listens on a unix socket at path that is never reachable with
// a mode other than mode: bind(2) creates the socket file with the
// process's umask, so it is bound in a private (0700) directory beside
// path, given its mode there, and then renamed into place, which makes it
// appear at path with its final mode. The umask itself is left alone: it
// is process-wide, and goroutines already running would create their
// files under it.
func listenUnix(path string, mode os.FileMode) (net.Listener, error) {
	// Beside path, so the rename stays on one filesystem; a short name,
	// since a socket path must fit in 108 bytes.
	private, err := os.MkdirTemp(filepath.Dir(path), ".s")
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	defer os.RemoveAll(private)
	tmp := filepath.Join(private, "s")
	lis, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	// The name it was bound to is gone after the rename: closing must not
	// unlink whatever may later use that name. The caller removes path.
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, mode); err != nil {
		lis.Close()
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		lis.Close()
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return lis, nil
}
