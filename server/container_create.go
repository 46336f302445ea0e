package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/oci/spec"
	"github.com/crivet/crivet/sandbox"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (s *Server) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	cfg := req.GetConfig()
	if cfg.GetMetadata().GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "create container: config.metadata.name is required")
	}
	// The pod, and so its namespace, come from what crivet stored at
	// RunPodSandbox; req.SandboxConfig is the client's word and is ignored
	// for every decision.
	pod, err := s.pods.Get(req.GetPodSandboxId())
	if err != nil {
		return nil, toStatus(err)
	}
	if pod.State != sandbox.Ready {
		return nil, status.Errorf(codes.FailedPrecondition, "create container: pod sandbox %s is not ready", pod.ID)
	}
	img, err := s.images.Get(cfg.GetImage().GetImage())
	if err != nil {
		return nil, toStatus(fmt.Errorf("create container %s: image %q: %w", cfg.GetMetadata().GetName(), cfg.GetImage().GetImage(), err))
	}
	identity, err := s.admit(ctx, pod, img, cfg.GetImage().GetUserSpecifiedImage(), cfg.GetMetadata().GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	// Image volumes (KEP-4639) put code from the same node store into the
	// container: the same namespace policy applies to each.
	var volumes []*image.Image
	for _, m := range cfg.GetMounts() {
		if m.GetImage() == nil {
			continue
		}
		vimg, err := s.images.Get(m.GetImage().GetImage())
		if err != nil {
			return nil, toStatus(fmt.Errorf("create container: image volume %q: %w", m.GetImage().GetImage(), err))
		}
		if _, err := s.admit(ctx, pod, vimg, m.GetImage().GetUserSpecifiedImage(), cfg.GetMetadata().GetName()); err != nil {
			return nil, toStatus(err)
		}
		volumes = append(volumes, vimg)
	}

	id, release, err := s.pods.ReserveContainer(pod, cfg)
	if err != nil {
		return nil, toStatus(fmt.Errorf("create container: %w", err))
	}
	c, err := s.createContainer(ctx, id, pod, img, identity, cfg, volumes)
	if err != nil {
		release()
		return nil, toStatus(err)
	}
	s.events.publish(c.ID, pod.ID, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	return &runtimeapi.CreateContainerResponse{ContainerId: c.ID}, nil
}

// admit asks the image service for the create-time decision under the
// stored pod's namespace (never the request's) and returns the identity
// the image was verified as.
func (s *Server) admit(ctx context.Context, pod *sandbox.Pod, img *image.Image, userRef, container string) (string, error) {
	adm, err := s.images.AdmitFor(ctx, image.AdmitRequest{Image: img, UserRef: userRef, Namespace: pod.Namespace(), Pod: pod.ID, Container: container})
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", container, err)
	}
	return adm.Identity, nil
}

