package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crivet/crivet/test/fixtures"
)

// The command line follows the conventions operators and packagers rely
// on: --version and --help succeed, every subcommand has help, shell
// completion and man pages are generated from the binary.
func TestCLIConventions(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-h"}, {"--help"}, {"help", "policy"}, {"policy", "lint", "--help"},
		{"version"}, {"completion", "bash"}, {"completion", "zsh"}, {"completion", "fish"}} {
		out, err := exec.Command(crivetBin, args...).CombinedOutput()
		if err != nil || len(out) == 0 {
			t.Errorf("crivet %v: %v\n%s", args, err, out)
		}
	}
	if out, _ := exec.Command(crivetBin, "--version").Output(); !strings.HasPrefix(string(out), "crivet ") {
		t.Errorf("--version: %q", out)
	}
	for _, args := range [][]string{{"--no-such-flag"}, {"no-such-command"}, {"serve", "extra-arg"}} {
		if out, err := exec.Command(crivetBin, args...).CombinedOutput(); err == nil {
			t.Errorf("crivet %v succeeded:\n%s", args, out)
		}
	}
	dir := t.TempDir()
	if out, err := exec.Command(crivetBin, "man", dir).CombinedOutput(); err != nil {
		t.Fatalf("man: %v\n%s", err, out)
	}
	for page, want := range map[string]string{"crivet.8": ".TH \"CRIVET\" \"8\"", "crivet-policy-lint.8": "policy lint", "crivet.toml.5": "signature_policy_modes"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("man page %s: %v, want %q in:\n%.300s", page, err, want, b)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "crivet.toml.5")); !strings.Contains(string(b), "pull_progress_timeout") {
		t.Error("crivet.toml(5) does not document every key")
	}
}

// crivet.toml, then crivet.toml.d/*.toml in lexical order, then flags;
// `crivet config` says which one set each value.
func TestConfigDropInsAndSources(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "crivet.toml")
	fixtures.WriteFile(t, main, "log_level = \"warn\"\nmax_layers = 10\n[signature_policy_modes]\nteam-a = \"warn\"\n")
	fixtures.WriteFile(t, filepath.Join(dir, "crivet.toml.d", "20-late.toml"), "max_layers = 30\n")
	fixtures.WriteFile(t, filepath.Join(dir, "crivet.toml.d", "10-early.toml"), "max_layers = 20\nroot = \"/tmp/r\"\n[signature_policy_modes]\nstaging = \"warn\"\n")
	fixtures.WriteFile(t, filepath.Join(dir, "crivet.toml.d", "ignored.conf"), "not toml at all")
	out, err := exec.Command(crivetBin, "config", "--config", main, "--root", "/tmp/flag-root", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]struct {
		Value  any
		Source string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := map[string][2]any{
		"log_level":                      {"warn", main},
		"max_layers":                     {float64(30), filepath.Join(dir, "crivet.toml.d", "20-late.toml")},
		"root":                           {"/tmp/flag-root", "flag --root"},
		"listen":                         {"/run/crivet/crivet.sock", "default"},
		"signature_policy_modes.team-a":  {"warn", main},
		"signature_policy_modes.staging": {"warn", filepath.Join(dir, "crivet.toml.d", "10-early.toml")},
	}
	for k, w := range want {
		if g := got[k]; g.Value != w[0] || g.Source != w[1] {
			t.Errorf("%s = %v from %q, want %v from %q", k, g.Value, g.Source, w[0], w[1])
		}
	}
	text, err := exec.Command(crivetBin, "config", "--config", main).Output()
	if err != nil || !strings.Contains(string(text), "max_layers = 30  # "+filepath.Join(dir, "crivet.toml.d", "20-late.toml")) {
		t.Errorf("text form: %v\n%s", err, text)
	}

	// A typo in a drop-in is an error naming the file, not a silent default.
	bad := filepath.Join(dir, "crivet.toml.d", "30-typo.toml")
	fixtures.WriteFile(t, bad, "max_layer = 5\n")
	if out, err := exec.Command(crivetBin, "config", "--config", main).CombinedOutput(); err == nil || !strings.Contains(string(out), bad) {
		t.Errorf("unknown key in a drop-in: %v\n%s", err, out)
	}
	fixtures.WriteFile(t, bad, "[signature_policy_modes]\nstaging = \"audit\"\n")
	if out, err := exec.Command(crivetBin, "serve", "--config", main).CombinedOutput(); err == nil || !strings.Contains(string(out), "want enforce or warn") {
		t.Errorf("bad mode: %v\n%s", err, out)
	}
}

