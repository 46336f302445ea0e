package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Kinds of namespace a pod can pin.
const (
	NetNS = "net"
	IPCNS = "ipc"
	UTSNS = "uts"
)

var cloneFlag = map[string]int{NetNS: unix.CLONE_NEWNET, IPCNS: unix.CLONE_NEWIPC, UTSNS: unix.CLONE_NEWUTS}

// pinNamespaces creates new namespaces of the given kinds and keeps them
// alive with bind mounts at dir/<kind>, so a pod needs no infra process to
// own its network, IPC and UTS namespaces. hostname is set in a new UTS
// namespace. It returns the pin paths by kind.
//
// The namespaces are created by a dedicated OS thread (namespaces belong to
// threads); the thread is never returned to the Go scheduler, so its
// altered namespaces cannot leak into other goroutines: Go terminates a
// thread whose goroutine exits while still locked.
func pinNamespaces(dir string, kinds []string, hostname string) (map[string]string, error) {
	if len(kinds) == 0 {
		return map[string]string{}, nil
	}
	flags := 0
	for _, k := range kinds {
		f, ok := cloneFlag[k]
		if !ok {
			return nil, fmt.Errorf("pin namespace: unknown kind %q", k)
		}
		flags |= f
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	type result struct {
		paths map[string]string
		err   error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: see above.
		paths, err := func() (map[string]string, error) {
			if err := unix.Unshare(flags); err != nil {
				return nil, fmt.Errorf("unshare: %w", err)
			}
			if flags&unix.CLONE_NEWNET != 0 {
				// Bringing lo up here saves running the CNI loopback plugin
				// (a process per pod) for what one ioctl does.
				if err := loopbackUp(); err != nil {
					return nil, fmt.Errorf("pod loopback: %w", err)
				}
			}
			if flags&unix.CLONE_NEWUTS != 0 && hostname != "" {
				if err := unix.Sethostname([]byte(hostname)); err != nil {
					return nil, fmt.Errorf("sethostname %q: %w", hostname, err)
				}
			}
			tid := unix.Gettid()
			paths := map[string]string{}
			for _, k := range kinds {
				target := filepath.Join(dir, k)
				if err := pin(k, fmt.Sprintf("/proc/%d/task/%d/ns/%s", os.Getpid(), tid, k), target); err != nil {
					return paths, err
				}
				paths[k] = target
			}
			return paths, nil
		}()
		ch <- result{paths, err}
	}()
	r := <-ch
	if r.err != nil {
		for _, p := range r.paths {
			_ = unpin(p)
		}
		return nil, r.err
	}
	return r.paths, nil
}

// pin keeps the namespace of kind at src (a /proc/.../ns/<kind> file)
// alive with a bind mount on target, a file it creates; on a failed mount
// it removes that file again.
func pin(kind, src, target string) error {
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o400)
	if err != nil {
		return fmt.Errorf("pin %s namespace: %w", kind, err)
	}
	f.Close()
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(target)
		return fmt.Errorf("pin %s namespace: bind %s: %w", kind, src, err)
	}
	return nil
}

// unpin releases a pinned namespace; a missing pin is not an error, so a
// half-done removal can simply be repeated.
func unpin(path string) error {
	if path == "" {
		return nil
	}
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unpin %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unpin %s: %w", path, err)
	}
	return nil
}

// unpinAll releases every pin in dir and dir itself; a missing dir is fine.
func unpinAll(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unpin %s: %w", dir, err)
	}
	var errs []error
	for _, e := range ents {
		if err := unpin(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unpin %s: %w", dir, err)
	}
	return nil
}

// isNamespace reports whether path is a live namespace pin (an nsfs bind
// mount), not a file left by a pin a crash cut short or one unmounted.
func isNamespace(path string) bool {
	var st unix.Statfs_t
	return path != "" && unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// loopbackUp sets lo up in the calling thread's network namespace; the
// kernel then gives it 127.0.0.1 and ::1.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
