package server

import (
	"context"
	"encoding/json"
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

func (s *Server) createContainer(ctx context.Context, id string, pod *sandbox.Pod, img *image.Image, identity string, cfg *runtimeapi.ContainerConfig, volumes []*image.Image) (_ *sandbox.Container, err error) {
	bundle := filepath.Join(s.opts.RunRoot, "bundles", id)
	start := time.Now()
	var tRootfs, tSpec, tRecord time.Duration
	cleanup := []func(){}
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()
	rootfs, err := s.images.CreateRootfs(id, img)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	cleanup = append(cleanup, func() { _ = s.images.RemoveRootfs(id) })
	tRootfs = time.Since(start)
	// Image volumes become read-only bind mounts of the mounted images.
	specCfg, imageMounts, err := s.mountImageVolumes(cfg, volumes)
	cleanup = append(cleanup, func() {
		for _, id := range imageMounts {
			_ = s.images.UnmountImage(id)
		}
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
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() { _ = os.RemoveAll(bundle) })
	data, err := json.Marshal(sp)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		return nil, err
	}
	tSpec = time.Since(start)
	logPath := ""
	if dir := pod.Config.GetLogDirectory(); dir != "" && cfg.GetLogPath() != "" {
		logPath = filepath.Join(dir, cfg.GetLogPath())
		if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
			return nil, fmt.Errorf("create container %s: log dir: %w", id, err)
		}
	}
	c := &sandbox.Container{
		ID: id, PodID: pod.ID, Config: cfg, CreatedAt: time.Now(), ImageID: img.ID, ImageRef: identity,
		LogPath: logPath, Bundle: bundle, Mounts: cfg.GetMounts(), StopSignal: ic.StopSignal, ImageMounts: imageMounts,
		UID: int64(sp.Process.User.UID), GID: int64(sp.Process.User.GID),
	}
	if sp.Linux != nil {
		c.CgroupPath = sp.Linux.CgroupsPath
	}
	for _, g := range sp.Process.User.AdditionalGids {
		c.Supplemental = append(c.Supplemental, int64(g))
	}
	// The record goes first, so a crash after runc create still finds the
	// container to clean up at the next start.
	if err := s.pods.AddContainer(c); err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() { _ = s.pods.RemoveContainer(id) })
	tRecord = time.Since(start)
	if err := s.rt.Create(ctx, runtime.CreateOptions{
		ID: id, Bundle: bundle, LogPath: logPath,
		Tty: cfg.GetTty(), Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(),
	}); err != nil {
		cleanup = append(cleanup, func() { _ = s.rt.Delete(context.WithoutCancel(ctx), id) })
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	s.log.Info("container created", "id", id, "pod", pod.ID, "name", cfg.GetMetadata().GetName(),
		"rootfs", tRootfs, "spec", tSpec-tRootfs, "record", tRecord-tSpec, "runc_create", time.Since(start)-tRecord)
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