// Warn mode, switched on by a drop-in and SIGHUP: an unsigned image the
// namespace's policy refuses is pulled and run, and the refusal is
// logged, audited as warned and shown by crictl inspect and crictl info.
// Other namespaces stay enforced.
func TestWarnModeBySIGHUP(t *testing.T) {
	n := newNode(t)
	key := fixtures.NewSigstoreKey(t)
	img := fixtures.PushBusybox(t, n.reg.Ref("app/unsigned:1"), fixtures.BusyboxConfig{Cmd: []string{"sleep", "3600"}})
	n.setNamespace("staging", keyPolicy(key.PublicKeyPath))
	n.setNamespace("prod", keyPolicy(key.PublicKeyPath))
	auditPath := filepath.Join(n.dir, "audit.log")
	n.extraArgs = []string{"--audit-log", auditPath}
	n.start()

	pull := func(ns string) (string, error) {
		out, stderr, err := n.crictl("pull", "--pod-config", podConfig(t, n.dir, ns), img.Ref)
		return out + stderr, err
	}
	if out, err := pull("staging"); err == nil || !strings.Contains(out, "SignatureValidationFailed") {
		t.Fatalf("enforced staging admitted the unsigned image: %v\n%s", err, out)
	}

	fixtures.WriteFile(t, filepath.Join(n.dir, "none.toml.d", "50-rollout.toml"), "[signature_policy_modes]\nstaging = \"warn\"\n")
	n.hup(`"reload: configuration applied"`)
	if out, err := pull("staging"); err != nil {
		t.Fatalf("warn-mode staging refused the pull: %v\n%s", err, out)
	}
	if out, err := pull("prod"); err == nil || !strings.Contains(out, "SignatureValidationFailed") {
		t.Fatalf("prod (enforced) admitted the unsigned image: %v\n%s", err, out)
	}
	// crivet policy check reads the same drop-ins and answers as the daemon.
	for ns, want := range map[string]string{"staging": "warned", "prod": "rejected"} {
		out, err := exec.Command(crivetBin, append([]string{"policy", "check", "--json", "--stored", "--namespace", ns, img.Ref}, n.args()...)...).Output()
		var res struct{ Outcome, Reason string }
		json.Unmarshal(out, &res)
		if res.Outcome != want || (want == "warned") != (err == nil) || !strings.Contains(res.Reason, "A signature was required") {
			t.Errorf("policy check --stored in %s: %v %+v\n%s", ns, err, res, out)
		}
	}
	podID := firstLine(n.mustCrictl("runp", n.podJSON("w", "staging", nil)))
	ctrID := firstLine(n.mustCrictl("create", podID, n.ctrJSON("c", img.Ref, img.Ref, nil), n.podJSON("w", "staging", nil)))
	n.mustCrictl("start", ctrID)
	var inspect struct {
		Info struct {
			SignaturePolicy struct {
				Outcome  string
				Warnings []string
			} `json:"signaturePolicy"`
		}
	}
	if err := json.Unmarshal([]byte(n.mustCrictl("inspect", ctrID)), &inspect); err != nil {
		t.Fatal(err)
	}
	if sp := inspect.Info.SignaturePolicy; sp.Outcome != "warned" || len(sp.Warnings) != 1 || !strings.Contains(sp.Warnings[0], "A signature was required") {
		t.Errorf("crictl inspect signaturePolicy: %+v", sp)
	}
	// prod still refuses the now-stored image at create.
	prodPod := firstLine(n.mustCrictl("runp", n.podJSON("p", "prod", nil)))
	if out, stderr, err := n.crictl("create", prodPod, n.ctrJSON("c", img.Ref, img.Ref, nil), n.podJSON("p", "prod", nil)); err == nil {
		t.Errorf("prod created the unsigned image: %s", out)
	} else if !strings.Contains(stderr, "SignatureValidationFailed") {
		t.Errorf("prod create error: %s", stderr)
	}

	var outcomes []string
	for _, l := range readAudit(t, auditPath) {
		outcomes = append(outcomes, l.Stage+"/"+l.Namespace+"/"+l.Outcome)
		if l.Outcome == "warned" && !strings.Contains(l.Reason, "A signature was required") {
			t.Errorf("warned audit line without the reason: %+v", l)
		}
	}
	if got := strings.Join(outcomes, " "); got != "pull/staging/rejected pull/staging/warned pull/prod/rejected create/staging/warned create/prod/rejected" {
		t.Errorf("audit outcomes: %s", got)
	}
	// Logged before the pull was answered, but it reaches n.log through a
	// pipe: wait for it.
	n.waitLog(10*time.Second, nil, `"mode":"warn","reason":"Source image rejected`)

	var info struct {
		Config            map[string]struct{ Value any } `json:"config"`
		SignaturePolicies struct {
			Files []struct {
				Path, Namespace, SHA256, State, Mode string
			}
		} `json:"signaturePolicies"`
	}
	if err := json.Unmarshal([]byte(n.mustCrictl("info")), &info); err != nil {
		t.Fatal(err)
	}
	modes := map[string]string{}
	for _, p := range info.SignaturePolicies.Files {
		if p.State != "ok" || len(p.SHA256) != 64 {
			t.Errorf("policy file state: %+v", p)
		}
		modes[p.Namespace] = p.Mode
	}
	if modes["staging"] != "warn" || modes["prod"] != "enforce" || modes[""] != "enforce" {
		t.Errorf("crictl info policy modes: %v", modes)
	}
	if v := info.Config["signature_policy_modes.staging"].Value; v != "warn" {
		t.Errorf("crictl info config: staging mode %v", v)
	}
	if v := info.Config["root"].Value; v != n.root {
		t.Errorf("crictl info config: root %v", v)
	}
}