// createContainer makes the container's parts in an order a crash can be
// recovered from: the record, in phase Creating, comes before any part
// (storage container, image volume mounts, bundle, runc state and
// monitor), so start-up recovery finds and removes whatever a kill left;
// the record becomes Created only once runc has created the container.
// A refused log_path makes nothing at all.
func (s *Server) createContainer(ctx context.Context, id string, pod *sandbox.Pod, img *image.Image, identity string, cfg *runtimeapi.ContainerConfig, volumes []*image.Image) (_ *sandbox.Container, err error) {
	bundle := filepath.Join(s.opts.RunRoot, "bundles", id)
	start := time.Now()
	var tRootfs, tSpec, tCreate time.Duration
	logPath := ""
	logDir := pod.Config.GetLogDirectory()
	if logDir != "" && cfg.GetLogPath() != "" {
		if logPath, err = sandbox.ContainerLogPath(logDir, cfg.GetLogPath()); err != nil {
			return nil, fmt.Errorf("create container %s: %w", cfg.GetMetadata().GetName(), err)
		}
	}
	c := &sandbox.Container{
		ID: id, PodID: pod.ID, Config: cfg, CreatedAt: time.Now(), ImageID: img.ID, ImageRef: identity,
		LogPath: logPath, Bundle: bundle, Mounts: cfg.GetMounts(),
	}
	if err := s.pods.BeginContainer(c); err != nil {
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
			s.log.Error("create container: undo failed; start-up recovery will retry", "id", id, "error", e)
			return
		}
		_ = s.pods.RemoveContainer(id)
	}()
	cleanup = append(cleanup, func() error { return s.images.RemoveRootfs(id) })
	rootfs, err := s.images.CreateRootfs(id, img)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	tRootfs = time.Since(start)
	// Image volumes become read-only bind mounts of the mounted images.
	specCfg, imageMounts, err := s.mountImageVolumes(cfg, volumes)
	cleanup = append(cleanup, func() error {
		var errs []error
		for _, id := range imageMounts {
			errs = append(errs, s.images.UnmountImage(id))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	ic, err := s.images.RunConfig(img)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	nss, err := s.containerNamespaces(pod, cfg)
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
		SeccompProfileRoot: s.opts.SeccompProfileRoot,
	})
	if err != nil {
		return nil, fmt.Errorf("create container %s: spec: %w", id, err)
	}
	cleanup = append(cleanup, func() error { return os.RemoveAll(bundle) })
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	data, err := json.Marshal(sp)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	tSpec = time.Since(start)
	c.StopSignal, c.ImageMounts = ic.StopSignal, imageMounts
	c.UID, c.GID = int64(sp.Process.User.UID), int64(sp.Process.User.GID)
	if sp.Linux != nil {
		c.CgroupPath = sp.Linux.CgroupsPath
	}
	for _, g := range sp.Process.User.AdditionalGids {
		c.Supplemental = append(c.Supplemental, int64(g))
	}
	cleanup = append(cleanup, func() error { return s.rt.Delete(context.WithoutCancel(ctx), id) })
	if err := s.rt.Create(ctx, runtime.CreateOptions{
		ID: id, Bundle: bundle, LogPath: logPath, LogDir: logDir,
		Tty: cfg.GetTty(), Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(),
	}); err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	tCreate = time.Since(start)
	if err := s.pods.AddContainer(c); err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	s.log.Info("container created", "id", id, "pod", pod.ID, "name", cfg.GetMetadata().GetName(),
		"rootfs", tRootfs, "spec", tSpec-tRootfs, "runc_create", tCreate-tSpec, "record", time.Since(start)-tCreate)
	return c, nil
}

// containerNamespaces joins the pod's pinned namespaces, or the node's,
// as the pod and container configs ask.
func (s *Server) containerNamespaces(pod *sandbox.Pod, cfg *runtimeapi.ContainerConfig) (spec.Namespaces, error) {
	join := func(path string) spec.Namespace {
		if path == "" {
			return spec.Namespace{Host: true}
		}
		return spec.Namespace{Path: path}
	}
	n := spec.Namespaces{Network: join(pod.NetNS), IPC: join(pod.IPCNS), UTS: join(pod.UTSNS)}
	opts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	switch opts.GetPid() {
	case runtimeapi.NamespaceMode_NODE:
		n.PID = spec.Namespace{Host: true}
	case runtimeapi.NamespaceMode_POD:
		pid, err := s.infraPid(pod)
		if err != nil {
			return n, err
		}
		n.PID = spec.Namespace{Path: fmt.Sprintf("/proc/%d/ns/pid", pid)}
	case runtimeapi.NamespaceMode_TARGET:
		st, err := s.rt.Status(context.Background(), opts.GetTargetId())
		if err != nil || st.Pid == 0 {
			return n, fmt.Errorf("target container %s for the PID namespace is not running", opts.GetTargetId())
		}
		n.PID = spec.Namespace{Path: fmt.Sprintf("/proc/%d/ns/pid", st.Pid)}
	}
	return n, nil
}

// mountImageVolumes returns a copy of cfg whose image mounts are
// read-only bind mounts of the images, mounted here, and the IDs mounted.
func (s *Server) mountImageVolumes(cfg *runtimeapi.ContainerConfig, volumes []*image.Image) (*runtimeapi.ContainerConfig, []string, error) {
	if len(volumes) == 0 {
		return cfg, nil, nil
	}
	out := proto.Clone(cfg).(*runtimeapi.ContainerConfig)
	var mounted []string
	i := 0
	for _, m := range out.Mounts {
		if m.GetImage() == nil {
			continue
		}
		path, err := s.images.MountImage(volumes[i])
		if err != nil {
			return nil, mounted, err
		}
		mounted = append(mounted, volumes[i].ID)
		i++
		m.HostPath, m.Readonly, m.Image = path, true, nil
	}
	return out, mounted, nil
}
