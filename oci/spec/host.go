package spec

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/sys/capability"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Host is what the spec depends on about this machine and about the crivet
// process itself. runc runs as a child of crivet and can grant a container
// no more than crivet holds, so requests beyond that are clamped or refused
// here instead of failing inside runc with an opaque message.
type Host struct {
	// Caps: the capabilities crivet holds (effective and in its bounding
	// set), as "CAP_..." names. A privileged container gets exactly these.
	Caps []string
	// OOMScoreAdj: crivet's own /proc/self/oom_score_adj.
	OOMScoreAdj int
	// SysResource: crivet holds CAP_SYS_RESOURCE. Without it the kernel
	// refuses to lower oom_score_adj below the inherited floor and to raise
	// hard rlimits.
	SysResource bool
	// HardRlimits: crivet's own hard limits by OCI name ("RLIMIT_NOFILE").
	HardRlimits map[string]uint64
	// CgroupV2: /sys/fs/cgroup is the unified hierarchy.
	CgroupV2 bool
	// Hugetlb: runc can set hugetlb limits (a v1 hugetlb hierarchy that
	// crivet is in, or hugetlb in the v2 root's controllers).
	Hugetlb bool
	// Swap: swap can be limited (v1 memory.memsw.*, v2 memory.swap.max).
	Swap bool
	// AppArmor: the kernel has AppArmor enabled.
	AppArmor bool
	// AppArmorState: what RuntimeDefault applies here.
	AppArmorState AppArmorState
	// Hostname: the node's hostname, for HOSTNAME in host-UTS containers.
	Hostname string
}

var detected = sync.OnceValues(DetectHost)

// CurrentHost returns DetectHost's answer, probed once per process.
func CurrentHost() (*Host, error) { return detected() }

// DetectHost probes this process and machine.
func DetectHost() (*Host, error) {
	h := &Host{HardRlimits: map[string]uint64{}}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, fmt.Errorf("host capabilities: %w", err)
	}
	eff, err := capField(status, "CapEff")
	if err != nil {
		return nil, err
	}
	bnd, err := capField(status, "CapBnd")
	if err != nil {
		return nil, err
	}
	h.Caps = capNames(eff & bnd)
	h.SysResource = slices.Contains(h.Caps, "CAP_SYS_RESOURCE")

	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return nil, fmt.Errorf("host oom_score_adj: %w", err)
	}
	if h.OOMScoreAdj, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
		return nil, fmt.Errorf("host oom_score_adj: %w", err)
	}

	for name, res := range rlimitTypes {
		var rl unix.Rlimit
		if err := unix.Getrlimit(res, &rl); err == nil {
			h.HardRlimits[name] = rl.Max
		}
	}

	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return nil, fmt.Errorf("statfs /sys/fs/cgroup: %w", err)
	}
	h.CgroupV2 = st.Type == unix.CGROUP2_SUPER_MAGIC
	own, err := ownCgroups()
	if err != nil {
		return nil, err
	}
	if h.CgroupV2 {
		ctrl, _ := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		h.Hugetlb = slices.Contains(strings.Fields(string(ctrl)), "hugetlb")
		_, err := os.Stat(filepath.Join("/sys/fs/cgroup", own[""], "memory.swap.max"))
		h.Swap = err == nil
	} else {
		// runc 1.1 drives every v1 controller through its v1 hierarchy even
		// on a hybrid host; hugetlb bound to the v2 tree does not count.
		v1, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
		if err != nil {
			return nil, fmt.Errorf("cgroup mounts: %w", err)
		}
		_, inHugetlb := own["hugetlb"]
		for _, m := range v1 {
			opts := strings.Split(m.VFSOptions, ",")
			if slices.Contains(opts, "hugetlb") && inHugetlb {
				h.Hugetlb = true
			}
			if slices.Contains(opts, "memory") {
				if _, err := os.Stat(filepath.Join(m.Mountpoint, "memory.memsw.limit_in_bytes")); err == nil {
					h.Swap = true
				}
			}
		}
	}

	b, _ = os.ReadFile("/sys/module/apparmor/parameters/enabled")
	detectAppArmor(h, strings.TrimSpace(string(b)) == "Y")
	if h.Hostname, err = os.Hostname(); err != nil {
		return nil, fmt.Errorf("hostname: %w", err)
	}
	return h, nil
}

// ownCgroups maps each controller of /proc/self/cgroup to crivet's path in
// it; "" is the v2 (unified) entry.
func ownCgroups() (map[string]string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		parts := strings.SplitN(s.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out, s.Err()
}

func capField(status []byte, field string) (uint64, error) {
	for line := range bytes.Lines(status) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && string(k) == field {
			return strconv.ParseUint(strings.TrimSpace(string(v)), 16, 64)
		}
	}
	return 0, fmt.Errorf("/proc/self/status: no %s", field)
}

// capNumbers maps "CAP_..." names to capability numbers, for every
// capability the capability library knows (the kernel's names; runc 1.1.5
// knows the same 41 up to CAP_CHECKPOINT_RESTORE).
var capNumbers = func() map[string]int {
	m := map[string]int{}
	for _, c := range capability.ListKnown() {
		m["CAP_"+strings.ToUpper(c.String())] = int(c)
	}
	return m
}()

// capNames names the set bits of mask. Bits without a known name are left
// out: runc could not name them either.
func capNames(mask uint64) []string {
	var out []string
	for name, n := range capNumbers {
		if mask&(1<<n) != 0 {
			out = append(out, name)
		}
	}
	sortCaps(out)
	return out
}

// knownCap reports whether name ("CAP_...") is a capability at all, held
// or not.
func knownCap(name string) bool {
	_, ok := capNumbers[name]
	return ok
}

// sortCaps orders names by capability number, for stable specs.
func sortCaps(names []string) {
	slices.SortFunc(names, func(a, b string) int { return capNumbers[a] - capNumbers[b] })
}

var rlimitTypes = map[string]int{
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
}