// hup sends SIGHUP and waits for the daemon to log want.
// hup sends SIGHUP and waits for each of wants to be logged once more.
func (n *node) hup(wants ...string) {
	n.t.Helper()
	out := n.log.String()
	before := make([]int, len(wants))
	for i, w := range wants {
		before[i] = strings.Count(out, w)
	}
	if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		n.t.Fatal(err)
	}
	n.waitLog(10*time.Second, before, wants...)
}

// SIGHUP applies the log level; keys that need a restart are named and
// keep their running value; a broken file changes nothing.
func TestSIGHUPReloadsWhatItCan(t *testing.T) {
	n := newNode(t)
	n.start()
	dropIn := filepath.Join(n.dir, "none.toml.d", "50.toml")
	fixtures.WriteFile(t, dropIn, "log_level = \"debug\"\nmax_layers = 3\n")
	// The restart warning follows "configuration applied": wait for it
	// rather than look for it once the first line is there.
	n.hup(`"reload: configuration applied"`, `"keys":["max_layers"]`)
	before := strings.Count(n.log.String(), `"level":"DEBUG"`)
	n.mustCrictl("images")
	// The daemon's output reaches the buffer through a pipe: allow it a moment.
	for deadline := time.Now().Add(3 * time.Second); strings.Count(n.log.String(), `"level":"DEBUG"`) == before; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("log_level debug not applied by SIGHUP")
		}
	}
	// The metrics endpoint is switched on, then off, by SIGHUP.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	fixtures.WriteFile(t, dropIn, fmt.Sprintf("metrics_address = %q\n", addr))
	n.hup(`"reload: configuration applied"`)
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("metrics after SIGHUP: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "crivet_cri_requests_total") {
		t.Errorf("metrics endpoint: %.300s", body)
	}
	fixtures.WriteFile(t, dropIn, "")
	n.hup(`"metrics endpoint stopped"`)
	if _, err := http.Get("http://" + addr + "/metrics"); err == nil {
		t.Error("metrics still served after metrics_address was removed")
	}
	fixtures.WriteFile(t, dropIn, "log_level = [\n")
	n.hup(`"reload: configuration not applied"`)
	if !n.answers() {
		t.Fatal("daemon stopped answering after a bad reload")
	}
}

