package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/crivet/crivet/oci/cgroup"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/oci/spec"
	"github.com/crivet/crivet/sandbox"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// crictl info shows what RuntimeDefault AppArmor does on this node; on a
// kernel without AppArmor (this CI host) it says that no profile applies.
func TestVerboseStatusReportsAppArmor(t *testing.T) {
	s := &criServer{}
	resp, err := s.Status(context.Background(), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var aa spec.AppArmorState
	if err := json.Unmarshal([]byte(resp.Info["apparmor"]), &aa); err != nil {
		t.Fatalf("status info apparmor %q: %v", resp.Info["apparmor"], err)
	}
	h, err := spec.CurrentHost()
	if err != nil {
		t.Fatal(err)
	}
	if aa.Enabled != h.AppArmor {
		t.Fatalf("status says enabled=%v, host has %v", aa.Enabled, h.AppArmor)
	}
	if aa.DefaultProfile == "" && aa.Reason == "" {
		t.Fatal("no default profile and no reason given")
	}
	if quiet, _ := s.Status(context.Background(), &runtimeapi.StatusRequest{}); len(quiet.Info) != 0 {
		t.Fatalf("non-verbose status has info: %v", quiet.Info)
	}
}

func TestVersionReportsCrivetAndItsBuild(t *testing.T) {
	f := newFixture(t)
	resp, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.VersionResponse, error) {
		return f.s.Version(ctx, &runtimeapi.VersionRequest{})
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.RuntimeName != "crivet" || resp.RuntimeVersion != "test-1" || resp.RuntimeApiVersion != "v1" || resp.Version == "" {
		t.Fatalf("version %v", resp)
	}
}

func TestStatusReportsNetworkReadiness(t *testing.T) {
	for _, c := range []struct {
		name    string
		pods    bool
		netErr  error
		ready   bool
		message string
	}{
		{"network ready", true, nil, true, ""},
		{"CNI not ready", true, errors.New("cni config uninitialized"), false, "cni config uninitialized"},
		{"no pod service", false, nil, false, "crivet: no pod sandbox service"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.pods.netErr = c.netErr
			if !c.pods {
				f.s.pods = nil
			}
			resp, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.StatusResponse, error) {
				return f.s.Status(ctx, &runtimeapi.StatusRequest{})
			})
			if err != nil {
				t.Fatal(err)
			}
			conds := map[string]*runtimeapi.RuntimeCondition{}
			for _, cond := range resp.Status.Conditions {
				conds[cond.Type] = cond
			}
			if rt := conds[runtimeapi.RuntimeReady]; rt == nil || !rt.Status {
				t.Fatalf("runtime condition %v", rt)
			}
			nw := conds[runtimeapi.NetworkReady]
			if nw == nil || nw.Status != c.ready {
				t.Fatalf("network condition %v, want ready=%v", nw, c.ready)
			}
			if !c.ready && (nw.Reason != "NetworkPluginNotReady" || nw.Message != c.message) {
				t.Fatalf("network condition %v, want reason NetworkPluginNotReady and %q", nw, c.message)
			}
			if c.ready && (nw.Reason != "" || nw.Message != "") {
				t.Fatalf("ready network has reason %q %q", nw.Reason, nw.Message)
			}
			var handlers []string
			for _, h := range resp.RuntimeHandlers {
				handlers = append(handlers, h.Name)
			}
			if !slices.Equal(handlers, []string{"", defaultHandler}) {
				t.Fatalf("handlers %q", handlers)
			}
		})
	}
}

// kubelet (KubeletCgroupDriverFromCRI) takes its cgroupDriver from here.
func TestRuntimeConfigReportsTheCgroupDriver(t *testing.T) {
	for driver, want := range map[cgroup.Driver]runtimeapi.CgroupDriver{
		cgroup.Cgroupfs: runtimeapi.CgroupDriver_CGROUPFS,
		cgroup.Systemd:  runtimeapi.CgroupDriver_SYSTEMD,
		"":              runtimeapi.CgroupDriver_CGROUPFS,
	} {
		f := newFixture(t)
		f.s.info.CgroupDriver = driver
		resp, err := f.s.RuntimeConfig(context.Background(), &runtimeapi.RuntimeConfigRequest{})
		if err != nil || resp.GetLinux().GetCgroupDriver() != want {
			t.Errorf("driver %q: runtime config %v %v, want %v", driver, resp, err, want)
		}
	}
}

