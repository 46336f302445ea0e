package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// rec is a record told apart by writer and sequence; its length is fixed
// for one-letter writers.
func rec(writer string, i int) Record {
	return Record{Stage: "pull", Namespace: "ns", Reference: fmt.Sprintf("reg.example/%s:%04d", writer, i), Outcome: "allowed"}
}

func lineLen(t *testing.T) int64 {
	t.Helper()
	b, err := json.Marshal(rec("a", 0))
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(b) + 1)
}

// wholeLines reads path and fails unless it is only complete JSON lines.
func wholeLines(t *testing.T, path string) []Record {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("%s ends in a partial line: %q", path, data[max(0, len(data)-80):])
	}
	var out []Record
	for _, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("%s: line %.80q is not JSON: %v", path, line, err)
		}
		out = append(out, r)
	}
	return out
}

func TestRemovedFileIsRecreatedAtTheNextWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Write(rec("a", 1)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(rec("a", 2)); err != nil {
		t.Fatalf("write after the file was removed: %v", err)
	}
	if got := wholeLines(t, path); len(got) != 1 || got[0].Reference != rec("a", 2).Reference {
		t.Fatalf("recreated file holds %+v, want the one record written after the removal", got)
	}

	// Replaced (say, by an operator's logrotate with create): the next
	// record goes to the file the path names, not the one moved away.
	other := path + ".new"
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(rec("a", 3)); err != nil {
		t.Fatal(err)
	}
	if got := wholeLines(t, path); len(got) != 1 || got[0].Reference != rec("a", 3).Reference {
		t.Fatalf("replacing file holds %+v, want the record written after the replacement", got)
	}
	if got := wholeLines(t, path+".old"); len(got) != 1 {
		t.Fatalf("moved-away file holds %d records, want 1 (nothing written after the move)", len(got))
	}
}

func TestFailedRotationDoesNotStopLaterWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, 3*lineLen(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A non-empty directory where the previous file goes: the rename fails.
	if err := os.MkdirAll(filepath.Join(path+".1", "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := l.Write(rec("a", i)); err != nil {
			t.Fatal(err)
		}
	}
	err = l.Write(rec("a", 3))
	if err == nil || !strings.Contains(err.Error(), "rotate") {
		t.Fatalf("write needing a rotation that cannot rename: error %v, want a rotate error", err)
	}
	if got := wholeLines(t, path); len(got) != 4 {
		t.Fatalf("file holds %d records, want 4: the record goes to the file when the rotation fails", len(got))
	}
	// Once the cause is gone, rotation and writes work again.
	if err := os.RemoveAll(path + ".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(rec("a", 4)); err != nil {
		t.Fatalf("write after the rotation's cause cleared: %v", err)
	}
	if got := wholeLines(t, path); len(got) != 1 || got[0].Reference != rec("a", 4).Reference {
		t.Fatalf("current file after rotation holds %+v", got)
	}
	if got := wholeLines(t, path+".1"); len(got) != 4 {
		t.Fatalf("previous file holds %d records, want 4", len(got))
	}
}

// checkAll asserts that path and path.1 together hold every record of
// each writer exactly once, as whole JSON lines, each file within max.
func checkAll(t *testing.T, path string, maxSize int64, writers map[string]int) {
	t.Helper()
	seen := map[string]int{}
	for _, p := range []string{path + ".1", path} {
		for _, r := range wholeLines(t, p) {
			seen[r.Reference]++
		}
		if fi, err := os.Stat(p); err != nil {
			t.Fatalf("%v (want exactly one rotation)", err)
		} else if fi.Size() > maxSize {
			t.Errorf("%s is %d bytes, over the %d limit", p, fi.Size(), maxSize)
		}
	}
	total := 0
	for w, n := range writers {
		for i := range n {
			ref := rec(w, i).Reference
			if seen[ref] != 1 {
				t.Errorf("record %s found %d times, want once", ref, seen[ref])
			}
		}
		total += n
	}
	if len(seen) != total {
		t.Errorf("%d distinct records, want %d", len(seen), total)
	}
}

func TestTwoWritersShareOneRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	const perWriter = 25
	// Room for 30 lines a file: 50 lines rotate exactly once, so the
	// current and previous files must hold every record between them.
	maxSize := 30*lineLen(t) + lineLen(t)/2
	var wg sync.WaitGroup
	errs := make(chan error, 2*perWriter)
	for _, w := range []string{"a", "b"} {
		// Two Logs: two descriptors and two lock descriptions, as two
		// processes would have.
		l, err := Open(path, maxSize)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				if err := l.Write(rec(w, i)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkAll(t, path, maxSize, map[string]int{"a": perWriter, "b": perWriter})
}

const helperEnv = "AUDIT_TEST_HELPER"

// TestHelperWriter is the second process of
// TestAnotherProcessSharesTheRotation; alone, it does nothing.
func TestHelperWriter(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("helper process only")
	}
	// path|maxSize|writer|count
	parts := strings.Split(spec, "|")
	maxSize, _ := strconv.ParseInt(parts[1], 10, 64)
	n, _ := strconv.Atoi(parts[3])
	l, err := Open(parts[0], maxSize)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range n {
		if err := l.Write(rec(parts[2], i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAnotherProcessSharesTheRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	lineLen := lineLen(t)
	maxSize := 50*lineLen + lineLen/2
	l, err := Open(path, maxSize)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	write := func(from, to int) {
		for i := from; i < to; i++ {
			if err := l.Write(rec("p", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// In turns, so the other process rotates the file this one has open:
	// 20 lines here, 40 there (rotating at 50), 20 more here, which must
	// follow to the new file rather than grow the previous one.
	write(0, 20)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d|c|%d", helperEnv, path, maxSize, 40))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper process: %v\n%s", err, out)
	}
	write(20, 40)
	checkAll(t, path, maxSize, map[string]int{"p": 40, "c": 40})
	if fi, err := os.Stat(path); err != nil {
		t.Fatal(err)
	} else if fi.Size() != 30*lineLen {
		t.Fatalf("current file is %d bytes, want 30 lines (%d bytes) after the other process's rotation", fi.Size(), 30*lineLen)
	}
}

// TestDiskFullLeavesNoPartialLine fills a small tmpfs, so the kernel
// writes part of a line and then fails with ENOSPC.
func TestDiskFullLeavesNoPartialLine(t *testing.T) {
	dir := smallTmpfs(t, "size=64k")
	path := filepath.Join(dir, "audit.log")
	l, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Write(rec("a", 0)); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	filler := filepath.Join(dir, "filler")
	fill(t, filler)
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Bavail != 0 {
		t.Fatalf("%d blocks still free after filling", st.Bavail)
	}

	// Longer than a page: part of it fits in the file's last page, the
	// rest needs a page there is none of.
	big := rec("a", 1)
	big.Reason = strings.Repeat("r", 6000)
	err = l.Write(big)
	if err == nil {
		t.Fatal("write on a full disk succeeded")
	}
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %q: want ENOSPC naming the file", err)
	}
	t.Logf("error on a full disk: %v", err)
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, before) {
		t.Fatalf("file changed by the failed write: %d bytes before, %d after, ends %q", len(before), len(after), after[max(0, len(after)-40):])
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(big); err != nil {
		t.Fatalf("write once space is free again: %v", err)
	}
	got := wholeLines(t, path)
	if len(got) != 2 || got[0].Reference != rec("a", 0).Reference || got[1].Reason != big.Reason {
		t.Fatalf("file holds %d records, want the first and the one written after space was freed", len(got))
	}
}

// smallTmpfs mounts a tmpfs with options for the test, or skips it.
func smallTmpfs(t *testing.T, options string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, options); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	// Runs before TempDir's removal (cleanups run last first).
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// A rotation renames the file, then cannot create the new one (no inode
// left): the write fails, and once an inode is free the next write
// creates the file instead of failing on a closed one until restart.
func TestRotationThatCannotReopenRecovers(t *testing.T) {
	dir := smallTmpfs(t, "size=64k,nr_inodes=16")
	path := filepath.Join(dir, "audit.log")
	l, err := Open(path, 2*lineLen(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 2 {
		if err := l.Write(rec("a", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Take every inode left.
	filler := ""
	for i := 0; ; i++ {
		p := filepath.Join(dir, fmt.Sprintf("filler%d", i))
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
		filler = p
	}
	if filler == "" {
		t.Fatal("no inode was left to fill: the test proves nothing")
	}
	if err := l.Write(rec("a", 2)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write whose rotation cannot create the new file: %v, want ENOSPC", err)
	}
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Fatalf("the rotation did not rename: %v", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(rec("a", 3)); err != nil {
		t.Fatalf("write once an inode is free: %v", err)
	}
	if got := wholeLines(t, path); len(got) != 1 || got[0].Reference != rec("a", 3).Reference {
		t.Fatalf("new file holds %+v, want the record written after the inode was freed", got)
	}
	if got := wholeLines(t, path+".1"); len(got) != 2 {
		t.Fatalf("previous file holds %d records, want 2", len(got))
	}
}

// fill writes to path until the filesystem has no block left.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{4096, 1} {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
}
