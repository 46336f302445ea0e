// Command cribench times CRI operations directly over gRPC (no crictl
// process start-up in the numbers) for test/bench. Every sample is one JSON
// line on stdout:
//
//	{"runtime":"crivet","op":"RunPodSandbox","value":123.4,"unit":"ms"}
//	{"runtime":"crivet","op":"RunPodSandbox","error":"Unimplemented: ..."}
//
// Endpoints are given as -e LABEL=unix:///path.sock (repeatable). Where
// several are given, samples alternate between them (ABBA order) so that
// machine drift affects them alike. A runtime that fails an operation is
// reported once with the error and left out of the rest of that command.
//
// Subcommands:
//
//	lifecycle  RunPodSandbox + CreateContainer + StartContainer (+ stop/remove)
//	list       ListContainers / ListPodSandbox / ContainerStatus latency with many containers present
//	scale      many pods started and removed with several in flight: wall times,
//	           per-call p50/p99, daemon CPU and peak RSS (scale.go)
//	pods       daemon RSS after N running pods (reads /proc/PID/status)
//	floor      bare `runc create` + `runc start` of an OCI bundle
//	critestjson  turn a `critest -benchmark` output dir into samples
//	report     medians table (markdown) and JSON from the samples
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type sample struct {
	Runtime string  `json:"runtime"`
	Op      string  `json:"op"`
	Value   float64 `json:"value,omitempty"`
	Unit    string  `json:"unit,omitempty"`
	Error   string  `json:"error,omitempty"`
}

var enc = json.NewEncoder(os.Stdout)

func emit(s sample) { _ = enc.Encode(s) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "cribench: "+format+"\n", args...)
}

type endpoints []string

func (e *endpoints) String() string     { return strings.Join(*e, ",") }
func (e *endpoints) Set(v string) error { *e = append(*e, v); return nil }

type client struct {
	label string
	conn  *grpc.ClientConn
	rs    runtimeapi.RuntimeServiceClient
	is    runtimeapi.ImageServiceClient
	dead  bool
}

func dial(spec string) (*client, error) {
	label, ep, ok := strings.Cut(spec, "=")
	if !ok || !strings.HasPrefix(ep, "unix://") {
		return nil, fmt.Errorf("endpoint %q: want LABEL=unix:///path", spec)
	}
	conn, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, err
	}
	return &client{label: label, conn: conn,
		rs: runtimeapi.NewRuntimeServiceClient(conn), is: runtimeapi.NewImageServiceClient(conn)}, nil
}

// fail reports that call failed with err, as an error of each result row
// in rows (of the row named call when rows is empty), and leaves the client
// out of the rest of the command.
func (c *client) fail(call string, err error, rows ...string) {
	msg := err.Error()
	if st, ok := status.FromError(err); ok {
		msg = st.Code().String() + ": " + st.Message()
	}
	logf("%s: %s: %s", c.label, call, msg)
	if len(rows) == 0 {
		emit(sample{Runtime: c.label, Op: call, Error: msg})
	}
	for _, r := range rows {
		m := msg
		if r != call {
			m = call + ": " + msg
		}
		emit(sample{Runtime: c.label, Op: r, Error: m})
	}
	c.dead = true
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// timed runs f and returns its duration.
func timed(f func() error) (time.Duration, error) {
	t0 := time.Now()
	err := f()
	return time.Since(t0), err
}

func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 3*time.Minute)
}

// order returns the clients in ABBA order for round i.
func order(cs []*client, i int) []*client {
	out := append([]*client(nil), cs...)
	if i%2 == 1 {
		for l, r := 0, len(out)-1; l < r; l, r = l+1, r-1 {
			out[l], out[r] = out[r], out[l]
		}
	}
	return out
}

func ensureImage(c *client, img string) error {
	ctx, cancel := callCtx()
	defer cancel()
	st, err := c.is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: img}})
	if err == nil && st.GetImage() != nil {
		return nil
	}
	_, err = c.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: img}})
	return err
}

var uniq = time.Now().UnixNano()

func podConfig(prefix string, i int, logDir string) *runtimeapi.PodSandboxConfig {
	name := fmt.Sprintf("%s-%d-%d", prefix, uniq, i)
	dir := filepath.Join(logDir, name)
	_ = os.MkdirAll(dir, 0o755)
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Uid: name, Namespace: "crivet-bench"},
		Hostname:     name,
		LogDirectory: dir,
		Labels:       map[string]string{"io.crivet.bench": prefix},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
}

func containerConfig(name, img string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: img, UserSpecifiedImage: img},
		Command:  []string{"sleep", "3600"},
		LogPath:  name + ".log",
		Labels:   map[string]string{"io.crivet.bench": "1"},
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
}

