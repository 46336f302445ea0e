package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/crivet/crivet/oci/checkpoint"
	"github.com/crivet/crivet/oci/monitor"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/sandbox"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// checkpointWork is where checkpoints and restores keep CRIU's images and
// logs while they run: <runroot>/checkpoints/<id>-*. Nothing there
// outlives the call that made it.
func (m *Manager) checkpointWork(id string) (string, error) {
	base := filepath.Join(m.cfg.RunRoot, "checkpoints")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", err
	}
	return os.MkdirTemp(base, id+"-")
}

// CheckpointContainer writes a checkpoint archive of the running
// container c to location (KEP-2008): CRIU's dump of its processes, made
// by the runc that runs it and left running, its changes to its image,
// and what it was (config.dump, spec.dump) in the layout the other CRI
// runtimes use. The archive appears at location only once complete.
func (m *Manager) CheckpointContainer(ctx context.Context, c *sandbox.Container, location string) error {
	if !filepath.IsAbs(location) {
		return fmt.Errorf("checkpoint container %s: location %q is not an absolute path: %w", c.ID, location, runtime.ErrInvalidArgument)
	}
	st, err := m.rt.Status(ctx, c.ID)
	if err != nil {
		return fmt.Errorf("checkpoint container %s: %w", c.ID, err)
	}
	if st.State != runtime.StateRunning {
		return fmt.Errorf("checkpoint container %s: container is %s, not running: %w", c.ID, st.State, ErrState)
	}
	pod, err := m.pods.Get(c.PodID)
	if err != nil {
		return fmt.Errorf("checkpoint container %s: %w", c.ID, err)
	}
	data, err := os.ReadFile(filepath.Join(c.Bundle, "config.json"))
	if err != nil {
		return fmt.Errorf("checkpoint container %s: %w", c.ID, err)
	}
	var sp specs.Spec
	if err := json.Unmarshal(data, &sp); err != nil {
		return fmt.Errorf("checkpoint container %s: bundle spec: %w", c.ID, err)
	}
	work, err := m.checkpointWork(c.ID)
	if err != nil {
		return fmt.Errorf("checkpoint container %s: %w", c.ID, err)
	}
	defer os.RemoveAll(work)
	images := filepath.Join(work, checkpoint.ImagesDir)
	start := time.Now()
	if err := m.rt.Checkpoint(ctx, c.ID, runtime.CheckpointOptions{ImagePath: images, WorkPath: work}); err != nil {
		return fmt.Errorf("checkpoint container %s: %w", c.ID, err)
	}
	dumped := time.Since(start)
	diff, err := m.images.RootfsDiff(c.ID)
	if err != nil {
		return fmt.Errorf("checkpoint container %s: %w", c.ID, err)
	}
	defer diff.Close()

	userImage := c.Config.GetImage().GetUserSpecifiedImage()
	if userImage == "" {
		userImage = c.Config.GetImage().GetImage()
	}
	md := pod.Config.GetMetadata()
	if sp.Annotations == nil {
		sp.Annotations = map[string]string{}
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	for k, v := range map[string]string{
		checkpoint.AnnotationEngine:        "crivet",
		checkpoint.AnnotationName:          c.Config.GetMetadata().GetName(),
		checkpoint.AnnotationPod:           md.GetName(),
		checkpoint.AnnotationPodID:         pod.ID,
		checkpoint.AnnotationNamespace:     md.GetNamespace(),
		checkpoint.AnnotationPodUID:        md.GetUid(),
		checkpoint.AnnotationImageName:     c.ImageRef,
		checkpoint.AnnotationImageUser:     userImage,
		checkpoint.AnnotationImageID:       c.ImageID,
		checkpoint.AnnotationRuntimeName:   "runc",
		checkpoint.AnnotationHostKernel:    unix.ByteSliceToString(uts.Release[:]),
		checkpoint.AnnotationCRIContainer:  c.Config.GetMetadata().GetName(),
		checkpoint.AnnotationCRIPodName:    md.GetName(),
		checkpoint.AnnotationCRINamespace:  md.GetNamespace(),
		checkpoint.AnnotationCRIPodUID:     md.GetUid(),
		checkpoint.AnnotationCRIImageName:  userImage,
		checkpoint.AnnotationCRIContainerT: "container",
	} {
		sp.Annotations[k] = v
	}
	err = checkpoint.Write(location, checkpoint.Contents{
		Config: checkpoint.Config{
			ID: c.ID, Name: c.Config.GetMetadata().GetName(),
			RootfsImage: c.ImageID, RootfsImageRef: c.ImageID, RootfsImageName: userImage,
			OCIRuntime: "runc", CreatedTime: c.CreatedAt, CheckpointedAt: time.Now(),
		},
		Spec: &sp, Images: images, RootfsDiff: diff, DumpLog: filepath.Join(work, checkpoint.DumpLog),
	})
	if err != nil {
		return fmt.Errorf("checkpoint container %s: %w", c.ID, err)
	}
	m.log.Info("container checkpointed", "id", c.ID, "pod", c.PodID, "location", location, "criu_dump", dumped, "total", time.Since(start))
	return nil
}

// prepareRestore unpacks a checkpoint archive for the container id into
// a work directory and applies its root filesystem changes to rootfs; it
// returns what runc restore needs, and the work directory to remove once
// runc is done with it.
func (m *Manager) prepareRestore(id string, a *checkpoint.Archive, rootfs string) (*monitor.Restore, string, error) {
	work, err := m.checkpointWork(id)
	if err != nil {
		return nil, "", err
	}
	// A checkpoint image is mounted (read only) for the whole create:
	// CRIU reads its images in place. An archive file is unpacked.
	src := a.Dir
	if src == "" {
		if err := a.Extract(work); err != nil {
			return nil, work, err
		}
		src = work
	}
	deleted, err := checkpoint.ReadDeletedFiles(src)
	if err != nil {
		return nil, work, err
	}
	// An archive without a rootfs-diff.tar: the container changed nothing.
	var diff io.Reader
	if f, err := os.Open(filepath.Join(src, checkpoint.RootfsDiff)); err == nil {
		defer f.Close()
		diff = f
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, work, err
	}
	if err := m.images.ApplyRootfsDiff(rootfs, diff, deleted); err != nil {
		return nil, work, err
	}
	return &monitor.Restore{ImagePath: filepath.Join(src, checkpoint.ImagesDir), WorkPath: work}, work, nil
}
