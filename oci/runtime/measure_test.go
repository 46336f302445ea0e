package runtime

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crivet/crivet/oci/monitor"
)

// TestMeasureCreateStart compares Create+Start with a bare `runc create` +
// `runc start` of the same bundle, median of 10 interleaved rounds. It only
// runs with CRIVET_MEASURE=1; CRIVET_MEASURE_MONITORS adds monitor commands
// to compare, as name=argv pairs separated by ';' (argv split on spaces),
// e.g. "small=/tmp/crivet-monitor;reexec=/tmp/crivet monitor".
func TestMeasureCreateStart(t *testing.T) {
	if os.Getenv("CRIVET_MEASURE") == "" {
		t.Skip("set CRIVET_MEASURE=1 to measure")
	}
	type variant struct {
		name string
		argv []string // nil: bare runc
	}
	variants := []variant{{"bare runc", nil}, {"test binary monitor", []string{testBinary, "monitor"}}}
	for _, kv := range strings.Split(os.Getenv("CRIVET_MEASURE_MONITORS"), ";") {
		if name, argv, ok := strings.Cut(kv, "="); ok {
			variants = append(variants, variant{name, strings.Fields(argv)})
		}
	}
	e := newEnv(t)
	const rounds = 10
	createStart := map[string][]time.Duration{}
	del := map[string][]time.Duration{}
	mem := map[string][][2]int{}
	ctx := context.Background()
	for round := range rounds {
		for i := range variants {
			v := variants[(i+round)%len(variants)]
			id := fmt.Sprintf("m%d-%d-%d", os.Getpid(), round, i)
			bundle := writeBundle(t, id, []string{"sleep", "100"}, bundleOpts{})
			if v.argv == nil {
				begin := time.Now()
				// stdio stays /dev/null: runc hands its stdio to the container,
				// so a pipe here would never reach EOF.
				if err := exec.Command("runc", "--root", e.root, "create", "--bundle", bundle, id).Run(); err != nil {
					t.Fatalf("runc create: %v", err)
				}
				if out, err := exec.Command("runc", "--root", e.root, "start", id).CombinedOutput(); err != nil {
					t.Fatalf("runc start: %v: %s", err, out)
				}
				createStart[v.name] = append(createStart[v.name], time.Since(begin))
				begin = time.Now()
				exec.Command("runc", "--root", e.root, "delete", "--force", id).Run()
				del[v.name] = append(del[v.name], time.Since(begin))
				continue
			}
			rt, err := New(Config{Root: e.root, StateDir: e.state, MonitorCmd: v.argv})
			if err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			if err := rt.Create(ctx, CreateOptions{ID: id, Bundle: bundle, LogPath: filepath.Join(e.logs, id+".log")}); err != nil {
				t.Fatal(err)
			}
			if err := rt.Start(ctx, id); err != nil {
				t.Fatal(err)
			}
			createStart[v.name] = append(createStart[v.name], time.Since(begin))
			mem[v.name] = append(mem[v.name], memKiB(monitor.Pid(filepath.Join(e.state, id))))
			begin = time.Now()
			if err := rt.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
			del[v.name] = append(del[v.name], time.Since(begin))
		}
	}
	// Exec does not involve the monitor: ExecSync against a bare `runc exec`.
	id := fmt.Sprintf("mx%d", os.Getpid())
	if err := e.runtime(t).Create(ctx, CreateOptions{ID: id, Bundle: writeBundle(t, id, []string{"sleep", "100"}, bundleOpts{})}); err != nil {
		t.Fatal(err)
	}
	rt := e.runtime(t)
	defer rt.Delete(ctx, id)
	if err := rt.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	var execSync, bareExec []time.Duration
	for range rounds {
		begin := time.Now()
		if _, _, code, err := rt.ExecSync(ctx, id, []string{"true"}, 10*time.Second); err != nil || code != 0 {
			t.Fatalf("ExecSync: %d, %v", code, err)
		}
		execSync = append(execSync, time.Since(begin))
		begin = time.Now()
		if out, err := exec.Command("runc", "--root", e.root, "exec", id, "true").CombinedOutput(); err != nil {
			t.Fatalf("runc exec: %v: %s", err, out)
		}
		bareExec = append(bareExec, time.Since(begin))
	}
	t.Logf("exec of true: ExecSync median %.1f ms, bare runc exec median %.1f ms", ms(median(execSync)), ms(median(bareExec)))

	for _, v := range variants {
		line := fmt.Sprintf("%-22s create+start median %6.1f ms  (min %5.1f, max %5.1f)   delete median %6.1f ms",
			v.name, ms(median(createStart[v.name])), ms(slices.Min(createStart[v.name])), ms(slices.Max(createStart[v.name])), ms(median(del[v.name])))
		if m := mem[v.name]; len(m) > 0 {
			slices.SortFunc(m, func(a, b [2]int) int { return a[0] - b[0] })
			line += fmt.Sprintf("   monitor PSS %d KiB, anonymous %d KiB", m[len(m)/2][0], m[len(m)/2][1])
		}
		t.Log(line)
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// memKiB reads a process's proportional set size and its private anonymous
// memory, the part every additional monitor adds in full.
func memKiB(pid int) [2]int {
	out := [2]int{-1, -1}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		for i, key := range []string{"Pss:", "Anonymous:"} {
			if v, ok := strings.CutPrefix(line, key); ok {
				fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &out[i])
			}
		}
	}
	return out
}
