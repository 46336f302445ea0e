package server

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/crivet/crivet/oci/spec"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// crictl info shows what RuntimeDefault AppArmor does on this node; on a
// kernel without AppArmor (this CI host) it says that no profile applies.
func TestVerboseStatusReportsAppArmor(t *testing.T) {
	s := &Server{}
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