func TestUpdatePodSandboxResourcesIsTheLifecycles(t *testing.T) {
	f := newFixture(t)
	if _, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
		return f.s.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: "pod1"})
	}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "lifecycle", f.lc.got(), "UpdatePod pod1")
	f.lc.err = fmt.Errorf("update pod sandbox: %q: %w", "gone", sandbox.ErrNotFound)
	_, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
		return f.s.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: "gone"})
	})
	wantCode(t, err, codes.NotFound)
}

// kubelet admits a pod that needs a feature only on a handler that says
// it has it: every handler is listed with its own features, "" mirroring
// the default; supplemental-groups policies are crivet's own, so always on.
func TestStatusListsEveryHandlerWithItsFeatures(t *testing.T) {
	handlers := []runtime.HandlerInfo{
		{Name: runtime.DefaultHandler, Runc: "/usr/bin/runc", Version: "1.1.5", Features: runtime.Features{RecursiveReadOnlyMounts: true, Missing: []string{"idmapped_mounts: runc does not make id-mapped mounts (runc 1.2)"}}},
		{Name: "test-handler", Runc: "/opt/runc", Version: "1.5.3", Features: runtime.Features{RecursiveReadOnlyMounts: true, IDMappedMounts: true}},
		{Name: "old", Runc: "/opt/runc-1.0", Version: "1.0.0"},
	}
	for _, userns := range []bool{false, true} {
		f := newFixture(t)
		f.s.info.Handlers = func() []runtime.HandlerInfo { return handlers }
		f.s.info.UserNamespaces = userns
		resp, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.StatusResponse, error) {
			return f.s.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
		})
		if err != nil {
			t.Fatal(err)
		}
		type feat struct{ rro, userns bool }
		got := map[string]feat{}
		var names []string
		for _, h := range resp.RuntimeHandlers {
			names = append(names, h.Name)
			got[h.Name] = feat{h.GetFeatures().GetRecursiveReadOnlyMounts(), h.GetFeatures().GetUserNamespaces()}
		}
		if !slices.Equal(names, []string{"", "runc", "test-handler", "old"}) {
			t.Fatalf("handlers %q", names)
		}
		want := map[string]feat{"": {true, false}, "runc": {true, false}, "test-handler": {true, userns}, "old": {false, false}}
		if !maps.Equal(got, want) {
			t.Fatalf("userns=%v: features %v, want %v", userns, got, want)
		}
		if !resp.GetFeatures().GetSupplementalGroupsPolicy() {
			t.Fatal("SupplementalGroupsPolicy not advertised")
		}
		var info map[string]handlerInfo
		if err := json.Unmarshal([]byte(resp.Info["runtimeHandlerDetails"]), &info); err != nil {
			t.Fatalf("info runtimeHandlerDetails %q: %v", resp.Info["runtimeHandlerDetails"], err)
		}
		th := info["test-handler"]
		if th.Runc != "/opt/runc" || th.Version != "1.5.3" || !th.IDMappedMounts || th.UserNamespaces != userns || th.Default || !info["runc"].Default {
			t.Fatalf("info %+v", info)
		}
		if !userns && !strings.Contains(strings.Join(th.Missing, " "), "hostUsers: false") {
			t.Fatalf("info does not say why user namespaces are off: %q", th.Missing)
		}
	}
}

// crictl info shows NRI (connected plugins) only when it is on.
func TestVerboseStatusShowsNRIOnlyWhenOn(t *testing.T) {
	s := &criServer{}
	resp, err := s.Status(context.Background(), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := resp.Info["nri"]; ok {
		t.Errorf("NRI off, yet info has %q", resp.Info["nri"])
	}
	s.info.Plugins = func() any { return map[string]any{"plugins": []string{"10-x"}} }
	resp, err = s.Status(context.Background(), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Info["nri"]; got != `{"plugins":["10-x"]}` {
		t.Errorf("info nri = %q", got)
	}
}
