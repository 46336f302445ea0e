package runtime

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// health remembers the last binary that answered, keyed by the file's
// identity, so Status (kubelet asks every few seconds) costs one stat
// unless the binary changed. A failure is not remembered: it is checked
// again at the next call, so a node recovers as soon as the binary does.
type health struct {
	mu sync.Mutex
	ok binID
}

type binID struct {
	ino, size int64
	mtime     time.Time
}

// Ready reports whether the runtime binary can run containers: it exists,
// is executable, and answers `--version`. Checked live, so a binary
// removed or replaced by a broken one turns the node NotReady.
func (r *Runtime) Ready(ctx context.Context) error {
	fi, err := os.Stat(r.cfg.Runc)
	if err != nil {
		return fmt.Errorf("runtime binary: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("runtime binary %s: not an executable file", r.cfg.Runc)
	}
	id := binID{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.ino = int64(st.Ino)
	}
	r.health.mu.Lock()
	defer r.health.mu.Unlock()
	if id == r.health.ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.cfg.Runc, "--version").CombinedOutput()
	if err != nil {
		err = fmt.Errorf("runtime binary %s --version: %w: %s", r.cfg.Runc, err, strings.TrimSpace(string(out)))
	}
	if err == nil {
		r.health.ok = id
	}
	return err
}
