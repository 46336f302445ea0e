package image

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// recordsLockName is the file whose byte ranges lock image records across
// processes: the daemon and `crivet image import` both read, change and
// write an image's record and kept signatures.
const recordsLockName = "crivet-records.lock"

// recordLocks locks one image at a time across processes with an
// open-file-description lock on one byte of a shared file, at an offset
// taken from the image ID (a sha256, so two images never share a byte).
// One file for the whole store: nothing is created per image, so taking
// a lock needs no free space once the file exists (a removal on a full
// disk must still work), and no lock file is ever deleted under a waiter.
type recordLocks struct {
	path string
	mu   sync.Mutex
	f    *os.File // opened lazily if the first open failed (a full disk at start)
}

func newRecordLocks(root string) *recordLocks {
	l := &recordLocks{path: filepath.Join(root, recordsLockName)}
	_, _ = l.file()
	return l
}

func (l *recordLocks) file() (*os.File, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		l.f = f
	}
	return l.f, nil
}

// offset is where id's byte is: its first 7 bytes (well inside int64).
func lockOffset(id string) int64 {
	b, err := hex.DecodeString(id[:min(len(id), 14)])
	if err != nil || len(b) == 0 {
		return 0
	}
	var off int64
	for _, c := range b {
		off = off<<8 | int64(c)
	}
	return off
}

// lock holds id across processes. The in-process caller already holds the
// image's keyed mutex, so this process never takes the same byte twice on
// its one file description (which would not block, and whose first unlock
// would release both).
func (l *recordLocks) lock(id string) (func(), error) {
	f, err := l.file()
	if err != nil {
		return nil, fmt.Errorf("lock image %s: %w", id, err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: lockOffset(id), Len: 1}
	for {
		err = unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLKW, &lk)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("lock image %s: %w", id, err)
	}
	return func() {
		un := lk
		un.Type = unix.F_UNLCK
		_ = unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &un)
	}, nil
}

func (l *recordLocks) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}

// lockImage holds image id exclusively, in this process and across the
// processes that share the store: every read-modify-write of its record
// or kept signatures, and its removal, happen under it.
func (s *Service) lockImage(id string) (func(), error) {
	unlock := s.locks.Lock(id)
	unlockFile, err := s.recLocks.lock(id)
	if err != nil {
		unlock()
		return nil, err
	}
	return func() {
		unlockFile()
		unlock()
	}, nil
}
