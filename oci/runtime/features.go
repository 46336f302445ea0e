package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go/features"
	"golang.org/x/sys/unix"
)

// Features are what a handler's runc, on this node's kernel, can do of
// what kubelet asks about (CRI RuntimeHandlerFeatures). Each is true only
// when both runc and the kernel have it; Missing says why one is not.
type Features struct {
	// RecursiveReadOnlyMounts: runc knows the "rro" mount option (runc
	// 1.1) and the kernel has mount_setattr(2) (5.12), which runc uses to
	// make a bind mount read-only with every mount beneath it.
	RecursiveReadOnlyMounts bool `json:"recursive_read_only_mounts"`
	// IDMappedMounts: runc makes id-mapped mounts (runc 1.2,
	// linux.mountExtensions.idmap in `runc features`) and the kernel
	// id-maps tmpfs and overlay (6.3). This is what user-namespaced pods
	// (hostUsers: false) need of the runtime; whether crivet builds such
	// pods is a separate question the caller adds.
	IDMappedMounts bool `json:"idmapped_mounts"`
	// Missing lists, per feature that is off, the reason.
	Missing []string `json:"missing,omitempty"`
}

// Kernel is what feature detection needs to know of the running kernel.
type Kernel struct {
	Release string // uname -r
	// MountSetattr: the kernel has mount_setattr(2) (Linux 5.12).
	MountSetattr bool
}

// CurrentKernel describes the running kernel.
func CurrentKernel() Kernel {
	var k Kernel
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		k.Release = unix.ByteSliceToString(u.Release[:])
	}
	// A bad descriptor is refused (EBADF) by a kernel that has the call,
	// and ENOSYS by one that does not; nothing is changed either way.
	err := unix.MountSetattr(-1, "", unix.AT_EMPTY_PATH, &unix.MountAttr{})
	k.MountSetattr = !errors.Is(err, unix.ENOSYS)
	return k
}

// atLeast reports whether release (uname -r, "6.1.0-18-amd64") is
// major.minor or later; an unreadable release is not.
func (k Kernel) atLeast(major, minor int) bool {
	parts := strings.SplitN(k.Release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	maj, err1 := strconv.Atoi(parts[0])
	mnr, err2 := strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	return maj > major || maj == major && mnr >= minor
}

// featureTimeout bounds detection (both runc runs); a runc that hangs
// must not hold the daemon's start-up forever. It is generous because a
// runc killed by it reports no features at all: under software
// emulation on a loaded machine (the cgroup-v2 test guest) 10 s was seen
// to cut off `runc features` on a runc that works.
const featureTimeout = 60 * time.Second

// DetectFeatures runs `runc --version` and `runc features` for the runc
// binary bin and combines the answer with the kernel's. A runc without
// the features command (before 1.1) has no feature, and says so in
// Missing; only a runc that does not run at all is an error.
func DetectFeatures(ctx context.Context, bin string, k Kernel) (version string, f Features, err error) {
	ctx, cancel := context.WithTimeout(ctx, featureTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "", f, fmt.Errorf("%s --version: %w", bin, runErr(err))
	}
	version = runcVersion(out)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "features")
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			f.Missing = append(f.Missing, fmt.Sprintf("%s features: no answer within %s; features are detected again at SIGHUP", bin, featureTimeout))
			return version, f, nil
		}
		f.Missing = append(f.Missing, fmt.Sprintf("%s features: %v: %s (runc before 1.1 has no features command)", bin, err, strings.TrimSpace(stderr.String())))
		return version, f, nil
	}
	var rf features.Features
	if err := json.Unmarshal(out, &rf); err != nil {
		return version, f, fmt.Errorf("%s features: %w", bin, err)
	}
	return version, combine(&rf, k), nil
}

func runErr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}

// runcVersion takes "1.5.3" from runc's "runc version 1.5.3\ncommit: ...".
func runcVersion(out []byte) string {
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(first), "runc version"))
}

// combine decides each feature from runc's answer and the kernel.
func combine(rf *features.Features, k Kernel) Features {
	var f Features
	switch {
	case !slices.Contains(rf.MountOptions, "rro"):
		f.Missing = append(f.Missing, "recursive_read_only_mounts: runc does not list the rro mount option")
	case !k.MountSetattr:
		f.Missing = append(f.Missing, "recursive_read_only_mounts: the kernel has no mount_setattr (Linux 5.12)")
	default:
		f.RecursiveReadOnlyMounts = true
	}
	idmap := rf.Linux != nil && rf.Linux.MountExtensions != nil && rf.Linux.MountExtensions.IDMap != nil &&
		rf.Linux.MountExtensions.IDMap.Enabled != nil && *rf.Linux.MountExtensions.IDMap.Enabled
	switch {
	case !idmap:
		f.Missing = append(f.Missing, "idmapped_mounts: runc does not make id-mapped mounts (runc 1.2)")
	case !k.atLeast(6, 3):
		f.Missing = append(f.Missing, fmt.Sprintf("idmapped_mounts: kernel %s cannot id-map tmpfs and overlay (Linux 6.3)", k.Release))
	default:
		f.IDMappedMounts = true
	}
	return f
}
