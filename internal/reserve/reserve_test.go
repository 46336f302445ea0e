package reserve

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

const testSize = 64 << 10

// newTest returns a reserve over a temporary root whose free space is
// *free, as the test sets it: the ballast itself is real.
func newTest(t *testing.T, size int64) (*Reserve, *int64) {
	t.Helper()
	free := new(int64)
	*free = 1 << 30
	r := New(t.TempDir(), size, nil)
	r.freeSpace = func(string) (int64, error) { return *free, nil }
	return r, free
}

func ballastSize(t *testing.T, r *Reserve) int64 {
	t.Helper()
	fi, err := os.Stat(r.path())
	if errors.Is(err, os.ErrNotExist) {
		return -1
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestPrepareCreatesTheBallastWhenSpaceAllows(t *testing.T) {
	r, _ := newTest(t, testSize)
	if err := r.Prepare(); err != nil {
		t.Fatal(err)
	}
	if !r.Held() || ballastSize(t, r) != testSize {
		t.Fatalf("held %v, ballast %d bytes; want held, %d", r.Held(), ballastSize(t, r), testSize)
	}
	if err := r.Check(); err != nil {
		t.Fatalf("check with the ballast in place: %v", err)
	}
}

// The start-up: the disk filled while the ballast was in place.
func TestFullDiskAtStartReleasesThenSpaceReturns(t *testing.T) {
	r, free := newTest(t, testSize)
	if err := r.Prepare(); err != nil {
		t.Fatal(err)
	}
	*free = 0
	r2 := New(r.dir, testSize, nil) // the next start
	r2.freeSpace = r.freeSpace
	if err := r2.Prepare(); err != nil {
		t.Fatal(err)
	}
	if r2.Held() || ballastSize(t, r2) != -1 {
		t.Fatalf("full disk at start: ballast still held (%d bytes)", ballastSize(t, r2))
	}
	*free = testSize // what the ballast gave back
	if err := r2.Check(); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("check on a full disk: %v, want ErrNoSpace", err)
	}
	*free = 2*testSize - 1
	if err := r2.Check(); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("check with less than twice the reserve free: %v, want ErrNoSpace", err)
	}
	*free = 2 * testSize
	if err := r2.Check(); err != nil {
		t.Fatalf("check once space returned: %v", err)
	}
	if !r2.Held() || ballastSize(t, r2) != testSize {
		t.Fatalf("ballast not recreated: held %v, %d bytes", r2.Held(), ballastSize(t, r2))
	}
}

func TestPrepareOnANearlyFullDiskCreatesNothing(t *testing.T) {
	r, free := newTest(t, testSize)
	*free = testSize
	if err := r.Prepare(); err != nil {
		t.Fatal(err)
	}
	if r.Held() || ballastSize(t, r) != -1 {
		t.Fatal("ballast created on a nearly full disk")
	}
	if err := r.Check(); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("check: %v, want ErrNoSpace", err)
	}
}

func TestReleaseAfterENOSPC(t *testing.T) {
	r, free := newTest(t, testSize)
	if err := r.Prepare(); err != nil {
		t.Fatal(err)
	}
	*free = 0
	if !r.Release("a write failed") {
		t.Fatal("Release of a held reserve reported nothing freed")
	}
	if r.Held() || ballastSize(t, r) != -1 {
		t.Fatal("ballast still in place after Release")
	}
	if err := r.Check(); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("check after release on a full disk: %v", err)
	}
	if r.Release("again") {
		t.Fatal("Release with nothing held reported space freed")
	}
}

// A ballast of another size (the setting changed) or one whose creation
// was interrupted is not taken for the reserve.
func TestPrepareReplacesWrongOrPartialBallast(t *testing.T) {
	r, _ := newTest(t, testSize)
	if err := os.WriteFile(r.path(), make([]byte, 100), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.tmpPath(), make([]byte, 100), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Prepare(); err != nil {
		t.Fatal(err)
	}
	if ballastSize(t, r) != testSize {
		t.Fatalf("ballast %d bytes, want %d", ballastSize(t, r), testSize)
	}
	if _, err := os.Stat(r.tmpPath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("interrupted ballast left: %v", err)
	}
}

func TestSizeZeroDisablesAndRemovesAnOldBallast(t *testing.T) {
	r, free := newTest(t, 0)
	if err := os.WriteFile(filepath.Join(r.dir, FileName), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Prepare(); err != nil {
		t.Fatal(err)
	}
	if ballastSize(t, r) != -1 {
		t.Fatal("old ballast kept with the reserve disabled")
	}
	*free = 0
	if err := r.Check(); err != nil {
		t.Fatalf("disabled reserve refused: %v", err)
	}
}

// The real statfs: the ballast takes real blocks.
func TestBallastHoldsRealBlocks(t *testing.T) {
	r := New(t.TempDir(), testSize, nil)
	if err := r.Prepare(); err != nil {
		t.Fatal(err)
	}
	if !r.Held() {
		t.Skip("the test's temporary directory has less than 128 KiB free")
	}
	fi, err := os.Stat(r.path())
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Sys().(*syscall.Stat_t).Blocks * 512; got < testSize {
		t.Fatalf("ballast occupies %d bytes on disk, want at least %d", got, testSize)
	}
}
