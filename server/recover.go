package server

import (
	"context"
	"os"
	"path/filepath"
)

// recoverOrphans removes what a crash left without a record: runtime
// state (a monitor, perhaps a running process) of a container whose
// CreateContainer never recorded it, and bundles nobody owns. It runs once
// at start-up, before any call is served.
func (s *Server) recoverOrphans(ctx context.Context) {
	known := map[string]bool{}
	for _, c := range s.pods.Containers("") {
		known[c.ID] = true
	}
	for _, p := range s.pods.List() {
		if p.InfraID != "" {
			known[p.InfraID] = true
		}
	}
	ids, err := s.rt.List()
	if err != nil {
		s.log.Error("recovery: list runtime state", "error", err)
	}
	for _, id := range ids {
		if known[id] {
			continue
		}
		if err := s.rt.Delete(ctx, id); err != nil {
			s.log.Error("recovery: remove unrecorded container", "id", id, "error", err)
			continue
		}
		_ = s.images.RemoveRootfs(id)
		s.log.Warn("recovery: removed a container left by an interrupted create", "id", id)
	}
	bundles := filepath.Join(s.opts.RunRoot, "bundles")
	ents, _ := os.ReadDir(bundles)
	for _, e := range ents {
		if !known[e.Name()] {
			_ = s.images.RemoveRootfs(e.Name())
			_ = os.RemoveAll(filepath.Join(bundles, e.Name()))
		}
	}
}
