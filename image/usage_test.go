package image

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crivet/crivet/test/fixtures"
)

// The store is walked once, not at each ImageFsInfo (every CRI client
// connection asks for it); a pull or a removal renews the measurement in
// the background, and the answer says when it was measured.
func TestFsUsageIsCachedAndRenewedAfterChanges(t *testing.T) {
	e := newEnv(t)
	e.mustPull(fixtures.PushImage(t, e.ref("usage/a:1"), 256<<10).Ref, "")
	first, err := e.svc.FsUsage()
	if err != nil {
		t.Fatal(err)
	}
	if first.UsedBytes == 0 || first.InodesUsed == 0 || time.Since(first.Timestamp) > time.Minute {
		t.Fatalf("first measurement: %+v", first)
	}
	again, _ := e.svc.FsUsage()
	if !again.Timestamp.Equal(first.Timestamp) {
		t.Fatalf("measured again at once (%v, then %v): the answer was not kept", first.Timestamp, again.Timestamp)
	}

	e.mustPull(fixtures.PushImage(t, e.ref("usage/b:1"), 4<<20).Ref, "")
	if u, _ := e.svc.FsUsage(); !u.Timestamp.Equal(first.Timestamp) {
		t.Fatalf("measured again within %s of the last measurement", usageChangedAge)
	}
	time.Sleep(usageChangedAge + 100*time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for {
		u, err := e.svc.FsUsage() // the first call past the age starts the renewal
		if err != nil {
			t.Fatal(err)
		}
		if u.Timestamp.After(first.Timestamp) {
			if u.UsedBytes < first.UsedBytes+4<<20 {
				t.Fatalf("renewed usage %d bytes; want at least %d more than %d (a 4 MiB layer was pulled)", u.UsedBytes, 4<<20, first.UsedBytes)
			}
			// Layers counted from what was kept add up to a whole walk.
			again, err := e.svc.measureUsage()
			if err != nil {
				t.Fatal(err)
			}
			if full := walkUsage(e.svc.GraphRoot(), nil); again.UsedBytes != full.bytes || again.InodesUsed != full.inodes {
				t.Fatalf("usage with kept layer counts %d bytes, %d inodes; a whole walk finds %d, %d", again.UsedBytes, again.InodesUsed, full.bytes, full.inodes)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the measurement was not renewed after a pull")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The store is measured when it is opened, before anyone asks; callers
// that come first wait for that one measurement rather than walk again.
func TestFsUsageIsMeasuredAtOpen(t *testing.T) {
	e := newEnv(t)
	e.svc.usage.mu.Lock()
	started := e.svc.usage.measuring || e.svc.usage.have
	e.svc.usage.mu.Unlock()
	if !started {
		t.Fatal("opening the store started no measurement")
	}
	var wg sync.WaitGroup
	got := make([]Usage, 4)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u, err := e.svc.FsUsage()
			if err != nil {
				t.Error(err)
			}
			got[i] = u
		}()
	}
	wg.Wait()
	for _, u := range got[1:] {
		if !u.Timestamp.Equal(got[0].Timestamp) || u.Timestamp.IsZero() {
			t.Fatalf("concurrent first calls got different measurements: %v", got)
		}
	}
}

// A container's writable layer counts what the container wrote: each new
// file and directory one inode, each file its bytes; the bytes are the
// store's own DiffSize of the layer. Writes go to new top-level entries so
// overlay copies nothing up.
func TestRootfsUsageCountsTheWritableLayersInodes(t *testing.T) {
	e := newEnv(t)
	img := e.mustPull(fixtures.PushImage(t, e.ref("usage/rootfs:1"), 64<<10).Ref, "")
	root, err := e.svc.CreateRootfs("usage-c", img, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.svc.RemoveRootfs("usage-c") })
	before, err := e.svc.RootfsUsage("usage-c")
	if err != nil {
		t.Fatal(err)
	}
	if before.Inodes == 0 {
		t.Fatalf("usage %+v: no inodes counted for an overlay layer", before)
	}
	for i := range 5 {
		writeFile(t, filepath.Join(root, "written", fmt.Sprintf("f%d", i)), strings.Repeat("x", 1000))
	}
	after, err := e.svc.RootfsUsage("usage-c")
	if err != nil {
		t.Fatal(err)
	}
	if after.Inodes != before.Inodes+6 || after.Bytes != before.Bytes+5000 {
		t.Errorf("after writing a directory of 5 files of 1000 bytes: %+v, before %+v; want 6 inodes and 5000 bytes more", after, before)
	}
	c, err := e.svc.store.Container("usage-c")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e.svc.store.DiffSize("", c.LayerID); err != nil || uint64(n) != after.Bytes {
		t.Errorf("DiffSize %d (%v), RootfsUsage %d bytes", n, err, after.Bytes)
	}
}
