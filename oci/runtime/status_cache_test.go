package runtime

import (
	"context"
	"syscall"
	"testing"
	"time"
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
