package monitor

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The count read while memory.events existed decides after the file (the
// cgroup of a systemd scope) is gone; the real file is exercised in the
// cgroup-v2 guest (test/cgroupv2), this one is a plain file.
func TestOOMWatchKeepsTheCountOfAGoneCgroup(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "memory.events")
	write := func(kills string) {
		t.Helper()
		f, err := os.OpenFile(events, os.O_WRONLY|os.O_TRUNC|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("low 0\nhigh 0\nmax 3\noom 1\noom_kill " + kills + "\noom_group_kill 0\n"); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	write("0")
	base, err := oomKills(dir)
	if err != nil || base != 0 {
		t.Fatalf("oomKills %d %v", base, err)
	}
	w, err := watchOOM(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	write("1")
	for deadline := time.Now().Add(30 * time.Second); w.max.Load() != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the watch never read the new count; max %d", w.max.Load())
		}
	}
	os.Remove(events)
	if n, err := w.kills(dir); err != nil || n != 1 {
		t.Fatalf("kills after the file is gone: %d %v, want 1", n, err)
	}
	// Without a watch (v1), the file alone answers.
	var none *oomWatch
	if _, err := none.kills(dir); err == nil {
		t.Fatal("no watch, no file: want an error")
	}
}

func TestWatchOOMWithoutMemoryEvents(t *testing.T) {
	if _, err := watchOOM(t.TempDir(), 0); err == nil {
		t.Fatal("watch of a missing memory.events: want an error")
	}
}
