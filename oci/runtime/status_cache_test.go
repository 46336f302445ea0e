package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/crivet/crivet/oci/monitor"
)

// While an exit watch runs, a live container's status is answered from
// memory; an exit nobody asked for (the init killed behind crivet's back)
// still shows up, because the monitor's exit record forgets the entry.
func TestCachedStatusFollowsExitsWhileWatched(t *testing.T) {
	e := newEnv(t)
	rt := e.runtime(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	exits, err := rt.WatchExits(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := run(t, rt, e, []string{"sleep", "100"}, CreateOptions{}, bundleOpts{})
	st, err := rt.Status(ctx, c.id)
	if err != nil || st.State != StateRunning {
		t.Fatalf("status: %+v, %v", st, err)
	}
	if _, ok := rt.cachedStatus(c.id); !ok {
		t.Fatal("running status not cached")
	}
	if err := syscall.Kill(st.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-exits:
		if id != c.id {
			t.Fatalf("exit of %s, want %s", id, c.id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit reported")
	}
	if st, err := rt.Status(ctx, c.id); err != nil || st.State != StateExited || st.ExitCode != 137 {
		t.Fatalf("after the exit was reported: %+v, %v", st, err)
	}

	// With the watch gone, a live status is checked against the kernel again.
	c2 := run(t, rt, e, []string{"sleep", "100"}, CreateOptions{}, bundleOpts{})
	cancel()
	eventually(t, 5*time.Second, "the watch to stop", func() bool { return rt.watching.Load() == 0 })
	st2, err := rt.Status(t.Context(), c2.id)
	if err != nil || st2.State != StateRunning {
		t.Fatalf("status: %+v, %v", st2, err)
	}
	syscall.Kill(st2.Pid, syscall.SIGKILL)
	eventually(t, 10*time.Second, "the unwatched exit to show", func() bool {
		st, err := rt.Status(t.Context(), c2.id)
		return err == nil && st.State == StateExited
	})
}

// An inotify queue that overflows loses events, exit records among them:
// the watch then looks at every container directory again, so every exit
// is still reported, once. The queue is made tiny (the limit is read when
// the watch is created) and the reader is held back, so it overflows.
func TestExitWatchRescansAfterAnInotifyOverflow(t *testing.T) {
	const limitFile = "/proc/sys/fs/inotify/max_queued_events"
	old, err := os.ReadFile(limitFile)
	if err != nil {
		t.Skipf("cannot read %s: %v", limitFile, err)
	}
	e := newEnv(t)
	rt := e.runtime(t)
	const n = 200
	for i := range n {
		if err := os.MkdirAll(filepath.Join(e.state, fmt.Sprintf("c%03d", i)), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(limitFile, []byte("4\n"), 0o644); err != nil {
		t.Skipf("cannot lower %s: %v", limitFile, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	exits, err := rt.WatchExits(ctx)
	if werr := os.WriteFile(limitFile, old, 0o644); werr != nil {
		t.Fatalf("restore %s: %v", limitFile, werr)
	}
	if err != nil {
		t.Fatal(err)
	}
	// Exit records appear as monitors write them: by rename. Nobody reads
	// the watch meanwhile, so its channel fills and the queue overflows.
	for i := range n {
		dir := filepath.Join(e.state, fmt.Sprintf("c%03d", i))
		tmp := filepath.Join(dir, "exit.tmp")
		if err := os.WriteFile(tmp, []byte(`{"exitCode":0}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, monitor.ExitFileName)); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	deadline := time.After(60 * time.Second)
	for len(seen) < n {
		select {
		case id := <-exits:
			seen[id]++
		case <-deadline:
			t.Fatalf("%d of %d exits reported after an overflow (overflows seen: %d)", len(seen), n, rt.watchOverflows.Load())
		}
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("exit of %s reported %d times", id, k)
		}
	}
	if rt.watchOverflows.Load() == 0 {
		t.Skip("the inotify queue never overflowed here; the rescan was not exercised")
	}
}
