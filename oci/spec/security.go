package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultCaps is the capability set of an unprivileged container that adds
// or drops nothing: docker's and containerd's set, which Kubernetes users
// (and critest's "dropping capability" spec, via NET_RAW) expect.
var DefaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// DefaultMaskedPaths and DefaultReadonlyPaths are runc's and containerd's
// defaults, used when the security context has no list of its own.
var (
	DefaultMaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
		"/proc/sched_debug", "/proc/scsi", "/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
	DefaultReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// capabilities computes the process capability sets.
//
// Privileged: everything crivet holds, add/drop ignored (as containerd; CRI
// says they MAY have no effect). Otherwise the defaults crivet holds, then
// add "ALL", drop "ALL", the named adds, the named drops, in that order, so
// that drop ALL + add NET_BIND_SERVICE keeps just that one. Asking for a
// capability crivet does not hold fails here: runc would fail later with
// "can't get final child's PID from pipe" or similar.
func capabilities(c *runtimeapi.Capability, privileged bool, h *Host) (*specs.LinuxCapabilities, error) {
	var set []string
	if privileged {
		set = slices.Clone(h.Caps)
	} else {
		for _, cp := range DefaultCaps {
			if slices.Contains(h.Caps, cp) {
				set = append(set, cp)
			}
		}
		if hasAll(c.GetAddCapabilities()) {
			set = slices.Clone(h.Caps)
		}
		if hasAll(c.GetDropCapabilities()) {
			set = nil
		}
		for _, name := range c.GetAddCapabilities() {
			if strings.EqualFold(name, "ALL") {
				continue
			}
			cp, err := heldCap(name, h)
			if err != nil {
				return nil, err
			}
			if !slices.Contains(set, cp) {
				set = append(set, cp)
			}
		}
		for _, name := range c.GetDropCapabilities() {
			if strings.EqualFold(name, "ALL") {
				continue
			}
			cp, err := capName(name)
			if err != nil {
				return nil, err
			}
			set = slices.DeleteFunc(set, func(s string) bool { return s == cp })
		}
	}
	// Ambient capabilities must also be permitted and inheritable, or the
	// kernel silently drops them at exec.
	var ambient []string
	for _, name := range c.GetAddAmbientCapabilities() {
		cp, err := heldCap(name, h)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(ambient, cp) {
			ambient = append(ambient, cp)
		}
		if !slices.Contains(set, cp) {
			set = append(set, cp)
		}
	}
	sortCaps(set)
	sortCaps(ambient)
	return &specs.LinuxCapabilities{
		Bounding:    set,
		Effective:   slices.Clone(set),
		Permitted:   slices.Clone(set),
		Inheritable: ambient,
		Ambient:     slices.Clone(ambient),
	}, nil
}

func hasAll(names []string) bool {
	return slices.ContainsFunc(names, func(s string) bool { return strings.EqualFold(s, "ALL") })
}

// capName normalises a CRI capability name ("NET_ADMIN", as kubelet sends
// it, or "CAP_NET_ADMIN") to the OCI form.
func capName(name string) (string, error) {
	n := strings.ToUpper(name)
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	if !knownCap(n) {
		return "", fmt.Errorf("%w: unknown capability %q", ErrInvalid, name)
	}
	return n, nil
}

func heldCap(name string, h *Host) (string, error) {
	n, err := capName(name)
	if err != nil {
		return "", err
	}
	if !slices.Contains(h.Caps, n) {
		return "", fmt.Errorf("%w: capability %s is not held by crivet on this host", ErrUnsupported, n)
	}
	return n, nil
}

// seccompProfile resolves the seccomp profile from the structured field or,
// when that is absent, the deprecated path string. Privileged containers
// run unconfined (CRI: "Seccomp restrictions are not applied"). No profile
// at all means unconfined, as CRI defines for an empty path. s must already
// carry its capabilities: the default profile allows some syscalls only
// when the matching capability is in the bounding set.
func seccompProfile(p *runtimeapi.SecurityProfile, legacy, profileRoot string, privileged bool, s *specs.Spec) (*specs.LinuxSeccomp, error) {
	if privileged {
		return nil, nil
	}
	var localhost string
	if p != nil {
		switch p.GetProfileType() {
		case runtimeapi.SecurityProfile_RuntimeDefault:
			return defaultSeccomp(s)
		case runtimeapi.SecurityProfile_Unconfined:
			return nil, nil
		case runtimeapi.SecurityProfile_Localhost:
			localhost = p.GetLocalhostRef()
		default:
			return nil, fmt.Errorf("%w: seccomp profile type %d", ErrInvalid, p.GetProfileType())
		}
	} else {
		switch {
		case legacy == "" || legacy == "unconfined":
			return nil, nil
		case legacy == "runtime/default" || legacy == "docker/default":
			return defaultSeccomp(s)
		case strings.HasPrefix(legacy, "localhost/"):
			localhost = strings.TrimPrefix(legacy, "localhost/")
		default:
			return nil, fmt.Errorf("%w: seccomp profile %q", ErrInvalid, legacy)
		}
	}
	if localhost == "" {
		return nil, fmt.Errorf("%w: seccomp Localhost profile without a path", ErrInvalid)
	}
	if !filepath.IsAbs(localhost) {
		if profileRoot == "" {
			return nil, fmt.Errorf("%w: relative seccomp profile %q and no profile root", ErrInvalid, localhost)
		}
		localhost = filepath.Join(profileRoot, localhost)
	}
	body, err := os.ReadFile(localhost)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	// The docker profile format (archMap, includes/excludes) is a superset
	// of the OCI one, so one loader takes both.
	prof, err := seccomp.LoadProfile(string(body), s)
	if err != nil {
		return nil, fmt.Errorf("%w: seccomp profile %s: %v", ErrInvalid, localhost, err)
	}
	return prof, nil
}

func defaultSeccomp(s *specs.Spec) (*specs.LinuxSeccomp, error) {
	prof, err := seccomp.GetDefaultProfile(s)
	if err != nil {
		return nil, fmt.Errorf("default seccomp profile: %w", err)
	}
	return prof, nil
}