// Status re-checks the runtime binary and the CNI configuration at each
// call: kubelet must see a node that can no longer run pods as NotReady.
func TestStatusIsCheckedLive(t *testing.T) {
	n := newNode(t)
	runcPath, err := exec.LookPath("runc")
	if err != nil {
		t.Fatal(err)
	}
	myRunc := filepath.Join(n.dir, "bin", "runc")
	copyFile(t, runcPath, myRunc, 0o755)
	n.extraArgs = []string{"--runtime", myRunc}
	n.start()
	conditions := func() map[string]string {
		var st struct {
			Status struct {
				Conditions []struct {
					Type    string
					Status  bool
					Reason  string
					Message string
				}
			}
		}
		if err := json.Unmarshal([]byte(n.mustCrictl("info")), &st); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, c := range st.Status.Conditions {
			out[c.Type] = "ready"
			if !c.Status {
				out[c.Type] = c.Reason + ": " + c.Message
			}
		}
		return out
	}
	if c := conditions(); c["RuntimeReady"] != "ready" || c["NetworkReady"] != "ready" {
		t.Fatalf("at start: %v", c)
	}
	os.Remove(myRunc)
	if c := conditions(); !strings.HasPrefix(c["RuntimeReady"], "RuntimeBinaryNotReady") || !strings.Contains(c["RuntimeReady"], myRunc) {
		t.Errorf("runtime binary removed: %v", c)
	}
	fixtures.WriteFile(t, myRunc, "#!/bin/sh\nexit 3\n")
	os.Chmod(myRunc, 0o755)
	if c := conditions(); !strings.Contains(c["RuntimeReady"], "exit status 3") {
		t.Errorf("broken runtime binary: %v", c)
	}
	copyFile(t, runcPath, myRunc, 0o755)
	if c := conditions(); c["RuntimeReady"] != "ready" {
		t.Errorf("runtime binary restored: %v", c)
	}

	conf := filepath.Join(n.dir, "net.d", "10-crivet-e2e.conflist")
	saved, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(conf)
	if c := conditions(); !strings.HasPrefix(c["NetworkReady"], "NetworkPluginNotReady") {
		t.Errorf("CNI config removed: %v", c)
	}
	fixtures.WriteFile(t, conf, strings.Replace(string(saved), `"portmap"`, `"no-such-plugin"`, 1))
	if c := conditions(); !strings.Contains(c["NetworkReady"], "no-such-plugin") {
		t.Errorf("CNI config naming a missing plugin: %v", c)
	}
	fixtures.WriteFile(t, conf, string(saved))
	if c := conditions(); c["NetworkReady"] != "ready" {
		t.Errorf("CNI config restored: %v", c)
	}
	// Pods still run with the reloaded configuration.
	pod := firstLine(n.mustCrictl("runp", n.podJSON("live", "default", nil)))
	n.mustCrictl("stopp", pod)
	n.mustCrictl("rmp", pod)
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	// A new file (new inode), as a package upgrade would write it.
	os.Remove(to)
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// Type=notify: READY=1 once the CRI answers, WATCHDOG=1 while it keeps
// answering, STOPPING=1 at shutdown, over systemd's datagram protocol.
func TestSdNotifyReadyAndWatchdog(t *testing.T) {
	n := newNode(t)
	sockPath := filepath.Join(n.dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	n.env = []string{"NOTIFY_SOCKET=" + sockPath, "WATCHDOG_USEC=400000"}
	n.start()
	got := map[string]int{}
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for got["WATCHDOG=1"] < 2 {
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("notifications so far %v: %v", got, err)
		}
		for _, l := range strings.Split(string(buf[:k]), "\n") {
			got[l]++
		}
	}
	if got["READY=1"] != 1 {
		t.Errorf("READY=1 sent %d times", got["READY=1"])
	}
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	for got["STOPPING=1"] == 0 {
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no STOPPING=1: %v (%v)", err, got)
		}
		for _, l := range strings.Split(string(buf[:k]), "\n") {
			got[l]++
		}
	}
}

// --log-format json holds for every line, the libraries' included:
// containers/image (logrus) at debug, the streaming server (klog), gRPC.
func TestJSONLogsAreAllJSON(t *testing.T) {
	n := newNode(t)
	img := fixtures.PushBusybox(t, n.reg.Ref("app/logs:1"), fixtures.BusyboxConfig{Cmd: []string{"sleep", "3600"}})
	n.extraArgs = []string{"--log-level", "debug"}
	n.start()
	n.mustCrictl("pull", img.Ref)
	n.mustCrictl("rmi", img.Ref)
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}
	loggers := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(n.log.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("not JSON: %q", line)
			continue
		}
		l, _ := m["logger"].(string)
		loggers[l]++
	}
	if loggers["logrus"] == 0 {
		t.Errorf("no containers/image debug line went through slog: %v", loggers)
	}
}
