package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	runc "github.com/containerd/go-runc"
	"github.com/crivet/crivet/oci/cgroup"
	"github.com/crivet/crivet/oci/monitor"
)

// DefaultHandler names the handler that Config.Runc and Config.Root
// describe: the one a pod without a RuntimeClass runs on (kubelet then
// sends the handler "", which means this one).
const DefaultHandler = "runc"

// Handler is one named runc configuration, a Kubernetes RuntimeClass
// handler: RunPodSandbox's runtime_handler picks it, and every container
// of that pod is run by its runc on its root.
type Handler struct {
	Name string
	// Runc is the runc binary, looked up on PATH when not absolute.
	Runc string
	// Root is runc's --root. Each handler has its own, so two runc
	// versions never read each other's state.
	Root string
}

// HandlerInfo is what the runtime knows of a configured handler: where
// its runc and its state are, the version and what it can do, detected
// once when the Runtime was made.
type HandlerInfo struct {
	Name     string   `json:"name"`
	Runc     string   `json:"runc"`
	Root     string   `json:"root"`
	Version  string   `json:"version"`
	Features Features `json:"features"`
}

// handler is a HandlerInfo with its runc client.
type handler struct {
	HandlerInfo
	runc *runc.Runc
}

func (r *Runtime) newHandler(h Handler) (*handler, error) {
	if h.Runc == "" {
		h.Runc = "runc"
	}
	bin, err := exec.LookPath(h.Runc)
	if err != nil {
		return nil, fmt.Errorf("runtime handler %q: runc: %w", h.Name, err)
	}
	// Monitors run runc long after this process's PATH stopped mattering.
	if bin, err = filepath.Abs(bin); err != nil {
		return nil, err
	}
	if h.Root == "" {
		return nil, fmt.Errorf("runtime handler %q: no runc root: %w", h.Name, ErrInvalidArgument)
	}
	root, err := filepath.Abs(h.Root)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("runtime handler %q: %w", h.Name, err)
	}
	return &handler{
		HandlerInfo: HandlerInfo{Name: h.Name, Runc: bin, Root: root},
		runc:        r.runcClient(bin, root),
	}, nil
}

func (r *Runtime) runcClient(bin, root string) *runc.Runc {
	return &runc.Runc{
		Command: bin,
		Root:    root,
		// JSON so runcErr can pull runc's message out of its stderr.
		LogFormat:     runc.JSON,
		SystemdCgroup: r.cfg.CgroupDriver == cgroup.Systemd,
	}
}

// Handlers lists the configured handlers, the default first, then by name.
func (r *Runtime) Handlers() []HandlerInfo {
	r.featMu.RLock()
	defer r.featMu.RUnlock()
	out := make([]HandlerInfo, 0, len(r.handlers))
	for _, h := range r.handlers {
		out = append(out, h.HandlerInfo)
	}
	return out
}

// Handler returns the configured handler name refers to ("" is the
// default), or an error naming those that exist.
func (r *Runtime) Handler(name string) (HandlerInfo, error) {
	h, err := r.handler(name)
	if err != nil {
		return HandlerInfo{}, err
	}
	r.featMu.RLock()
	defer r.featMu.RUnlock()
	return h.HandlerInfo, nil
}

func (r *Runtime) handler(name string) (*handler, error) {
	if name == "" {
		return r.handlers[0], nil
	}
	for _, h := range r.handlers {
		if h.Name == name {
			return h, nil
		}
	}
	names := make([]string, len(r.handlers))
	for i, h := range r.handlers {
		names[i] = fmt.Sprintf("%q", h.Name)
	}
	return nil, fmt.Errorf("unknown runtime handler %q (configured: %s): %w", name, strings.Join(names, ", "), ErrInvalidArgument)
}

// handlerOf returns the handler whose runc holds container id. The runtime
// answers this from its own state, not from any record: the container's
// monitor configuration names the runc root it was created on, and
// without one (a crash between the two) the handler whose root has the
// container. That way a container is always run by the runc that created
// it, also one recovery finds with no record at all. A container known
// to no handler gets the default, whose runc then says it does not exist.
func (r *Runtime) handlerOf(id string) *handler {
	if h, ok := r.byID.Load(id); ok {
		return h.(*handler)
	}
	h := r.findHandler(id)
	if h == nil {
		return r.handlers[0]
	}
	r.byID.Store(id, h)
	return h
}

func (r *Runtime) findHandler(id string) *handler {
	if !validID.MatchString(id) {
		return nil
	}
	if c, err := monitor.ReadConfig(filepath.Join(r.cfg.StateDir, id)); err == nil && c.RuncRoot != "" {
		for _, h := range r.handlers {
			if h.Root == c.RuncRoot {
				return h
			}
		}
		// Created by a handler no longer configured: its own runc, on
		// its own root, still stops and removes it.
		if c.Runc != "" {
			return &handler{HandlerInfo: HandlerInfo{Runc: c.Runc, Root: c.RuncRoot}, runc: r.runcClient(c.Runc, c.RuncRoot)}
		}
	}
	for _, h := range r.handlers {
		if _, err := os.Lstat(filepath.Join(h.Root, id)); err == nil {
			return h
		}
	}
	return nil
}

// checkHandlers refuses a configuration where two handlers share a name
// or a runc root.
func checkHandlers(hs []*handler) error {
	for i, h := range hs {
		for _, o := range hs[:i] {
			switch {
			case h.Name == o.Name:
				return fmt.Errorf("runtime handler %q configured twice: %w", h.Name, ErrInvalidArgument)
			case h.Root == o.Root:
				return fmt.Errorf("runtime handlers %q and %q share the runc root %s: %w", o.Name, h.Name, h.Root, ErrInvalidArgument)
			}
		}
	}
	if slices.ContainsFunc(hs, func(h *handler) bool { return h.Name == "" }) {
		return errors.New("runtime handler with an empty name: \"\" always means the default handler")
	}
	return nil
}