func removePod(c *client, id string) {
	ctx, cancel := callCtx()
	defer cancel()
	if _, err := c.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		logf("%s: stop pod %s: %v", c.label, id, err)
	}
	if _, err := c.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		logf("%s: remove pod %s: %v", c.label, id, err)
	}
}

// ---------------------------------------------------------------- lifecycle --

func lifecycle(cs []*client, img, logDir string, n int) {
	for _, c := range cs {
		if err := ensureImage(c, img); err != nil {
			c.fail("PullImage", err, "runp+create+start")
		}
	}
	for i := 0; i <= n; i++ { // sample 0 is a warm-up, not reported
		for _, c := range order(cs, i) {
			if c.dead {
				continue
			}
			lifecycleOnce(c, img, logDir, i, i > 0)
		}
	}
}

// runpKubelet is the RunPodSandbox row of a kubelet-shaped pod.
const runpKubelet = "RunPodSandbox (PID namespace per container, as kubelet sends)"

func lifecycleOnce(c *client, img, logDir string, i int, report bool) {
	ctx, cancel := callCtx()
	defer cancel()
	put := func(op string, d time.Duration) {
		if report {
			emit(sample{Runtime: c.label, Op: op, Value: ms(d), Unit: "ms"})
		}
	}
	pc := podConfig("lifecycle", i, logDir)
	var podID, ctrID string
	dRun, err := timed(func() error {
		r, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
		podID = r.GetPodSandboxId()
		return err
	})
	if err != nil {
		c.fail("RunPodSandbox", err, "RunPodSandbox", "runp+create+start")
		return
	}
	defer func() {
		if podID != "" && c.dead {
			removePod(c, podID)
		}
	}()
	dCreate, err := timed(func() error {
		r, err := c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: podID, Config: containerConfig("bench", img), SandboxConfig: pc})
		ctrID = r.GetContainerId()
		return err
	})
	if err != nil {
		c.fail("CreateContainer", err, "CreateContainer", "runp+create+start")
		return
	}
	dStart, err := timed(func() error {
		_, err := c.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctrID})
		return err
	})
	if err != nil {
		c.fail("StartContainer", err, "StartContainer", "runp+create+start")
		return
	}
	put("RunPodSandbox", dRun)
	put("CreateContainer", dCreate)
	put("StartContainer", dStart)
	put("runp+create+start", dRun+dCreate+dStart)
	// The pod kubelet sends unless shareProcessNamespace is set: a PID
	// namespace per container, so no process has to own a pod one (a
	// runtime may start no infra process for it).
	kpc := podConfig("lifecycle-kubelet", i, logDir)
	kpc.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}}
	var kpod string
	dKRun, err := timed(func() error {
		r, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: kpc})
		kpod = r.GetPodSandboxId()
		return err
	})
	if err != nil {
		c.fail("RunPodSandbox", err, runpKubelet)
	} else {
		put(runpKubelet, dKRun)
		removePod(c, kpod)
	}
	dStopC, err := timed(func() error {
		_, err := c.rs.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctrID, Timeout: 0})
		return err
	})
	if err != nil {
		c.fail("StopContainer", err)
		return
	}
	dStopP, err := timed(func() error {
		_, err := c.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID})
		return err
	})
	if err != nil {
		c.fail("StopPodSandbox", err)
		return
	}
	dRm, err := timed(func() error {
		_, err := c.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
		return err
	})
	if err != nil {
		c.fail("RemovePodSandbox", err)
		return
	}
	put("StopContainer", dStopC)
	put("StopPodSandbox", dStopP)
	put("RemovePodSandbox", dRm)
}

// --------------------------------------------------------------------- list --

