// Package spec builds OCI runtime specs (runtime-spec v1.3.0, run by runc)
// for CRI containers and for the infra process of pods that share a PID
// namespace.
//
// The mapping follows containerd's CRI plugin where Kubernetes leaves a
// choice to the runtime (default capabilities, default mounts, how
// privileged works) so that pods behave the same on crivet as on containerd.
// Where containerd's behaviour would make runc fail on a host like ours
// (root without CAP_SYS_RESOURCE, cgroup v1 without hugetlb) the spec is
// adapted to what the host allows; see Host.
//
// Package spec has side effects on the host only where CRI requires them:
// a missing hostPath of a CRI mount is created as a directory (as docker and
// containerd do). It reads the image's /etc/passwd and /etc/group through
// the container's rootfs without following symlinks out of it, stats device
// nodes, reads a Localhost seccomp profile and /proc/self/mountinfo.
package spec
