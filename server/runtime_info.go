package server

import (
	"context"
	"encoding/json"

	"github.com/crivet/crivet/oci/cgroup"
	"github.com/crivet/crivet/oci/runtime"
	"github.com/crivet/crivet/oci/spec"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const runtimeName = "crivet"

func (s *criServer) Version(ctx context.Context, req *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           "0.1.0",
		RuntimeName:       runtimeName,
		RuntimeVersion:    s.info.Version,
		RuntimeApiVersion: "v1",
	}, nil
}

func (s *criServer) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	runtimeReady := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true}
	if s.rt != nil {
		if err := s.rt.Ready(ctx); err != nil {
			runtimeReady.Status, runtimeReady.Reason, runtimeReady.Message = false, "RuntimeBinaryNotReady", err.Error()
		}
	}
	networkReady := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	if s.pods == nil {
		networkReady.Status, networkReady.Reason, networkReady.Message = false, "NetworkPluginNotReady", "crivet: no pod sandbox service"
	} else if err := s.pods.NetworkReady(); err != nil {
		networkReady.Status, networkReady.Reason, networkReady.Message = false, "NetworkPluginNotReady", err.Error()
	}
	resp := &runtimeapi.StatusResponse{
		Status:          &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{runtimeReady, networkReady}},
		RuntimeHandlers: s.runtimeHandlers(),
		// oci/spec applies both policies itself (ResolveUser: Strict
		// leaves out the image's /etc/group groups) whatever the runc, and
		// ContainerStatus reports the identity it built.
		Features: &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	if req.GetVerbose() {
		resp.Info = s.statusInfo()
	}
	return resp, nil
}

// defaultHandler is what RunPodSandbox's "" means.
const defaultHandler = runtime.DefaultHandler

// runtimeHandlers lists every handler with its features for kubelet,
// which admits a pod needing a feature only on a handler that has it: ""
// first (a pod without a RuntimeClass) mirroring the default handler, then
// the default by name, then the others.
func (s *criServer) runtimeHandlers() []*runtimeapi.RuntimeHandler {
	var hs []runtime.HandlerInfo
	if s.info.Handlers != nil {
		hs = s.info.Handlers()
	}
	if len(hs) == 0 {
		hs = []runtime.HandlerInfo{{Name: defaultHandler}}
	}
	out := make([]*runtimeapi.RuntimeHandler, 0, len(hs)+1)
	for i, h := range hs {
		f := &runtimeapi.RuntimeHandlerFeatures{
			RecursiveReadOnlyMounts: h.Features.RecursiveReadOnlyMounts,
			UserNamespaces:          h.Features.IDMappedMounts && s.info.UserNamespaces,
		}
		if i == 0 {
			out = append(out, &runtimeapi.RuntimeHandler{Name: "", Features: proto.Clone(f).(*runtimeapi.RuntimeHandlerFeatures)})
		}
		out = append(out, &runtimeapi.RuntimeHandler{Name: h.Name, Features: f})
	}
	return out
}

// handlerInfo is one handler as crictl info shows it: where its runc and
// state are, its version, and each feature kubelet is told with the
// reason one is off.
type handlerInfo struct {
	Runc                    string   `json:"runc"`
	Root                    string   `json:"root"`
	Version                 string   `json:"version"`
	Default                 bool     `json:"default,omitempty"`
	RecursiveReadOnlyMounts bool     `json:"recursiveReadOnlyMounts"`
	IDMappedMounts          bool     `json:"idmappedMounts"`
	UserNamespaces          bool     `json:"userNamespaces"`
	Missing                 []string `json:"missing,omitempty"`
}

// statusInfo is the verbose Status (crictl info): the running
// configuration, each policy file's state, and what the node's security
// features do here (e.g. that RuntimeDefault AppArmor is not applied on a
// kernel without AppArmor).
func (s *criServer) statusInfo() map[string]string {
	info := map[string]string{}
	if s.info.Config != nil {
		if b, err := json.Marshal(s.info.Config()); err == nil {
			info["config"] = string(b)
		}
	}
	if s.info.Policies != nil {
		// An object, not a list: crictl shows only JSON objects.
		if b, err := json.Marshal(map[string]any{"files": s.info.Policies.Files()}); err == nil {
			info["signaturePolicies"] = string(b)
		}
	}
	if s.info.Handlers != nil {
		// An object keyed by handler name: crictl shows only JSON objects.
		hs := map[string]handlerInfo{}
		for i, h := range s.info.Handlers() {
			hi := handlerInfo{
				Runc: h.Runc, Root: h.Root, Version: h.Version, Default: i == 0,
				RecursiveReadOnlyMounts: h.Features.RecursiveReadOnlyMounts, IDMappedMounts: h.Features.IDMappedMounts,
				UserNamespaces: h.Features.IDMappedMounts && s.info.UserNamespaces, Missing: h.Features.Missing,
			}
			if h.Features.IDMappedMounts && !s.info.UserNamespaces {
				hi.Missing = append(hi.Missing, "user_namespaces: this crivet does not run pods with hostUsers: false")
			}
			hs[h.Name] = hi
		}
		if b, err := json.Marshal(hs); err == nil {
			info["runtimeHandlerDetails"] = string(b)
		}
	}
	if s.info.Plugins != nil {
		if b, err := json.Marshal(s.info.Plugins()); err == nil {
			info["nri"] = string(b)
		}
	}
	if s.info.CDI != nil {
		if b, err := json.Marshal(s.info.CDI()); err == nil {
			info["cdi"] = string(b)
		}
	}
	h, err := spec.CurrentHost()
	if err != nil {
		info["host"] = err.Error()
		return info
	}
	if b, err := json.Marshal(h.AppArmorState); err == nil {
		info["apparmor"] = string(b)
	}
	return info
}

// RuntimeConfig tells kubelet which cgroup driver to use: kubelet takes it
// from here when it asks (KubeletCgroupDriverFromCRI) and must match it.
func (s *criServer) RuntimeConfig(ctx context.Context, req *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	driver := runtimeapi.CgroupDriver_CGROUPFS
	if s.info.CgroupDriver == cgroup.Systemd {
		driver = runtimeapi.CgroupDriver_SYSTEMD
	}
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}

// UpdateRuntimeConfig: the pod CIDR kubelet sends is for CNI plugins that
// template it; crivet's CNI configuration is the node's files, so there
// is nothing to apply, and it is logged for the operator.
func (s *criServer) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	s.log.Info("runtime config update", "pod_cidr", req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr())
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

// UpdatePodSandboxResources: see lifecycle.Manager.UpdatePod.
func (s *criServer) UpdatePodSandboxResources(ctx context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	if err := s.lc.UpdatePod(ctx, req.GetPodSandboxId(), req.GetOverhead(), req.GetResources()); err != nil {
		return nil, err
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}