func list(cs []*client, img, logDir string, pods, ctrs, n int) {
	created := map[*client][]string{}
	ctrIDs := map[*client][]string{}
	opC := fmt.Sprintf("ListContainers (%d containers)", ctrs)
	opP := fmt.Sprintf("ListPodSandbox (%d containers)", ctrs)
	opS := fmt.Sprintf("ContainerStatus (%d containers)", ctrs)
	for _, c := range cs {
		if err := ensureImage(c, img); err != nil {
			c.fail("PullImage", err, opC, opP, opS)
			continue
		}
		t0 := time.Now()
		for p := 0; p < pods && !c.dead; p++ {
			ctx, cancel := callCtx()
			pc := podConfig("list", p, logDir)
			r, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
			if err != nil {
				cancel()
				c.fail("RunPodSandbox", err, opC, opP, opS)
				break
			}
			created[c] = append(created[c], r.GetPodSandboxId())
			for k := p; k < ctrs; k += pods {
				cr, err := c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
					PodSandboxId: r.GetPodSandboxId(), Config: containerConfig(fmt.Sprintf("list-%d", k), img), SandboxConfig: pc})
				if err != nil {
					c.fail("CreateContainer", err, opC, opP, opS)
					break
				}
				ctrIDs[c] = append(ctrIDs[c], cr.GetContainerId())
			}
			cancel()
		}
		if !c.dead {
			logf("%s: %d pods and %d containers created in %.1fs", c.label, pods, ctrs, time.Since(t0).Seconds())
		}
	}
	for i := 0; i <= n; i++ { // i == 0: warm-up
		for _, c := range order(cs, i) {
			if c.dead {
				continue
			}
			ctx, cancel := callCtx()
			var got, size int
			d, err := timed(func() error {
				r, err := c.rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
				got, size = len(r.GetContainers()), proto.Size(r)
				return err
			})
			if err != nil {
				cancel()
				c.fail("ListContainers", err, opC, opP, opS)
				continue
			}
			if i == 0 && got < ctrs {
				logf("%s: ListContainers returned %d containers, want >= %d", c.label, got, ctrs)
			}
			if i == 0 {
				// What each runtime sends for the same containers: the
				// list's cost grows with it (marshalling, transport, the
				// client's unmarshalling).
				emit(sample{Runtime: c.label, Op: opC + ": response size", Value: float64(size), Unit: "bytes"})
			}
			d2, err := timed(func() error {
				_, err := c.rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
				return err
			})
			if err != nil {
				cancel()
				c.fail("ListPodSandbox", err, opP, opS)
				continue
			}
			// a different container each sample: no runtime-side cache of
			// one record's answer
			ids := ctrIDs[c]
			d3, err := timed(func() error {
				_, err := c.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ids[(i*7919)%len(ids)]})
				return err
			})
			cancel()
			if err != nil {
				c.fail("ContainerStatus", err, opS)
				continue
			}
			if i > 0 {
				emit(sample{Runtime: c.label, Op: opC, Value: ms(d), Unit: "ms"})
				emit(sample{Runtime: c.label, Op: opP, Value: ms(d2), Unit: "ms"})
				emit(sample{Runtime: c.label, Op: opS, Value: ms(d3), Unit: "ms"})
			}
		}
	}
	for _, c := range cs {
		for _, id := range created[c] {
			removePod(c, id)
		}
	}
}

// --------------------------------------------------------------------- pods --

func rssKB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, errors.New("no VmRSS")
}

func podsRSS(c *client, pid, n int, logDir string, settle time.Duration) {
	op := fmt.Sprintf("daemon RSS, %d pods running", n)
	var ids []string
	defer func() {
		for _, id := range ids {
			removePod(c, id)
		}
	}()
	for i := 0; i < n; i++ {
		ctx, cancel := callCtx()
		r, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig("rss", i, logDir)})
		cancel()
		if err != nil {
			c.fail("RunPodSandbox", err, op)
			return
		}
		ids = append(ids, r.GetPodSandboxId())
	}
	time.Sleep(settle)
	kb, err := rssKB(pid)
	if err != nil {
		c.fail("read RSS", err, op)
		return
	}
	emit(sample{Runtime: c.label, Op: op, Value: float64(kb), Unit: "kB"})
}

// -------------------------------------------------------------------- floor --

// floor times `runc create` and `runc start` of the bundle, then deletes the
// container. The bundle's config.json is the caller's.
func floor(runc, root, bundle, label string, n int) {
	// stdio are files, not pipes: the container inherits them from
	// `runc create` and would keep a pipe open (and cmd.Wait waiting).
	errf, err := os.CreateTemp("", "cribench-runc-*.err")
	if err != nil {
		logf("%v", err)
		return
	}
	defer os.Remove(errf.Name())
	defer errf.Close()
	run := func(args ...string) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, runc, append([]string{"--root", root}, args...)...)
		_ = errf.Truncate(0)
		_, _ = errf.Seek(0, 0)
		cmd.Stderr = errf
		d, err := timed(cmd.Run)
		if err != nil {
			out, _ := os.ReadFile(errf.Name())
			return d, fmt.Errorf("runc %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return d, nil
	}
	for i := 0; i <= n; i++ {
		id := fmt.Sprintf("crivet-bench-floor-%d-%d", uniq, i)
		dc, err := run("create", "--bundle", bundle, id)
		if err != nil {
			emit(sample{Runtime: "runc", Op: "runc create", Error: err.Error()})
			logf("%v", err)
			_, _ = run("delete", "--force", id)
			return
		}
		ds, err := run("start", id)
		if err != nil {
			emit(sample{Runtime: "runc", Op: "runc start", Error: err.Error()})
			logf("%v", err)
			_, _ = run("delete", "--force", id)
			return
		}
		if _, err := run("delete", "--force", id); err != nil {
			logf("%v", err)
		}
		if i > 0 {
			emit(sample{Runtime: "runc", Op: "runc create" + label, Value: ms(dc), Unit: "ms"})
			emit(sample{Runtime: "runc", Op: "runc start" + label, Value: ms(ds), Unit: "ms"})
			emit(sample{Runtime: "runc", Op: "runc create+start" + label, Value: ms(dc + ds), Unit: "ms"})
		}
	}
}

