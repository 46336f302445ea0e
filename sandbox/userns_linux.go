package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/crivet/crivet/oci/spec"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"
)

// UserNS is the kind of a pinned user namespace.
const UserNS = "user"

// usernsHolder is the name under which crivet re-executes itself to make
// a pod's user namespace (go.podman.io/storage/pkg/reexec; crivet's main
// and the sandbox tests call reexec.Init).
const usernsHolder = "crivet-pod-userns"

func init() {
	reexec.Register(usernsHolder, holdUserns)
}

// pinUserns creates a user namespace with the pod's mappings together
// with new namespaces of the given kinds, which therefore belong to it,
// and pins them all with bind mounts at dir/<kind> (dir/user for the user
// namespace). It returns the pin paths by kind.
//
// A Go process cannot enter a new user namespace itself (unshare and
// setns of CLONE_NEWUSER need a single-threaded caller), so a child does:
// crivet re-executed, cloned into the new namespaces with the mappings
// written by the parent before it runs. As the namespaces' root it brings
// lo up and sets the hostname, says so, and waits until the parent has
// pinned its namespaces and closes its stdin.
func pinUserns(dir string, kinds []string, hostname string, m *spec.IDMappings) (_ map[string]string, err error) {
	flags := uintptr(unix.CLONE_NEWUSER)
	for _, k := range kinds {
		f, ok := cloneFlag[k]
		if !ok {
			return nil, fmt.Errorf("pin namespace: unknown kind %q", k)
		}
		flags |= uintptr(f)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// Pdeathsig follows the thread that started the child, not the
	// process: keep this goroutine on that thread until the child is done.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := reexec.Command(usernsHolder, strings.Join(kinds, ","), hostname)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  flags,
		UidMappings: sysMappings(m.UIDs),
		GidMappings: sysMappings(m.GIDs),
		// Without it Go writes "deny" to /proc/PID/setgroups, which holds
		// for the namespace's life: runc could not set a container's
		// supplementary groups.
		GidMappingsEnableSetgroups: true,
		// Root of the new namespace (host ID m.RootUID()), so that it
		// keeps its capabilities there across execve.
		Credential: &syscall.Credential{Uid: 0, Gid: 0},
		// Should crivet die first, the holder goes too; the pins keep the
		// namespaces.
		Pdeathsig: unix.SIGKILL,
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("pod user namespace: start holder: %w", err)
	}
	defer func() {
		stdin.Close()
		if werr := cmd.Wait(); werr != nil && err == nil {
			err = fmt.Errorf("pod user namespace: holder: %w: %s", werr, strings.TrimSpace(stderr.String()))
		}
	}()
	line, rerr := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		return nil, fmt.Errorf("pod user namespace: holder: %q %v: %s", line, rerr, strings.TrimSpace(stderr.String()))
	}
	paths := map[string]string{}
	defer func() {
		if err != nil {
			for _, p := range paths {
				_ = unpin(p)
			}
		}
	}()
	for _, k := range append([]string{UserNS}, kinds...) {
		target := filepath.Join(dir, k)
		if err := pin(k, fmt.Sprintf("/proc/%d/ns/%s", cmd.Process.Pid, k), target); err != nil {
			return nil, err
		}
		paths[k] = target
	}
	return paths, nil
}

func sysMappings(ms []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, 0, len(ms))
	for _, m := range ms {
		out = append(out, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
	}
	return out
}

// holdUserns is the holder child (see pinUserns): os.Args[1] lists the
// kinds of namespace made with its user namespace, os.Args[2] is the
// hostname ("" for none).
func holdUserns() {
	if err := prepareUserns(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready")
	// Held until the parent closes stdin (or dies: Pdeathsig).
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

func prepareUserns(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: " + usernsHolder + " KINDS HOSTNAME")
	}
	kinds := strings.Split(args[0], ",")
	// Only in namespaces of its own: the node's lo and hostname are not
	// the holder's to change (nor could it, as root of a child namespace).
	if slices.Contains(kinds, NetNS) {
		// Bringing lo up here saves running the CNI loopback plugin.
		if err := loopbackUp(); err != nil {
			return fmt.Errorf("pod loopback: %w", err)
		}
	}
	if slices.Contains(kinds, UTSNS) && args[1] != "" {
		if err := unix.Sethostname([]byte(args[1])); err != nil {
			return fmt.Errorf("sethostname %q: %w", args[1], err)
		}
	}
	return nil
}
