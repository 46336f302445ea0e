package nri

import (
	"fmt"
	"path/filepath"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// specEdit is the small set of OCI spec edits that NRI's adjustment code
// (github.com/containerd/nri/pkg/runtime-tools/generate) is written
// against, done directly on crivet's *specs.Spec: crivet builds its spec
// itself and has no use for the rest of runtime-tools' generator.
type specEdit struct{ sp *specs.Spec }

func (e specEdit) Spec() *specs.Spec { return e.sp }

func (e specEdit) process() *specs.Process {
	if e.sp.Process == nil {
		e.sp.Process = &specs.Process{}
	}
	return e.sp.Process
}

func (e specEdit) linux() *specs.Linux {
	if e.sp.Linux == nil {
		e.sp.Linux = &specs.Linux{}
	}
	return e.sp.Linux
}

func (e specEdit) resources() *specs.LinuxResources {
	l := e.linux()
	if l.Resources == nil {
		l.Resources = &specs.LinuxResources{}
	}
	return l.Resources
}

func (e specEdit) cpu() *specs.LinuxCPU {
	r := e.resources()
	if r.CPU == nil {
		r.CPU = &specs.LinuxCPU{}
	}
	return r.CPU
}

func (e specEdit) memory() *specs.LinuxMemory {
	r := e.resources()
	if r.Memory == nil {
		r.Memory = &specs.LinuxMemory{}
	}
	return r.Memory
}

func (e specEdit) hooks() *specs.Hooks {
	if e.sp.Hooks == nil {
		e.sp.Hooks = &specs.Hooks{}
	}
	return e.sp.Hooks
}

func (e specEdit) AddAnnotation(key, value string) {
	if e.sp.Annotations == nil {
		e.sp.Annotations = map[string]string{}
	}
	e.sp.Annotations[key] = value
}

func (e specEdit) RemoveAnnotation(key string) { delete(e.sp.Annotations, key) }

// AddDevice adds a device node, replacing one at the same path.
func (e specEdit) AddDevice(d specs.LinuxDevice) {
	l := e.linux()
	for i := range l.Devices {
		if l.Devices[i].Path == d.Path {
			l.Devices[i] = d
			return
		}
	}
	l.Devices = append(l.Devices, d)
}

func (e specEdit) RemoveDevice(path string) {
	if e.sp.Linux == nil {
		return
	}
	e.sp.Linux.Devices = slices.DeleteFunc(e.sp.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == path })
}

func (e specEdit) AddLinuxResourcesDevice(allow bool, devType string, major, minor *int64, access string) {
	r := e.resources()
	r.Devices = append(r.Devices, specs.LinuxDeviceCgroup{Allow: allow, Type: devType, Major: major, Minor: minor, Access: access})
}

func (e specEdit) AddOrReplaceLinuxNamespace(ns, path string) error {
	l := e.linux()
	t := specs.LinuxNamespaceType(ns)
	for i := range l.Namespaces {
		if l.Namespaces[i].Type == t {
			l.Namespaces[i].Path = path
			return nil
		}
	}
	l.Namespaces = append(l.Namespaces, specs.LinuxNamespace{Type: t, Path: path})
	return nil
}

func (e specEdit) RemoveLinuxNamespace(ns string) error {
	if e.sp.Linux == nil {
		return nil
	}
	t := specs.LinuxNamespaceType(ns)
	e.sp.Linux.Namespaces = slices.DeleteFunc(e.sp.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t })
	return nil
}

func (e specEdit) AddPreStartHook(h specs.Hook) {
	//nolint:staticcheck // prestart is deprecated but still what NRI adds
	e.hooks().Prestart = append(e.hooks().Prestart, h)
}
func (e specEdit) AddPostStartHook(h specs.Hook) {
	e.hooks().Poststart = append(e.hooks().Poststart, h)
}
func (e specEdit) AddPostStopHook(h specs.Hook) { e.hooks().Poststop = append(e.hooks().Poststop, h) }

func (e specEdit) AddProcessEnv(name, value string) {
	p := e.process()
	kv := name + "=" + value
	for i, v := range p.Env {
		if len(v) > len(name) && v[:len(name)+1] == name+"=" {
			p.Env[i] = kv
			return
		}
	}
	p.Env = append(p.Env, kv)
}

func (e specEdit) ClearProcessEnv() { e.process().Env = nil }

func (e specEdit) SetProcessArgs(args []string) { e.process().Args = slices.Clone(args) }

func (e specEdit) SetProcessOOMScoreAdj(adj int) { e.process().OOMScoreAdj = &adj }

func (e specEdit) AddLinuxResourcesHugepageLimit(pageSize string, limit uint64) {
	r := e.resources()
	for i := range r.HugepageLimits {
		if r.HugepageLimits[i].Pagesize == pageSize {
			r.HugepageLimits[i].Limit = limit
			return
		}
	}
	r.HugepageLimits = append(r.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: pageSize, Limit: limit})
}

func (e specEdit) AddLinuxResourcesUnified(key, val string) {
	r := e.resources()
	if r.Unified == nil {
		r.Unified = map[string]string{}
	}
	r.Unified[key] = val
}

func (e specEdit) AddLinuxSysctl(key, value string) {
	l := e.linux()
	if l.Sysctl == nil {
		l.Sysctl = map[string]string{}
	}
	l.Sysctl[key] = value
}

func (e specEdit) RemoveLinuxSysctl(key string) {
	if e.sp.Linux != nil {
		delete(e.sp.Linux.Sysctl, key)
	}
}

// AddMount adds a mount; AdjustMounts removes one at the same destination
// first.
func (e specEdit) AddMount(m specs.Mount) { e.sp.Mounts = append(e.sp.Mounts, m) }

func (e specEdit) ClearMounts() { e.sp.Mounts = nil }

func (e specEdit) Mounts() []specs.Mount { return slices.Clone(e.sp.Mounts) }

func (e specEdit) RemoveMount(dest string) {
	dest = filepath.Clean(dest)
	e.sp.Mounts = slices.DeleteFunc(e.sp.Mounts, func(m specs.Mount) bool { return filepath.Clean(m.Destination) == dest })
}

func (e specEdit) SetLinuxCgroupsPath(path string) { e.linux().CgroupsPath = path }

func (e specEdit) SetLinuxResourcesCPUCpus(cpus string)        { e.cpu().Cpus = cpus }
func (e specEdit) SetLinuxResourcesCPUMems(mems string)        { e.cpu().Mems = mems }
func (e specEdit) SetLinuxResourcesCPUPeriod(period uint64)    { e.cpu().Period = &period }
func (e specEdit) SetLinuxResourcesCPUQuota(quota int64)       { e.cpu().Quota = &quota }
func (e specEdit) SetLinuxResourcesCPUShares(shares uint64)    { e.cpu().Shares = &shares }
func (e specEdit) SetLinuxResourcesCPURealtimePeriod(p uint64) { e.cpu().RealtimePeriod = &p }
func (e specEdit) SetLinuxResourcesCPURealtimeRuntime(t int64) { e.cpu().RealtimeRuntime = &t }
func (e specEdit) SetLinuxResourcesMemoryLimit(limit int64)    { e.memory().Limit = &limit }
func (e specEdit) SetLinuxResourcesMemorySwap(swap int64)      { e.memory().Swap = &swap }

func (e specEdit) SetLinuxRootPropagation(rp string) error {
	switch rp {
	case "", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable":
	default:
		return fmt.Errorf("rootfs propagation %q is not valid", rp)
	}
	e.linux().RootfsPropagation = rp
	return nil
}
