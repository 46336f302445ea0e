package main

import (
	"bufio"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// ------------------------------------------------------------ critestjson --

// critest -benchmark writes one JSON file per benchmark spec; the ops of a
// spec that failed (e.g. Unimplemented) are reported as errors from the
// JUnit report instead.
var critestBenchmarks = []struct {
	file, spec string
	ops        []string
}{
	{"pod_benchmark_data.json", "benchmark about lifecycle of PodSandbox", []string{"CreatePod", "StatusPod", "StopPod", "RemovePod"}},
	{"container_benchmark_data.json", "benchmark about basic operations on Container", []string{"CreateContainer", "StartContainer", "StatusContainer", "StopContainer", "RemoveContainer"}},
	{"image_lifecycle_benchmark_data.json", "benchmark about basic operations on Image", []string{"PullImage", "StatusImage", "RemoveImage"}},
	{"image_listing_benchmark_data.json", "benchmark about listing Image", []string{"ListImages"}},
}

type benchFile struct {
	OperationsNames []string `json:"operationsNames"`
	Datapoints      []struct {
		OperationsDurationsNs []int64 `json:"operationsDurationsNs"`
	} `json:"datapoints"`
}

type junitReport struct {
	Suites []struct {
		Cases []struct {
			Name    string `xml:"name,attr"`
			Status  string `xml:"status,attr"`
			Failure *struct {
				Message string `xml:"message,attr"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
			} `xml:"error"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

var rpcErrRE = regexp.MustCompile(`code = (\w+) desc = ([^{\n]*)`)

// shortError reduces a failure message to "Code: desc" when it holds a gRPC status.
func shortError(msg string) string {
	if m := rpcErrRE.FindStringSubmatch(msg); m != nil {
		return m[1] + ": " + strings.TrimSpace(m[2])
	}
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > 160 {
		msg = msg[:160] + "..."
	}
	return msg
}

// critestJSON emits the samples of a critest -benchmark output dir; only
// the benchmark spec named spec when it is not empty.
func critestJSON(dir, label, spec string) {
	type result struct{ status, msg string }
	results := map[string]result{} // spec -> result
	var rep junitReport
	if raw, err := os.ReadFile(filepath.Join(dir, "junit.xml")); err == nil {
		_ = xml.Unmarshal(raw, &rep)
	}
	for _, s := range rep.Suites {
		for _, c := range s.Cases {
			for _, b := range critestBenchmarks {
				if !strings.Contains(c.Name, b.spec) {
					continue
				}
				msg := c.Status
				if c.Failure != nil {
					msg = c.Failure.Message
				} else if c.Error != nil {
					msg = c.Error.Message
				}
				results[b.spec] = result{c.Status, shortError(msg)}
			}
		}
	}
	for _, b := range critestBenchmarks {
		if spec != "" && b.spec != spec {
			continue
		}
		r, inReport := results[b.spec]
		if inReport && r.status == "skipped" {
			continue // not selected in this critest run
		}
		raw, err := os.ReadFile(filepath.Join(dir, b.file))
		if err != nil {
			msg := "no results (see critest.log)"
			if inReport {
				msg = r.msg
			} else if log, err := os.ReadFile(filepath.Join(dir, "critest.log")); err == nil {
				// no JUnit report: critest died (a failure inside a parallel
				// sample panics it); take the first gRPC error of its log
				if m := rpcErrRE.FindString(string(log)); m != "" {
					msg = shortError(m) + " (critest aborted)"
				}
			}
			for _, op := range b.ops {
				emit(sample{Runtime: label, Op: "critest " + op, Error: msg})
			}
			continue
		}
		var f benchFile
		if err := json.Unmarshal(raw, &f); err != nil {
			logf("%s: %v", b.file, err)
			continue
		}
		for _, dp := range f.Datapoints {
			for i, name := range f.OperationsNames {
				if i < len(dp.OperationsDurationsNs) {
					emit(sample{Runtime: label, Op: "critest " + name, Value: float64(dp.OperationsDurationsNs[i]) / 1e6, Unit: "ms"})
				}
			}
		}
	}
}

// ----------------------------------------------------------------- report --

type stat struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	P10    float64 `json:"p10"`
	P90    float64 `json:"p90"`
	Error  string  `json:"error,omitempty"`
}

type row struct {
	Op       string           `json:"operation"`
	Unit     string           `json:"unit"`
	Runtimes map[string]*stat `json:"runtimes"`
	Ratio    float64          `json:"ratio,omitempty"`
	Floor    *stat            `json:"floor,omitempty"`
	FloorOp  string           `json:"floor_operation,omitempty"`
}

// floorOf: which bare-runc measurement bounds an operation from below.
var floorOf = map[string]string{
	"runp+create+start": "runc create+start",
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile is the nearest-rank p-th percentile (0 < p <= 100) of v:
// always one of the samples, so with few samples p10-p90 is min-max.
func percentile(v []float64, p float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	k := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(k, 1), len(s))-1]
}

func mkStat(vals []float64, errMsg string) *stat {
	st := &stat{N: len(vals), Error: errMsg}
	if len(vals) > 0 {
		st.Median = median(vals)
		st.Min, st.Max = vals[0], vals[0]
		for _, v := range vals {
			st.Min, st.Max = min(st.Min, v), max(st.Max, v)
		}
		st.P10, st.P90 = percentile(vals, 10), percentile(vals, 90)
	}
	return st
}

// fmtNum formats v for unit: the number and the unit to show after it.
func fmtNum(v float64, unit string) (string, string) {
	switch unit {
	case "kB":
		return fmt.Sprintf("%.1f", v/1024), "MiB"
	case "count":
		return fmt.Sprintf("%.0f", v), ""
	case "ms", "s":
		switch {
		case v < 10:
			return fmt.Sprintf("%.2f", v), unit
		case v < 1000:
			return fmt.Sprintf("%.1f", v), unit
		}
		return fmt.Sprintf("%.0f", v), unit
	}
	return fmt.Sprintf("%g", v), unit
}

func fmtVal(v float64, unit string) string {
	n, u := fmtNum(v, unit)
	return strings.TrimSpace(n + " " + u)
}

// spread is the p10-p90 range of a runtime's samples ("—" under 2 samples).
func spread(st *stat, unit string) string {
	if st == nil || st.N < 2 {
		return "—"
	}
	lo, u := fmtNum(st.P10, unit)
	hi, _ := fmtNum(st.P90, unit)
	return strings.TrimSpace(lo + "–" + hi + " " + u)
}

func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func cell(st *stat, unit, absent string) string {
	switch {
	case st == nil && absent != "":
		return absent
	case st == nil:
		return "—"
	case st.N > 0 && st.Error != "":
		return fmt.Sprintf("%s (n=%d; then %s)", fmtVal(st.Median, unit), st.N, clip(st.Error, 100))
	case st.N == 1 && unit != "ms":
		return fmtVal(st.Median, unit)
	case st.N > 0:
		return fmt.Sprintf("%s (n=%d)", fmtVal(st.Median, unit), st.N)
	case strings.HasPrefix(st.Error, "Unimplemented"):
		return "not supported yet (Unimplemented)"
	case strings.Contains(st.Error, ": Unimplemented:"):
		call, _, _ := strings.Cut(st.Error, ":")
		return "not supported yet (" + call + " Unimplemented)"
	default:
		return "failed: " + clip(st.Error, 100)
	}
}

type kvFlags [][2]string

func (k *kvFlags) String() string { return fmt.Sprint(*k) }
func (k *kvFlags) Set(s string) error {
	a, b, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("want key=value")
	}
	*k = append(*k, [2]string{a, b})
	return nil
}

func report(args []string) {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	in := fs.String("in", "", "samples (JSON lines)")
	runtimes := fs.String("runtimes", "crivet,containerd", "runtime columns; the ratio is first/second")
	outMD := fs.String("md", "", "markdown output")
	outJSON := fs.String("json", "", "JSON output (summary and every sample)")
	var meta, absent kvFlags
	fs.Var(&meta, "meta", "key=value header line (repeatable)")
	fs.Var(&absent, "absent", "runtime=why: text for a runtime that did not run (repeatable)")
	_ = fs.Parse(args)

	f, err := os.Open(*in)
	if err != nil {
		logf("%v", err)
		os.Exit(1)
	}
	defer f.Close()
	type key struct{ op, rt string }
	vals := map[key][]float64{}
	errs := map[key]string{}
	units := map[string]string{}
	var order []string
	var samples []sample
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var s sample
		if json.Unmarshal(sc.Bytes(), &s) != nil {
			continue
		}
		samples = append(samples, s)
		if _, seen := units[s.Op]; !seen {
			order = append(order, s.Op)
			units[s.Op] = ""
		}
		k := key{s.Op, s.Runtime}
		if s.Error != "" {
			if errs[k] == "" {
				errs[k] = s.Error
			}
			continue
		}
		units[s.Op] = s.Unit
		vals[k] = append(vals[k], s.Value)
	}
	rts := strings.Split(*runtimes, ",")
	absentWhy := map[string]string{}
	for _, a := range absent {
		absentWhy[a[0]] = a[1]
	}
	var rows []*row
	isFloor := map[string]bool{}
	for _, v := range floorOf {
		isFloor[v] = true
	}
	for _, op := range order {
		r := &row{Op: op, Unit: units[op], Runtimes: map[string]*stat{}}
		for _, rt := range rts {
			k := key{op, rt}
			if len(vals[k]) > 0 || errs[k] != "" {
				r.Runtimes[rt] = mkStat(vals[k], errs[k])
			}
		}
		if len(vals[key{op, "runc"}]) > 0 || errs[key{op, "runc"}] != "" {
			r.Floor, r.FloorOp = mkStat(vals[key{op, "runc"}], errs[key{op, "runc"}]), op
		}
		if fop, ok := floorOf[op]; ok && len(vals[key{fop, "runc"}]) > 0 {
			r.Floor, r.FloorOp = mkStat(vals[key{fop, "runc"}], ""), fop
		}
		if len(rts) >= 2 {
			a, b := r.Runtimes[rts[0]], r.Runtimes[rts[1]]
			if a != nil && b != nil && a.N > 0 && b.N > 0 && b.Median > 0 {
				r.Ratio = a.Median / b.Median
			}
		}
		rows = append(rows, r)
	}

	var md strings.Builder
	md.WriteString("# crivet vs containerd: benchmark\n\n")
	for _, m := range meta {
		fmt.Fprintf(&md, "- %s: %s\n", m[0], m[1])
	}
	md.WriteString("\nMedians; n = samples. Ratio = " + rts[0] + " / " + rts[1] +
		" (below 1: " + rts[0] + " is faster or smaller). Spread = p10–p90 of each runtime's samples" +
		" (nearest rank: min–max under 10 samples). Floor = bare runc on the same bundle.\n\n")
	fmt.Fprintf(&md, "| operation | %s median | %s median | ratio | spread (%s; %s) | floor |\n|---|---|---|---|---|---|\n",
		rts[0], rts[1], rts[0], rts[1])
	for _, r := range rows {
		var cells []string
		for _, rt := range rts[:min(2, len(rts))] {
			cells = append(cells, cell(r.Runtimes[rt], r.Unit, absentWhy[rt]))
		}
		ratio := "—"
		if r.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f", r.Ratio)
		}
		floor := "—"
		if r.Floor != nil {
			floor = cell(r.Floor, r.Unit, "")
			if r.FloorOp != r.Op {
				floor += " (" + r.FloorOp + ")"
			}
		}
		spreads := "—"
		if a, b := spread(r.Runtimes[rts[0]], r.Unit), spread(r.Runtimes[rts[min(1, len(rts)-1)]], r.Unit); a != "—" || b != "—" {
			spreads = a + "; " + b
		}
		if isFloor[r.Op] || (r.Floor != nil && r.FloorOp == r.Op) {
			cells = []string{"—", "—"}
			spreads = "—"
		}
		fmt.Fprintf(&md, "| %s | %s | %s | %s | %s | %s |\n", r.Op, cells[0], cells[1], ratio, spreads, floor)
	}
	if *outMD != "" {
		if err := os.WriteFile(*outMD, []byte(md.String()), 0o644); err != nil {
			logf("%v", err)
			os.Exit(1)
		}
	}
	if *outJSON != "" {
		m := map[string]string{}
		for _, kv := range meta {
			m[kv[0]] = kv[1]
		}
		b, _ := json.MarshalIndent(map[string]any{"meta": m, "rows": rows, "samples": samples}, "", " ")
		if err := os.WriteFile(*outJSON, append(b, '\n'), 0o644); err != nil {
			logf("%v", err)
			os.Exit(1)
		}
	}
	fmt.Print(md.String())
}