// --------------------------------------------------------------------- main --

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  cribench lifecycle -e LABEL=unix:///sock ... -image IMG [-n 10] [-logdir DIR]
  cribench list      -e LABEL=unix:///sock ... -image IMG [-pods 4] [-containers 200] [-n 30]
  cribench scale     -e LABEL=unix:///sock ... -image IMG -pods N [-parallel 10] [-rounds 3]
                     [-daemon LABEL=PID]... [-own-cgroup=true]
  cribench pods      -e LABEL=unix:///sock -pid PID [-n 20] [-settle 3s]
  cribench floor     -bundle DIR [-runc /usr/sbin/runc] [-root DIR] [-n 10]
  cribench critestjson -dir DIR -label LABEL [-spec "benchmark about ..."]
  cribench report    -in SAMPLES.jsonl [-runtimes a,b] [-md FILE] [-json FILE] [-meta k=v]... [-absent rt=why]...`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	sub := os.Args[1]
	if sub == "report" {
		report(os.Args[2:])
		return
	}
	fs := flag.NewFlagSet(sub, flag.ExitOnError)
	var eps endpoints
	fs.Var(&eps, "e", "LABEL=unix:///path.sock (repeatable)")
	img := fs.String("image", "", "container image (busybox)")
	n := fs.Int("n", 10, "samples")
	logDir := fs.String("logdir", filepath.Join(os.TempDir(), "cribench-logs"), "pod log directories")
	pods := fs.Int("pods", 4, "list: pods to spread the containers over; scale: pods to start")
	ctrs := fs.Int("containers", 200, "list: containers to create")
	pid := fs.Int("pid", 0, "pods: daemon pid")
	par := fs.Int("parallel", 10, "scale: calls in flight")
	rounds := fs.Int("rounds", 3, "scale: runs per runtime (ABBA)")
	var daemons kvFlags
	fs.Var(&daemons, "daemon", "scale: LABEL=PID of the runtime's daemon (repeatable)")
	ownCgroup := fs.Bool("own-cgroup", true, "scale: move each daemon into a cgroup of its own to count the CPU of what it forks")
	settle := fs.Duration("settle", 3*time.Second, "pods: wait before reading RSS")
	runc := fs.String("runc", "/usr/sbin/runc", "floor: runc binary")
	root := fs.String("root", filepath.Join(os.TempDir(), "cribench-runc"), "floor: runc --root")
	bundle := fs.String("bundle", "", "floor: OCI bundle")
	suffix := fs.String("suffix", "", "floor: suffix of the operation names")
	dir := fs.String("dir", "", "critestjson: critest -benchmarking-output-dir")
	label := fs.String("label", "", "critestjson: runtime label")
	spec := fs.String("spec", "", "critestjson: the one benchmark spec that ran (default: all)")
	_ = fs.Parse(os.Args[2:])

	if sub == "critestjson" {
		if *dir == "" || *label == "" {
			usage()
		}
		critestJSON(*dir, *label, *spec)
		return
	}
	if sub == "floor" {
		if *bundle == "" {
			usage()
		}
		floor(*runc, *root, *bundle, *suffix, *n)
		return
	}
	var cs []*client
	for _, e := range eps {
		c, err := dial(e)
		if err != nil {
			logf("%v", err)
			os.Exit(2)
		}
		defer c.conn.Close()
		cs = append(cs, c)
	}
	if len(cs) == 0 {
		usage()
	}
	switch sub {
	case "lifecycle":
		lifecycle(cs, *img, *logDir, *n)
	case "list":
		list(cs, *img, *logDir, *pods, *ctrs, *n)
	case "scale":
		o := scaleOpts{img: *img, logDir: *logDir, pods: *pods, par: *par, rounds: *rounds,
			pids: map[string]int{}, cgroups: map[string]string{}}
		for _, d := range daemons {
			p, err := strconv.Atoi(d[1])
			if err != nil {
				logf("-daemon %s=%s: %v", d[0], d[1], err)
				os.Exit(2)
			}
			o.pids[d[0]] = p
			if *ownCgroup {
				dir, err := cgroupFor(p, "crivet-bench-"+d[0])
				if err != nil {
					logf("%s: %v; its cgroup CPU row stays empty", d[0], err)
					continue
				}
				o.cgroups[d[0]] = dir
			}
		}
		scale(cs, o)
	case "pods":
		if *pid == 0 || len(cs) != 1 {
			usage()
		}
		podsRSS(cs[0], *pid, *n, *logDir, *settle)
	default:
		usage()
	}
}
