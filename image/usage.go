package image

import (
	"io/fs"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Usage is what a filesystem of the store holds.
type Usage struct {
	Mountpoint string
	UsedBytes  uint64
	InodesUsed uint64
	// Timestamp is when the store was measured.
	Timestamp time.Time
}

const (
	// usageMaxAge: an answer older than this starts a new measurement
	// (kubelet asks every 10 s; containerd re-measures as often).
	usageMaxAge = 10 * time.Second
	// usageChangedAge: after a pull or a removal, an answer older than
	// this starts a new measurement.
	usageChangedAge = 2 * time.Second
)

// usageCache keeps the last measurement of the store. Measuring walks every
// file (about 90 ms for an image of 20,000 files here), and every CRI client
// asks on connecting: k8s.io/cri-client, which crictl and kubelet use,
// checks its image connection with ImageFsInfo. A walk per crictl command
// made each pull wait for one. An answer that is due for renewal is still
// given, with the time it was measured, while the next measurement runs in
// the background. The first measurement starts when the store is opened;
// only calls that come before it ends wait for it.
type usageCache struct {
	mu        sync.Mutex
	u         Usage
	have      bool
	err       error // of the last measurement, while there is no answer
	changed   bool  // the store changed since u was measured
	measuring bool
	done      chan struct{} // closed when the running measurement ends
	// layers: what each image layer holds, measured once (immutable).
	layers map[string]dirUsage
}

// storeChanged is called after a pull, an import or a removal.
func (s *Service) storeChanged() {
	s.usage.mu.Lock()
	s.usage.changed = true
	s.usage.mu.Unlock()
}

// startMeasuring starts a measurement in the background; s.usage.mu is held.
func (s *Service) startMeasuring() {
	c := &s.usage
	c.measuring, c.changed, c.done = true, false, make(chan struct{})
	done := c.done
	go func() {
		u, err := s.measureUsage()
		c.mu.Lock()
		defer c.mu.Unlock()
		c.measuring = false
		if err != nil {
			c.err = err
			if c.have {
				s.log.Warn("measure the image store", "error", err)
			}
		} else {
			c.u, c.have, c.err = u, true, nil
		}
		close(done)
	}()
}

// FsUsage is the image store's usage (layers, manifests, records), as last
// measured: see usageCache.
func (s *Service) FsUsage() (Usage, error) {
	c := &s.usage
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.have {
		if !c.measuring {
			s.startMeasuring()
		}
		done := c.done
		c.mu.Unlock()
		<-done
		c.mu.Lock()
		if !c.have {
			return Usage{}, c.err
		}
		return c.u, nil
	}
	age := time.Since(c.u.Timestamp)
	if !c.measuring && (age >= usageMaxAge || (c.changed && age >= usageChangedAge)) {
		s.startMeasuring()
	}
	return c.u, nil
}

// measureUsage walks the store. An image layer never changes once
// committed, so it is walked once and its count kept (usageCache.layers);
// container layers and the store's metadata are walked each time. Hard
// links count once within a walk, as they take space once.
func (s *Service) measureUsage() (Usage, error) {
	root := s.store.GraphRoot()
	u := Usage{Mountpoint: root, Timestamp: time.Now()}
	layers, err := s.store.Layers()
	if err != nil {
		return u, err
	}
	ctrs, err := s.store.Containers()
	if err != nil {
		return u, err
	}
	writable := make(map[string]bool, len(ctrs))
	for _, c := range ctrs {
		writable[c.LayerID] = true
	}
	driverDir := filepath.Join(root, s.store.GraphDriverName())
	s.usage.mu.Lock()
	known := s.usage.layers
	s.usage.mu.Unlock()
	kept := make(map[string]dirUsage, len(layers))
	skip := make(map[string]bool, len(layers))
	for _, l := range layers {
		dir := filepath.Join(driverDir, l.ID)
		skip[dir] = true
		du, ok := known[l.ID]
		if !ok || writable[l.ID] {
			du = walkUsage(dir, nil)
		}
		if !writable[l.ID] {
			kept[l.ID] = du
		}
		u.UsedBytes += du.bytes
		u.InodesUsed += du.inodes
	}
	rest := walkUsage(root, skip)
	u.UsedBytes += rest.bytes
	u.InodesUsed += rest.inodes
	s.usage.mu.Lock()
	s.usage.layers = kept
	s.usage.mu.Unlock()
	return u, nil
}

type dirUsage struct{ bytes, inodes uint64 }

// walkUsage measures what is under dir but the directories in skip.
func walkUsage(dir string, skip map[string]bool) dirUsage {
	var u dirUsage
	seen := map[uint64]bool{}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			// Files come and go under a running store; skip what vanished.
			return nil
		}
		if d.IsDir() && skip[path] {
			return filepath.SkipDir
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
			u.bytes += uint64(st.Blocks) * 512
		}
		u.inodes++
		// Mounted container root filesystems are not the store's bytes.
		if d.IsDir() && d.Name() == "merged" {
			return filepath.SkipDir
		}
		return nil
	})
	return u
}

// GraphRoot is the directory the store keeps images and container layers in.
func (s *Service) GraphRoot() string { return s.store.GraphRoot() }
