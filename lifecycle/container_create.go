package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/oci/monitor"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/oci/spec"
	"github.com/crivet/crivet/sandbox"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CreateRequest is a container to create: the CRI request as it came,
// the pod named by ID.
type CreateRequest struct {
	PodID  string
	Config *runtimeapi.ContainerConfig
}

// CreateContainer creates a container in this order: the stored pod (its
// namespace, never the request's) must be ready; every image the
// container would run is admitted by the image service (admit); the name
// is reserved in the pod; the container is made (createContainer); and
// CONTAINER_CREATED is published.
func (m *Manager) CreateContainer(ctx context.Context, req CreateRequest) (*sandbox.Container, error) {
	pod, err := m.pods.Get(req.PodID)
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	if pod.State != sandbox.Ready {
		return nil, fmt.Errorf("create container: pod sandbox %s is not ready: %w", pod.ID, ErrState)
	}
	a, err := m.admit(ctx, pod, req.Config)
	if err != nil {
		return nil, err
	}
	defer a.done()
	id, release, err := m.pods.ReserveContainer(pod, a.config)
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	c, err := m.createContainer(ctx, id, pod, a)
	if err != nil {
		release()
		return nil, err
	}
	m.events.publish(c.ID, c.PodID, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	return c, nil
}

// createContainer makes the container's parts in an order a crash can be
// recovered from: the record, in phase Creating, comes before any part
// (storage container, image volume mounts, bundle, runc state and
// monitor), so start-up recovery finds and removes whatever a kill left;
// the record becomes Created only once runc has created the container.
// A refused log_path makes nothing at all.
func (m *Manager) createContainer(ctx context.Context, id string, pod *sandbox.Pod, a *admitted) (_ *sandbox.Container, err error) {
	img, cfg, volumes := a.image, a.config, a.volumes
	bundle := m.bundle(id)
	start := time.Now()
	var tRootfs, tSpec, tCreate time.Duration
	if err := m.checkHandlerFeatures(pod, cfg); err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.GetMetadata().GetName(), err)
	}
	logPath := ""
	logDir := pod.Config.GetLogDirectory()
	if logDir != "" && cfg.GetLogPath() != "" {
		if logPath, err = sandbox.ContainerLogPath(logDir, cfg.GetLogPath()); err != nil {
			return nil, fmt.Errorf("create container %s: %w", cfg.GetMetadata().GetName(), err)
		}
	}
	c := &sandbox.Container{
		ID: id, PodID: pod.ID, Config: cfg, CreatedAt: time.Now(), ImageID: img.ID, ImageRef: a.identity, SignatureWarnings: a.warnings,
		LogPath: logPath, Bundle: bundle, Mounts: recordedMounts(cfg.GetMounts(), volumes),
	}
	if err := m.pods.BeginContainer(c); err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	// Undo in reverse; the record goes last and only if every part is
	// gone, so a failed undo is retried by the next start-up's recovery.
	var cleanup []func() error
	defer func() {
		if err == nil {
			return
		}
		var undo []error
		for i := len(cleanup) - 1; i >= 0; i-- {
			if e := cleanup[i](); e != nil {
				undo = append(undo, e)
			}
		}
		if e := errors.Join(undo...); e != nil {
			m.log.Error("create container: undo failed; start-up recovery will retry", "id", id, "error", e)
			return
		}
		_ = m.pods.RemoveContainer(id)
	}()
	cleanup = append(cleanup, func() error { return m.images.RemoveRootfs(id) })
	rootfs, err := m.createRootfs(id, img, pod)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	tRootfs = time.Since(start)
	var restore *monitor.Restore
	if a.restore != nil {
		// The checkpoint's CRIU images are needed until runc restore is
		// done with them; its file changes go on the new root first.
		var work string
		restore, work, err = m.prepareRestore(id, a.restore, rootfs)
		if work != "" {
			defer os.RemoveAll(work)
		}
		if err != nil {
			return nil, fmt.Errorf("create container %s: restore from %s: %w", id, a.restore.Source(), err)
		}
	}
	// Image volumes become read-only bind mounts of the mounted images.
	specCfg, imageMounts, err := m.mountImageVolumes(cfg, volumes)
	cleanup = append(cleanup, func() error {
		var errs []error
		for _, id := range imageMounts {
			errs = append(errs, m.images.UnmountImage(id))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	ic, err := m.images.RunConfig(img)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	nss, err := m.containerNamespaces(pod, cfg)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	hostname, hosts, resolv, shm := pod.Files()
	sp, err := spec.Container(spec.ContainerInput{
		ID: id, Sandbox: pod.Config, Config: specCfg,
		Image:              spec.Image{Env: ic.Env, Entrypoint: ic.Entrypoint, Cmd: ic.Cmd, WorkingDir: ic.WorkingDir, User: ic.User, StopSignal: ic.StopSignal},
		Rootfs:             rootfs,
		Namespaces:         nss,
		Files:              spec.SandboxFiles{Hostname: hostname, Hosts: hosts, ResolvConf: resolv, Shm: shm},
		CgroupParent:       pod.Config.GetLinux().GetCgroupParent(),
		CgroupDriver:       m.cfg.CgroupDriver,
		SeccompProfileRoot: m.cfg.SeccompProfileRoot,
	})
	if err != nil {
		return nil, fmt.Errorf("create container %s: spec: %w", id, err)
	}
	// CDI edits go over the spec crivet built, as the device driver's
	// spec file says, before plugins see it (as containerd orders them).
	if _, err := m.cfg.CDI.Inject(sp, cfg); err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.GetMetadata().GetName(), err)
	}
	// Plugins (NRI) see the spec crivet built from the admitted image and
	// may adjust it (never its root filesystem) before runc is given it.
	// A plugin connecting meanwhile is synchronized after the record.
	release := m.plugins.HoldSync()
	defer release()
	if err := m.plugins.CreateContainer(ctx, pod, c, sp); err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	cleanup = append(cleanup, func() error { m.plugins.RemoveContainer(context.WithoutCancel(ctx), c); return nil })
	cleanup = append(cleanup, func() error { return os.RemoveAll(bundle) })
	if err := writeBundle(bundle, sp); err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	tSpec = time.Since(start)
	c.StopSignal, c.ImageMounts = ic.StopSignal, imageMounts
	c.UID, c.GID = int64(sp.Process.User.UID), int64(sp.Process.User.GID)
	if sp.Linux != nil {
		// Stats read the directory the kernel shows, not runc's form.
		if c.CgroupPath, err = m.cfg.CgroupDriver.Dir(sp.Linux.CgroupsPath); err != nil {
			return nil, fmt.Errorf("create container %s: %w", id, err)
		}
	}
	for _, g := range sp.Process.User.AdditionalGids {
		c.Supplemental = append(c.Supplemental, int64(g))
	}
	cleanup = append(cleanup, func() error { return m.rt.Delete(context.WithoutCancel(ctx), id) })
	if err := m.rt.Create(ctx, runtime.CreateOptions{
		ID: id, Bundle: bundle, LogPath: logPath, LogDir: logDir,
		Tty: cfg.GetTty(), Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(),
		Handler: pod.RuntimeHandler, Restore: restore,
	}); err != nil {
		return nil, err // oci/runtime's errors name the container already
	}
	tCreate = time.Since(start)
	if err := m.pods.AddContainer(c); err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	m.plugins.PostCreateContainer(ctx, c)
	m.log.Info("container created", "id", id, "pod", pod.ID, "name", cfg.GetMetadata().GetName(),
		"rootfs", tRootfs, "spec", tSpec-tRootfs, "runc_create", tCreate-tSpec, "record", time.Since(start)-tCreate)
	return c, nil
}

