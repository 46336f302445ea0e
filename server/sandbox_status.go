package server

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/crivet/crivet/sandbox"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func podState(p *sandbox.Pod) runtimeapi.PodSandboxState {
	if p.State == sandbox.Ready {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

func nsMode(m runtimeapi.NamespaceMode) runtimeapi.NamespaceMode { return m }

func (s *criServer) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	p, err := s.pods.Get(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	cfg := p.Config
	st := &runtimeapi.PodSandboxStatus{
		Id:             p.ID,
		Metadata:       cfg.GetMetadata(),
		State:          podState(p),
		CreatedAt:      p.CreatedAt.UnixNano(),
		Labels:         cfg.GetLabels(),
		Annotations:    cfg.GetAnnotations(),
		RuntimeHandler: p.RuntimeHandler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			Options: cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(),
		}},
	}
	if len(p.IPs) > 0 {
		st.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: p.IPs[0]}
		for _, ip := range p.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: st}
	if req.GetVerbose() {
		info, _ := json.Marshal(p)
		resp.Info = map[string]string{"info": string(info)}
	}
	// kubelet (Evented PLEG) reads the pod's containers from here too.
	for _, c := range s.pods.Containers(p.ID) {
		if cs, err := s.containerStatus(ctx, c); err == nil {
			resp.ContainersStatuses = append(resp.ContainersStatuses, cs)
		}
	}
	resp.Timestamp = time.Now().UnixNano()
	return resp, nil
}

func (s *criServer) listPods(filter *runtimeapi.PodSandboxFilter) []*runtimeapi.PodSandbox {
	var out []*runtimeapi.PodSandbox
	for _, p := range s.pods.List() {
		if filter != nil {
			if filter.Id != "" && !strings.HasPrefix(p.ID, filter.Id) {
				continue
			}
			if filter.State != nil && filter.State.State != podState(p) {
				continue
			}
			if !labelsMatch(p.Config.GetLabels(), filter.LabelSelector) {
				continue
			}
		}
		out = append(out, &runtimeapi.PodSandbox{
			Id: p.ID, Metadata: p.Config.GetMetadata(), State: podState(p), CreatedAt: p.CreatedAt.UnixNano(),
			Labels: p.Config.GetLabels(), Annotations: p.Config.GetAnnotations(), RuntimeHandler: p.RuntimeHandler,
		})
	}
	slices.SortFunc(out, func(a, b *runtimeapi.PodSandbox) int { return int(b.CreatedAt - a.CreatedAt) })
	return out
}

func labelsMatch(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func (s *criServer) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	return &runtimeapi.ListPodSandboxResponse{Items: s.listPods(req.GetFilter())}, nil
}

func (s *criServer) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream runtimeapi.RuntimeService_StreamPodSandboxesServer) error {
	return sendBatches(s.listPods(req.GetFilter()), func(b []*runtimeapi.PodSandbox) error {
		return stream.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: b})
	})
}

// sendBatches sends a list over a server stream in bounded messages, so a
// node with many objects never builds one huge response.
func sendBatches[T any](items []T, send func([]T) error) error {
	const batch = 100
	for len(items) > 0 {
		n := min(batch, len(items))
		if err := send(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}
