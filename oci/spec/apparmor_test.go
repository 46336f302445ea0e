package spec

import (
	"errors"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestAppArmorProfileChoice(t *testing.T) {
	withAA := &Host{AppArmor: true, AppArmorState: AppArmorState{Enabled: true, DefaultProfile: DefaultAppArmorProfile}}
	broken := &Host{AppArmor: true, AppArmorState: AppArmorState{Enabled: true, Reason: "apparmor_parser: not found"}}
	off := &Host{}
	rd := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	unconf := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
	local := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "localhost/my-prof"}
	for _, c := range []struct {
		name       string
		p          *runtimeapi.SecurityProfile
		legacy     string
		privileged bool
		h          *Host
		want       string
		err        error
	}{
		{"RuntimeDefault applies the default profile", rd, "", false, withAA, DefaultAppArmorProfile, nil},
		{"unset means RuntimeDefault", nil, "", false, withAA, DefaultAppArmorProfile, nil},
		{"legacy runtime/default", nil, "runtime/default", false, withAA, DefaultAppArmorProfile, nil},
		{"legacy unconfined", nil, "unconfined", false, withAA, "", nil},
		{"legacy localhost", nil, "localhost/legacy-prof", false, withAA, "legacy-prof", nil},
		{"Unconfined", unconf, "", false, withAA, "", nil},
		{"Localhost", local, "", false, withAA, "my-prof", nil},
		{"Localhost without a name", &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost}, "", false, withAA, "", ErrInvalid},
		{"privileged runs unconfined", rd, "", true, withAA, "", nil},
		{"privileged keeps an explicit Localhost", local, "", true, withAA, "my-prof", nil},
		{"default not loadable fails closed", rd, "", false, broken, "", ErrUnsupported},
		{"no AppArmor: nothing to apply", rd, "", false, off, "", nil},
		{"no AppArmor: Localhost not applied", local, "", false, off, "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := apparmorProfile(c.p, c.legacy, c.privileged, c.h)
			if !errors.Is(err, c.err) || (c.err == nil && err != nil) {
				t.Fatalf("error %v, want %v", err, c.err)
			}
			if got != c.want {
				t.Fatalf("profile %q, want %q", got, c.want)
			}
		})
	}
}

func TestDetectAppArmorLoadsTheDefaultProfileOnce(t *testing.T) {
	orig, origParser := installAppArmorDefault, hasAppArmorParser
	t.Cleanup(func() { installAppArmorDefault, hasAppArmorParser = orig, origParser })
	hasAppArmorParser = func() bool { return true }
	var loaded []string
	installAppArmorDefault = func(name string) error { loaded = append(loaded, name); return nil }

	h := &Host{}
	detectAppArmor(h, true)
	if h.AppArmorState.DefaultProfile != DefaultAppArmorProfile || len(loaded) != 1 || loaded[0] != DefaultAppArmorProfile {
		t.Fatalf("state %+v, loaded %v", h.AppArmorState, loaded)
	}
	installAppArmorDefault = func(string) error { return errors.New("apparmor_parser: exit status 1") }
	h = &Host{}
	detectAppArmor(h, true)
	if h.AppArmorState.DefaultProfile != "" || h.AppArmorState.Reason == "" {
		t.Fatalf("failed load not reported: %+v", h.AppArmorState)
	}
	h = &Host{}
	detectAppArmor(h, false)
	if h.AppArmor || h.AppArmorState.Enabled || h.AppArmorState.Reason == "" {
		t.Fatalf("disabled AppArmor not reported: %+v", h.AppArmorState)
	}
}

// A kernel that enforces AppArmor on a node without apparmor_parser (a
// minimal Debian, a kind node): nothing can be loaded, RuntimeDefault runs
// unconfined as in containerd and CRI-O, and the state says why; a
// Localhost profile still goes to runc, a failed load with the parser
// present is still a refusal.
func TestAppArmorWithoutTheParser(t *testing.T) {
	orig, origParser := installAppArmorDefault, hasAppArmorParser
	t.Cleanup(func() { installAppArmorDefault, hasAppArmorParser = orig, origParser })
	installAppArmorDefault = func(string) error { t.Fatal("load attempted without a parser"); return nil }
	hasAppArmorParser = func() bool { return false }
	h := &Host{}
	detectAppArmor(h, true)
	if !h.AppArmor || !h.AppArmorState.NoParser || !strings.Contains(h.AppArmorState.Reason, "apparmor_parser is not installed") {
		t.Fatalf("state %+v", h.AppArmorState)
	}
	if got, err := apparmorProfile(&runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, "", false, h); err != nil || got != "" {
		t.Fatalf("RuntimeDefault without a parser: %q, %v; want unconfined", got, err)
	}
	if got, err := apparmorProfile(&runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "localhost/mine"}, "", false, h); err != nil || got != "mine" {
		t.Fatalf("Localhost without a parser: %q, %v", got, err)
	}
	hasAppArmorParser = func() bool { return true }
	installAppArmorDefault = func(string) error { return errors.New("apparmor_parser: exit status 1") }
	h = &Host{}
	detectAppArmor(h, true)
	if _, err := apparmorProfile(nil, "", false, h); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("a failed load with the parser present: %v, want ErrUnsupported", err)
	}
}
