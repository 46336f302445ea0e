package spec

import (
	"fmt"
	"os/exec"
	"strings"

	"github.com/moby/profiles/apparmor"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultAppArmorProfile is the profile RuntimeDefault means on a host with
// AppArmor: moby's default container profile, loaded under crivet's name.
const DefaultAppArmorProfile = "crivet-default"

// AppArmorState says what RuntimeDefault does on this host, for the
// daemon's log and the verbose CRI Status.
type AppArmorState struct {
	Enabled bool `json:"enabled"`
	// DefaultProfile is the profile RuntimeDefault applies, "" when none.
	DefaultProfile string `json:"defaultProfile,omitempty"`
	// Reason explains an empty DefaultProfile.
	Reason string `json:"reason,omitempty"`
	// NoParser: the kernel enforces AppArmor but apparmor_parser is not
	// installed, so no profile can be loaded. RuntimeDefault then runs
	// unconfined, as containerd and CRI-O do (kubelet asks for
	// RuntimeDefault on every container of such a node, and refusing them
	// all would stop the node); Reason and the start-up log say so.
	NoParser bool `json:"noParser,omitempty"`
}

// hasAppArmorParser: profiles are loaded with apparmor_parser found on
// PATH (moby's loader runs it by name); a variable for tests.
var hasAppArmorParser = func() bool {
	_, err := exec.LookPath("apparmor_parser")
	return err == nil
}

// installAppArmorDefault loads the default profile unless the kernel has it
// already; a variable so tests can stand in for apparmor_parser.
var installAppArmorDefault = func(name string) error {
	if loaded, err := apparmor.IsLoaded(name); err == nil && loaded {
		return nil
	}
	return apparmor.InstallDefault(name)
}

// detectAppArmor fills h's AppArmor fields. enabled is the kernel's word
// (/sys/module/apparmor/parameters/enabled).
func detectAppArmor(h *Host, enabled bool) {
	h.AppArmor = enabled
	h.AppArmorState = AppArmorState{Enabled: enabled}
	if !enabled {
		h.AppArmorState.Reason = "AppArmor is not enabled in this kernel: RuntimeDefault and Localhost AppArmor profiles are not applied"
		return
	}
	if !hasAppArmorParser() {
		h.AppArmorState.NoParser = true
		h.AppArmorState.Reason = "AppArmor is enabled in the kernel but apparmor_parser is not installed (Debian: the apparmor package): the default profile cannot be loaded, so RuntimeDefault runs unconfined; Localhost profiles already loaded still apply"
		return
	}
	if err := installAppArmorDefault(DefaultAppArmorProfile); err != nil {
		h.AppArmorState.Reason = fmt.Sprintf("loading the default profile %s failed: %v", DefaultAppArmorProfile, err)
		return
	}
	h.AppArmorState.DefaultProfile = DefaultAppArmorProfile
}

// apparmorProfile names the AppArmor profile to run under. On a host
// without AppArmor the kernel could not apply any profile (runc would
// fail), so none is set, and the status says so. With AppArmor, as in
// containerd and CRI-O, RuntimeDefault and an unset profile mean the
// runtime's default profile; privileged containers and Unconfined run
// unconfined; Localhost names a profile the node has loaded. A default
// that is asked for but could not be loaded is an error, never a silent
// unconfined run.
func apparmorProfile(p *runtimeapi.SecurityProfile, legacy string, privileged bool, h *Host) (string, error) {
	if !h.AppArmor {
		return "", nil
	}
	kind := runtimeapi.SecurityProfile_RuntimeDefault
	local := ""
	switch {
	case p != nil:
		kind, local = p.GetProfileType(), strings.TrimPrefix(p.GetLocalhostRef(), "localhost/")
	case legacy == "unconfined":
		kind = runtimeapi.SecurityProfile_Unconfined
	case strings.HasPrefix(legacy, "localhost/"):
		kind, local = runtimeapi.SecurityProfile_Localhost, strings.TrimPrefix(legacy, "localhost/")
	}
	switch kind {
	case runtimeapi.SecurityProfile_Unconfined:
		return "", nil
	case runtimeapi.SecurityProfile_Localhost:
		if local == "" {
			return "", fmt.Errorf("%w: Localhost AppArmor profile without a name", ErrInvalid)
		}
		return local, nil
	}
	if privileged {
		return "", nil
	}
	if h.AppArmorState.DefaultProfile == "" {
		if h.AppArmorState.NoParser {
			return "", nil
		}
		return "", fmt.Errorf("%w: RuntimeDefault AppArmor profile: %s", ErrUnsupported, h.AppArmorState.Reason)
	}
	return h.AppArmorState.DefaultProfile, nil
}
