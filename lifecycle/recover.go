package lifecycle

import (
	"context"
	"os"
	"path/filepath"

	"github.com/crivet/crivet/sandbox"
)

// Recover reconciles the node with the records after a crash. It
// runs once at start-up, before any call is served, and logs each action.
//
// Records are written before the parts they describe and removed after
// them (see createContainer, RemoveContainer, sandbox.Manager.Run, RemovePod),
// so a kill -9 at any moment leaves one of:
//   - a container record still Creating: the client never got its ID; every
//     part that exists (runc state and monitor, storage container, bundle)
//     is removed with the record;
//   - a container or pod record Removing: the removal is finished;
//   - a pod record still Creating: undone like a removal, with the CNI DEL
//     of its attachment and its infra container if one was started;
//   - parts without any record (runc state or monitor directory, storage
//     container, bundle, pod directory with namespace pins): removed;
//   - image volume mounts counted by storage but by no record: released;
//   - checkpoint or restore work directories: removed.
func (m *Manager) Recover(ctx context.Context) {
	defer m.pods.EndRecovery()
	for _, c := range m.pods.Containers("") {
		switch c.Phase {
		case sandbox.Creating:
			if err := m.discardContainer(ctx, c); err != nil {
				m.log.Error("recovery: undo an interrupted container create", "id", c.ID, "pod", c.PodID, "error", err)
				continue
			}
			m.log.Warn("recovery: undid an interrupted container create", "id", c.ID, "pod", c.PodID)
		case sandbox.Removing:
			if err := m.RemoveContainer(ctx, c); err != nil {
				m.log.Error("recovery: finish an interrupted container removal", "id", c.ID, "pod", c.PodID, "error", err)
				continue
			}
			m.log.Warn("recovery: finished an interrupted container removal", "id", c.ID, "pod", c.PodID)
		}
	}
	for _, p := range m.pods.List() {
		if p.Phase != sandbox.Creating && p.Phase != sandbox.Removing {
			continue
		}
		what := "an interrupted pod sandbox removal"
		if p.Phase == sandbox.Creating {
			what = "an interrupted pod sandbox run"
		}
		if err := m.RemovePod(ctx, p); err != nil {
			m.log.Error("recovery: clean up "+what, "id", p.ID, "error", err)
			continue
		}
		m.log.Warn("recovery: cleaned up "+what, "id", p.ID)
	}
	pods := map[string]bool{}
	for _, p := range m.pods.List() {
		pods[p.ID] = true
		// A StopPodSandbox killed after stopping the infra process leaves a
		// Ready pod none of whose containers could join: not ready, so
		// kubelet stops it again and makes a new one.
		if p.State == sandbox.Ready && p.InfraID != "" {
			if _, err := m.infraPid(p); err != nil {
				if err := m.pods.Update(p.ID, func(p *sandbox.Pod) { p.State = sandbox.NotReady }); err != nil {
					m.log.Error("recovery: mark a pod whose infra process is gone not ready", "id", p.ID, "error", err)
				} else {
					m.log.Warn("recovery: marked a pod whose infra process is gone not ready", "id", p.ID)
				}
			}
		}
	}
	known := map[string]bool{}
	for _, c := range m.pods.Containers("") {
		if !pods[c.PodID] {
			// A pod record is removed only after all its containers'; this
			// is a record from before that order held.
			if err := m.discardContainer(ctx, c); err != nil {
				m.log.Error("recovery: remove a container of a removed pod", "id", c.ID, "pod", c.PodID, "error", err)
			} else {
				m.log.Warn("recovery: removed a container of a removed pod", "id", c.ID, "pod", c.PodID)
				continue
			}
		}
		known[c.ID] = true
	}
	for _, p := range m.pods.List() {
		if p.InfraID != "" {
			known[p.InfraID] = true
		}
	}

	ids, err := m.rt.List()
	if err != nil {
		m.log.Error("recovery: list runtime state", "error", err)
	}
	for _, id := range ids {
		if known[id] {
			continue
		}
		if err := m.rt.Delete(ctx, id); err != nil {
			m.log.Error("recovery: remove unrecorded runtime state", "id", id, "error", err)
			continue
		}
		m.log.Warn("recovery: removed runtime state (runc, monitor) no record owns", "id", id)
	}
	rootfs, err := m.images.ListRootfs()
	if err != nil {
		m.log.Error("recovery: list storage containers", "error", err)
	}
	for _, id := range rootfs {
		if known[id] {
			continue
		}
		if err := m.images.RemoveRootfs(id); err != nil {
			m.log.Error("recovery: remove unrecorded storage container", "id", id, "error", err)
			continue
		}
		m.log.Warn("recovery: removed a storage container no record owns", "id", id)
	}
	bundles := filepath.Join(m.cfg.RunRoot, "bundles")
	ents, _ := os.ReadDir(bundles)
	for _, e := range ents {
		if known[e.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(bundles, e.Name())); err != nil {
			m.log.Error("recovery: remove unrecorded bundle", "id", e.Name(), "error", err)
			continue
		}
		m.log.Warn("recovery: removed a bundle no record owns", "id", e.Name())
	}
	// Checkpoint and restore work directories live only as long as the
	// call that made them; none is in flight before serving.
	work := filepath.Join(m.cfg.RunRoot, "checkpoints")
	ents, _ = os.ReadDir(work)
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(work, e.Name())); err != nil {
			m.log.Error("recovery: remove a checkpoint work directory", "dir", e.Name(), "error", err)
			continue
		}
		m.log.Warn("recovery: removed the work directory of an interrupted checkpoint or restore", "dir", e.Name())
	}
	removed, err := m.pods.RemoveOrphanDirs(ctx)
	for _, id := range removed {
		m.log.Warn("recovery: removed a pod directory no record owns (namespace pins, CNI attachment)", "id", id)
	}
	if err != nil {
		m.log.Error("recovery: remove unrecorded pod directories", "error", err)
	}
	want := map[string]int{}
	for _, c := range m.pods.Containers("") {
		for _, img := range c.ImageMounts {
			want[img]++
		}
	}
	fixed, err := m.images.ReconcileImageMounts(want)
	for _, img := range fixed {
		m.log.Warn("recovery: released image volume mounts no record holds", "image", img)
	}
	if err != nil {
		m.log.Error("recovery: image volume mounts", "error", err)
	}
}