// containerNamespaces joins the pod's pinned namespaces, or the node's,
// as the pod and container configs ask.
func (m *Manager) containerNamespaces(pod *sandbox.Pod, cfg *runtimeapi.ContainerConfig) (spec.Namespaces, error) {
	join := func(path string) spec.Namespace {
		if path == "" {
			return spec.Namespace{Host: true}
		}
		return spec.Namespace{Path: path}
	}
	n := spec.Namespaces{Network: join(pod.NetNS), IPC: join(pod.IPCNS), UTS: join(pod.UTSNS), User: userNamespace(pod)}
	opts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	switch opts.GetPid() {
	case runtimeapi.NamespaceMode_NODE:
		n.PID = spec.Namespace{Host: true}
	case runtimeapi.NamespaceMode_POD:
		pid, err := m.infraPid(pod)
		if err != nil {
			return n, err
		}
		n.PID = spec.Namespace{Path: fmt.Sprintf("/proc/%d/ns/pid", pid)}
	case runtimeapi.NamespaceMode_TARGET:
		st, err := m.rt.Status(context.Background(), opts.GetTargetId())
		if err != nil || st.Pid == 0 {
			return n, fmt.Errorf("target container %s for the PID namespace is not running", opts.GetTargetId())
		}
		n.PID = spec.Namespace{Path: fmt.Sprintf("/proc/%d/ns/pid", st.Pid)}
	}
	return n, nil
}

