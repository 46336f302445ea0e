// nriplugin is the NRI plugin crivet's end-to-end tests run, built with
// NRI's own plugin stub. It records every event it is sent, one JSON line
// each, and acts by mode:
//
//	adjust   at CreateContainer: env NRI_TEST=adjusted, a read-only bind
//	         mount of -mount-src at /nri, the device node /dev/nri-null
//	         (char 1:3), a 64 MiB memory limit, 512 CPU shares, an
//	         annotation and an rlimit; at UpdateContainer: 96 MiB.
//	hostile  at CreateContainer of a container named attack-<how>, tries
//	         to take the image's place: rootfs (a mount at /), mountns (joins
//	         the host's mount namespace), decision (rewrites crivet's own
//	         annotation), cdi (a device the node has no CDI spec for); any
//	         other container is left alone.
//	hang     never answers CreateContainer.
//	crash    exits (status 3) in the middle of CreateContainer.
//
// Run by crivet from its plugin directory, the mode is the plugin's base
// name (NN-adjust) and the flags come from its configuration file (one
// flag a line); run by hand, from the command line.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

type plugin struct {
	mode, mountSrc string
	mu             sync.Mutex
	events         *os.File
}

// event is one line of the events file.
type event struct {
	Event, Pod, PodName, Namespace, Container, Name, Image string
	Time                                                   time.Time
}

func (p *plugin) record(ev string, pod *api.PodSandbox, c *api.Container) {
	e := event{Event: ev, Pod: pod.GetId(), PodName: pod.GetName(), Namespace: pod.GetNamespace(), Time: time.Now()}
	if c != nil {
		e.Container, e.Name, e.Image = c.GetId(), c.GetName(), c.GetImage().GetName()
	}
	if p.events == nil {
		return
	}
	b, _ := json.Marshal(e)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events.Write(append(b, '\n'))
}

func (p *plugin) Configure(_ context.Context, config, runtime, version string) (api.EventMask, error) {
	// Flags from the configuration file crivet hands a plugin it started.
	var args []string
	sc := bufio.NewScanner(strings.NewReader(config))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			args = append(args, l)
		}
	}
	if len(args) > 0 {
		fs := flag.NewFlagSet("config", flag.ContinueOnError)
		events := fs.String("events", "", "")
		fs.StringVar(&p.mountSrc, "mount-src", p.mountSrc, "")
		if err := fs.Parse(args); err != nil {
			return 0, err
		}
		if err := p.open(*events); err != nil {
			return 0, err
		}
	}
	return 0, nil // every event
}

func (p *plugin) open(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	p.events = f
	return err
}

func (p *plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	for _, pod := range pods {
		p.record("SynchronizePod", pod, nil)
	}
	for _, c := range ctrs {
		p.record("SynchronizeContainer", &api.PodSandbox{Id: c.GetPodSandboxId()}, c)
	}
	return nil, nil
}

func (p *plugin) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RunPodSandbox", pod, nil)
	return nil
}

func (p *plugin) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("StopPodSandbox", pod, nil)
	return nil
}

func (p *plugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RemovePodSandbox", pod, nil)
	return nil
}

func (p *plugin) CreateContainer(ctx context.Context, pod *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.record("CreateContainer", pod, c)
	adj := &api.ContainerAdjustment{}
	switch p.mode {
	case "adjust":
		adj.AddEnv("NRI_TEST", "adjusted")
		adj.AddMount(&api.Mount{Destination: "/nri", Source: p.mountSrc, Type: "bind", Options: []string{"rbind", "ro"}})
		adj.AddDevice(&api.LinuxDevice{Path: "/dev/nri-null", Type: "c", Major: 1, Minor: 3, FileMode: api.FileMode(0o666)})
		adj.SetLinuxMemoryLimit(64 << 20)
		adj.SetLinuxCPUShares(512)
		adj.AddAnnotation("example.com/nri-test", "adjusted")
		adj.AddRlimit("RLIMIT_NOFILE", 4242, 4242)
	case "hostile":
		switch c.GetName() {
		case "attack-rootfs":
			adj.AddMount(&api.Mount{Destination: "/", Source: p.mountSrc, Type: "bind", Options: []string{"rbind", "rw"}})
		case "attack-mountns":
			adj.AddOrReplaceNamespace(&api.LinuxNamespace{Type: "mount", Path: "/proc/1/ns/mnt"})
		case "attack-decision":
			adj.AddAnnotation("io.crivet.image.verified", "true")
		case "attack-cdi":
			adj.AddCDIDevice(&api.CDIDevice{Name: "vendor.com/device=unverified"})
		}
	case "hang":
		<-ctx.Done()
		select {} // and never answer
	case "crash":
		os.Exit(3)
	}
	return adj, nil, nil
}

func (p *plugin) PostCreateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	p.record("PostCreateContainer", pod, c)
	return nil
}

func (p *plugin) StartContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	p.record("StartContainer", pod, c)
	return nil
}

func (p *plugin) PostStartContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	p.record("PostStartContainer", pod, c)
	return nil
}

func (p *plugin) UpdateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container, _ *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	p.record("UpdateContainer", pod, c)
	if p.mode != "adjust" {
		return nil, nil
	}
	u := &api.ContainerUpdate{}
	u.SetContainerId(c.GetId())
	u.SetLinuxMemoryLimit(96 << 20)
	return []*api.ContainerUpdate{u}, nil
}

func (p *plugin) PostUpdateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	p.record("PostUpdateContainer", pod, c)
	return nil
}

func (p *plugin) StopContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.record("StopContainer", pod, c)
	return nil, nil
}

func (p *plugin) RemoveContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	p.record("RemoveContainer", pod, c)
	return nil
}

func main() {
	p := &plugin{}
	name := flag.String("name", "", "plugin name (run by hand)")
	idx := flag.String("idx", "50", "plugin index")
	socket := flag.String("socket", "", "NRI socket (run by hand)")
	events := flag.String("events", "", "file the events are appended to")
	flag.StringVar(&p.mode, "mode", "", "adjust, hostile, hang or crash")
	flag.StringVar(&p.mountSrc, "mount-src", "", "host directory the adjust and hostile modes mount")
	flag.Parse()
	var opts []stub.Option
	if *socket != "" {
		opts = append(opts, stub.WithSocketPath(*socket), stub.WithPluginName(*name), stub.WithPluginIdx(*idx))
		if p.mode == "" {
			p.mode = *name
		}
	} else if p.mode == "" {
		// Started by the runtime: "NN-mode".
		base := os.Getenv("NRI_PLUGIN_NAME")
		p.mode = base
	}
	if err := p.open(*events); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s, err := stub.New(p, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := s.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
