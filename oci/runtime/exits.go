package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/crivet/crivet/oci/monitor"
	"github.com/fsnotify/fsnotify"
)

// WatchExits reports the ID of each container whose monitor records an
// exit from now on, once per record. Monitors write the record by rename
// into the container's state directory, so a watch on each directory (added
// as directories appear) sees every one; a directory that appears with its
// record already in it is reported when found. The channel closes when ctx
// ends.
func (r *Runtime) WatchExits(ctx context.Context) (<-chan string, error) {
	if err := os.MkdirAll(r.cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch container exits: %w", err)
	}
	if err := w.Add(r.cfg.StateDir); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("watch container exits: %w", err)
	}
	out := make(chan string, 64)
	reported := map[string]bool{}
	report := func(id string) {
		if reported[id] {
			return
		}
		reported[id] = true
		select {
		case out <- id:
		case <-ctx.Done():
		}
	}
	watchDir := func(id string) {
		dir := filepath.Join(r.cfg.StateDir, id)
		if err := w.Add(dir); err != nil {
			return // removed meanwhile
		}
		if _, err := os.Stat(filepath.Join(dir, monitor.ExitFileName)); err == nil {
			r.forgetStatus(id)
			report(id)
		}
	}
	// Containers already there: only exits from now on are news. Watch
	// first, then forget what was cached: an exit in between is then seen
	// by one or the other.
	ents, _ := os.ReadDir(r.cfg.StateDir)
	for _, e := range ents {
		if e.IsDir() {
			_ = w.Add(filepath.Join(r.cfg.StateDir, e.Name()))
		}
	}
	r.watching.Add(1)
	r.forgetAll()
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(r.cfg.StateDir, e.Name(), monitor.ExitFileName)); err == nil {
			reported[e.Name()] = true
		}
	}
	go func() {
		defer close(out)
		defer w.Close()
		// From here on nothing forgets statuses on exits: stop trusting them.
		defer r.forgetAll()
		defer r.watching.Add(-1)
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				dir, name := filepath.Split(ev.Name)
				dir = filepath.Clean(dir)
				switch {
				case dir == filepath.Clean(r.cfg.StateDir) && ev.Has(fsnotify.Create):
					// A new container (or the same ID created again).
					delete(reported, name)
					watchDir(name)
				case dir == filepath.Clean(r.cfg.StateDir) && ev.Has(fsnotify.Remove):
					delete(reported, name)
				case name == monitor.ExitFileName && (ev.Has(fsnotify.Create) || ev.Has(fsnotify.Write)):
					r.forgetStatus(filepath.Base(dir))
					report(filepath.Base(dir))
				}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
				// An overflowed queue may have lost exit records (and
				// new containers' directories): forget every cached
				// status, then look at every directory again, so no
				// exit goes unreported. report skips those already sent.
				r.watchOverflows.Add(1)
				r.forgetAll()
				ents, _ := os.ReadDir(r.cfg.StateDir)
				for _, e := range ents {
					if e.IsDir() {
						watchDir(e.Name())
					}
				}
			}
		}
	}()
	return out, nil
}