// mountImageVolumes returns a copy of cfg whose image mounts are
// read-only bind mounts of the images, mounted here, and the IDs mounted.
// volumes holds the admitted image of each image mount, by its index in
// cfg.Mounts.
func (m *Manager) mountImageVolumes(cfg *runtimeapi.ContainerConfig, volumes map[int]*image.Image) (*runtimeapi.ContainerConfig, []string, error) {
	if len(volumes) == 0 {
		return cfg, nil, nil
	}
	out := proto.Clone(cfg).(*runtimeapi.ContainerConfig)
	for _, mnt := range out.Mounts {
		if mnt.GetImage() != nil {
			if err := checkImageVolume(mnt); err != nil {
				return nil, nil, err
			}
		}
	}
	var mounted []string
	for i, mnt := range out.Mounts {
		if mnt.GetImage() == nil {
			continue
		}
		img := volumes[i]
		if img == nil {
			return nil, mounted, fmt.Errorf("image volume %s: image %q was not admitted", mnt.GetContainerPath(), mnt.GetImage().GetImage())
		}
		root, err := m.images.MountImage(img)
		if err != nil {
			return nil, mounted, err
		}
		mounted = append(mounted, img.ID)
		path, err := imageVolumeSource(root, mnt, img)
		if err != nil {
			return nil, mounted, err
		}
		mnt.HostPath, mnt.Readonly, mnt.Image, mnt.ImageSubPath = path, true, nil, ""
	}
	return out, mounted, nil
}

// checkHandlerFeatures refuses, before anything is made, what the pod's
// runtime handler cannot do: a recursive read-only mount on a handler
// whose runc or kernel cannot make one would otherwise fail inside runc
// with a less clear message, or, with a runc that ignores unknown
// options, leave the submounts writable.
func (m *Manager) checkHandlerFeatures(pod *sandbox.Pod, cfg *runtimeapi.ContainerConfig) error {
	h, err := m.rt.Handler(pod.RuntimeHandler)
	if err != nil {
		return err
	}
	if h.Features.RecursiveReadOnlyMounts {
		return nil
	}
	for _, mnt := range cfg.GetMounts() {
		if mnt.GetRecursiveReadOnly() {
			return fmt.Errorf("%w: recursive read-only mount %s: runtime handler %q (runc %s at %s) cannot make recursive read-only mounts", spec.ErrUnsupported, mnt.GetContainerPath(), h.Name, h.Version, h.Runc)
		}
	}
	return nil
}
