package image

import (
	"io/fs"
	"path/filepath"
	"syscall"
	"time"
)

// Usage is what a filesystem of the store holds.
type Usage struct {
	Mountpoint string
	UsedBytes  uint64
	InodesUsed uint64
	Timestamp  time.Time
}

// FsUsage measures the image store (layers, manifests, records). Hard
// links count once, as they take space once.
func (s *Service) FsUsage() (Usage, error) {
	root := s.store.GraphRoot()
	u := Usage{Mountpoint: root, Timestamp: time.Now()}
	seen := map[uint64]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			// Files come and go under a running store; skip what vanished.
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
			u.UsedBytes += uint64(st.Blocks) * 512
		}
		u.InodesUsed++
		// Mounted container root filesystems are not the store's bytes.
		if d.IsDir() && d.Name() == "merged" {
			return filepath.SkipDir
		}
		return nil
	})
	return u, err
}

// GraphRoot is the directory the store keeps images and container layers in.
func (s *Service) GraphRoot() string { return s.store.GraphRoot() }
