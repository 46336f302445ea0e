package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crivet/crivet/test/fixtures"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// handlerRuncs are the default handler's runc (Debian's 1.1.5) and the
// second handler's: bin/runc (v1.5.3, `make runc`) where it was built,
// else Debian's again (the roots still differ).
func handlerRuncs(t *testing.T) (def, second string) {
	t.Helper()
	def = "/usr/bin/runc"
	if _, err := os.Stat(def); err != nil {
		t.Skipf("no Debian runc: %v", err)
	}
	second = def
	if p, err := filepath.Abs("../../bin/runc"); err == nil {
		if _, err := os.Stat(p); err == nil {
			second = p
		} else {
			t.Logf("no %s (make runc): test-handler runs Debian's runc too", p)
		}
	}
	return def, second
}

// A pod whose RuntimeClass names a configured handler runs every
// container, and its infra process, with that handler's runc on that
// handler's root; after a kill -9 and a restart the daemon still runs
// them with it (exec, stop, removal); a handler that is not configured
// is refused with its name and the configured ones.
func TestPodRunsOnItsRuntimeHandlerAcrossARestart(t *testing.T) {
	n := newNode(t)
	defRunc, handlerRunc := handlerRuncs(t)
	conf := filepath.Join(n.dir, "handlers.toml")
	fixtures.WriteFile(t, conf, fmt.Sprintf("runtime = %q\n\n[runtimes.test-handler]\nruntime_path = %q\n", defRunc, handlerRunc))
	n.extraArgs = append(n.extraArgs, "--config", conf) // the last --config wins
	img := fixtures.PushBusybox(t, n.reg.Ref("busybox:1"), fixtures.BusyboxConfig{})
	n.start()
	rc, ic := n.clients()
	if _, err := ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: img.Ref}}); err != nil {
		t.Fatal(err)
	}

	st, err := rc.Status(ctx(t), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range st.RuntimeHandlers {
		names = append(names, h.Name)
		if !h.GetFeatures().GetRecursiveReadOnlyMounts() {
			t.Errorf("handler %q: no recursive read-only mounts on this kernel", h.Name)
		}
	}
	if strings.Join(names, ",") != ",runc,test-handler" {
		t.Fatalf("Status handlers %q", names)
	}
	if info := st.Info["runtimeHandlerDetails"]; !strings.Contains(info, handlerRunc) || !strings.Contains(info, `"test-handler"`) {
		t.Fatalf("crictl info runtimeHandlerDetails %q does not show test-handler's runc", info)
	}

	// A PID-sharing pod: its infra process is a runc container too.
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "on-handler", Namespace: "default", Uid: "uid-on-handler"},
		Hostname:     "on-handler",
		LogDirectory: filepath.Join(n.dir, "logs", "on-handler"),
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}}},
	}
	_, err = rc.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: podCfg, RuntimeHandler: "kata"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"kata"`) || !strings.Contains(err.Error(), `"test-handler"`) {
		t.Fatalf("RunPodSandbox on an unknown handler: %v; want InvalidArgument naming it and the configured handlers", err)
	}
	if pods, _ := rc.ListPodSandbox(ctx(t), &runtimeapi.ListPodSandboxRequest{}); len(pods.GetItems()) != 0 {
		t.Fatalf("a refused handler left pods: %v", pods.Items)
	}

	// The default handler here is Debian's runc 1.1.5: no id-mapped
	// mounts, so no pod user namespace, refused before anything is made.
	usernsCfg := proto.Clone(podCfg).(*runtimeapi.PodSandboxConfig)
	usernsCfg.Metadata.Name, usernsCfg.Metadata.Uid = "userns-on-old-runc", "uid-userns-on-old-runc"
	usernsCfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{
		Mode: runtimeapi.NamespaceMode_POD,
		Uids: []*runtimeapi.IDMapping{{HostId: 65536, ContainerId: 0, Length: 65536}},
		Gids: []*runtimeapi.IDMapping{{HostId: 65536, ContainerId: 0, Length: 65536}},
	}
	_, err = rc.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: usernsCfg})
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "id-mapped mounts") {
		t.Fatalf("a user-namespaced pod on runc 1.1.5: %v; want Unimplemented saying runc lacks id-mapped mounts", err)
	}
	if pods, _ := rc.ListPodSandbox(ctx(t), &runtimeapi.ListPodSandboxRequest{}); len(pods.GetItems()) != 0 {
		t.Fatalf("a refused user-namespaced pod left pods: %v", pods.Items)
	}

	pod, err := rc.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: podCfg, RuntimeHandler: "test-handler"})
	if err != nil {
		t.Fatal(err)
	}
	podID := pod.PodSandboxId
	n.ids[podID] = true
	ctr, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: podCfg, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "sleeper"},
		Image:    &runtimeapi.ImageSpec{Image: img.Ref, UserSpecifiedImage: img.Ref},
		Command:  []string{"sleep", "3600"},
		LogPath:  "sleeper.log",
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctrID := ctr.ContainerId
	n.ids[ctrID] = true
	if _, err := rc.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: ctrID}); err != nil {
		t.Fatal(err)
	}

	run := filepath.Join(n.dir, "run")
	handlerRoot, defaultRoot := filepath.Join(run, "runc-test-handler"), filepath.Join(run, "runc")
	onHandler := func(id string) {
		t.Helper()
		if _, err := os.Stat(filepath.Join(handlerRoot, id, "state.json")); err != nil {
			t.Fatalf("%s: no runc state under test-handler's root: %v", id, err)
		}
		if _, err := os.Stat(filepath.Join(defaultRoot, id)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: runc state under the default root: %v", id, err)
		}
	}
	onHandler(ctrID)
	onHandler(podID) // the infra process
	if ps, err := rc.PodSandboxStatus(ctx(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID}); err != nil || ps.Status.RuntimeHandler != "test-handler" {
		t.Fatalf("PodSandboxStatus runtime handler: %v %v", ps.GetStatus().GetRuntimeHandler(), err)
	}

	n.kill9()
	n.start()
	rc, _ = n.clients()
	cs, err := rc.ContainerStatus(ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: ctrID})
	if err != nil || cs.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after kill -9 and restart: %v %v", cs.GetStatus().GetState(), err)
	}
	ex, err := rc.ExecSync(ctx(t), &runtimeapi.ExecSyncRequest{ContainerId: ctrID, Cmd: []string{"echo", "still-here"}, Timeout: 30})
	if err != nil || ex.ExitCode != 0 || string(ex.Stdout) != "still-here\n" {
		t.Fatalf("ExecSync after restart: %q %v", ex.GetStdout(), err)
	}
	if _, err := rc.StopPodSandbox(ctx(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.RemovePodSandbox(ctx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{ctrID, podID} {
		if _, err := os.Stat(filepath.Join(handlerRoot, id)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: runc state left under test-handler's root: %v", id, err)
		}
	}
}
