package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/policy"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const policyCheckUsage = `usage: crivet policy check [--namespace NS] [--pod-config FILE] [--creds USER:PASS] [--stored] [--json] IMAGE [daemon flags]

Evaluates what the daemon configured by the daemon flags (--config,
--signature-policy, --signature-policy-dir, --registries-conf,
--registries-d, --global-auth-file, limits) would decide for IMAGE, and
stores nothing: a pull (the default: manifest, limits and signature policy,
from the registry) or, with --stored, a container create running the image
already in the store (offline).

Exit status: 0 allowed; 1 refused (by the signature policy, or by
max_layers or max_image_size); 2 nothing could be decided (usage, a policy
file that cannot be used, an unreachable registry, an image not stored).
`

// policyCheckCmd is `crivet policy check`; see policyCheckUsage.
func policyCheckCmd(args []string) error {
	if code := runPolicyCheck(args, os.Stdout, os.Stderr); code != 0 {
		os.Exit(code)
	}
	return nil
}

func runPolicyCheck(args []string, stdout, stderr io.Writer) int {
	own := flag.NewFlagSet("crivet policy check", flag.ContinueOnError)
	own.SetOutput(stderr)
	namespace := own.String("namespace", "", "the pod's namespace (overrides --pod-config)")
	podConfig := own.String("pod-config", "", "a CRI PodSandboxConfig, JSON or YAML as crictl takes it; its metadata.namespace is used")
	creds := own.String("creds", "", "registry credentials USER:PASS (default: global_auth_file, as a pull without credentials)")
	stored := own.Bool("stored", false, "check a container create of the image already in the store, offline")
	asJSON := own.Bool("json", false, "print the result as one JSON object")
	own.Usage = func() {
		fmt.Fprint(stderr, policyCheckUsage+"\nflags:\n")
		own.PrintDefaults()
		fmt.Fprintln(stderr, "daemon flags: see 'crivet -h'")
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "crivet policy check:", err)
		return 2
	}

	ownArgs, daemonArgs, positional := splitCheckArgs(own, args)
	if err := own.Parse(ownArgs); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(positional) != 1 {
		own.Usage()
		return 2
	}
	ref := positional[0]
	cfg, err := loadConfig(daemonArgs, "crivet policy check")
	if err != nil {
		return fail(err)
	}
	ns := ""
	if *podConfig != "" {
		if ns, err = podNamespace(*podConfig); err != nil {
			return fail(err)
		}
	}
	own.Visit(func(f *flag.Flag) {
		if f.Name == "namespace" {
			ns = *namespace
		}
	})
	var auth *image.Auth
	if *creds != "" {
		if *stored {
			return fail(errors.New("--creds: a stored check is offline, it contacts no registry"))
		}
		user, pass, ok := strings.Cut(*creds, ":")
		if !ok {
			return fail(errors.New("--creds: want USER:PASS"))
		}
		auth = &image.Auth{Username: user, Password: pass}
	}
	log, err := newLogger(cfg)
	if err != nil {
		return fail(err)
	}
	checker, err := image.NewChecker(image.Config{
		Root: cfg.Root, RunRoot: cfg.RunRoot, Driver: cfg.StorageDriver,
		RegistriesConf: cfg.RegistriesConf, RegistriesD: cfg.RegistriesD, AuthFile: cfg.GlobalAuthFile,
		Policies: policy.NewStore(cfg.SignaturePolicy, cfg.SignaturePolicyDir), Logger: log,
		PullProgressTimeout: time.Duration(cfg.PullProgressTimeout), MaxImageSize: cfg.MaxImageSize, MaxLayers: cfg.MaxLayers,
	})
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var res image.CheckResult
	if *stored {
		res, _ = checker.CheckStored(ctx, ns, ref)
	} else {
		res, _ = checker.Check(ctx, image.PullRequest{Ref: ref, Namespace: ns, Auth: auth})
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return fail(err)
		}
	} else {
		printCheck(stdout, res, cfg.SignaturePolicy)
	}
	switch res.Outcome {
	case "allowed":
		return 0
	case "rejected":
		return 1
	}
	return 2
}

// splitCheckArgs separates the check's own flags and its IMAGE from the
// daemon's flags, which loadConfig reads exactly as the daemon does; any
// order is accepted, as with crictl.
func splitCheckArgs(own *flag.FlagSet, args []string) (ownArgs, daemonArgs, positional []string) {
	var probeCfg Config
	probe := flag.NewFlagSet("", flag.ContinueOnError)
	probe.String("config", "", "")
	bindFlags(probe, &probeCfg)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			positional = append(positional, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		dst := &daemonArgs
		f := own.Lookup(name)
		if f != nil || name == "h" || name == "help" {
			dst = &ownArgs
		} else {
			f = probe.Lookup(name)
		}
		*dst = append(*dst, a)
		if f != nil && !hasValue && !isBoolFlag(f) && i+1 < len(args) {
			i++
			*dst = append(*dst, args[i])
		}
	}
	return ownArgs, daemonArgs, positional
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// podNamespace reads a CRI PodSandboxConfig, JSON or YAML as crictl takes
// it for runp and pull --pod-config, and returns its metadata.namespace:
// the namespace PullImage takes from sandbox_config.
func podNamespace(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("pod config: %w", err)
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", fmt.Errorf("pod config %s: %w", path, err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("pod config %s: %w", path, err)
	}
	var pod runtimeapi.PodSandboxConfig
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(js, &pod); err != nil {
		return "", fmt.Errorf("pod config %s: %w", path, err)
	}
	return pod.GetMetadata().GetNamespace(), nil
}

func printCheck(w io.Writer, r image.CheckResult, globalPolicy string) {
	what := "pull"
	if r.Stage == "create" {
		what = "container create (stored image, offline)"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	line("check", what+" of "+r.Reference)
	ns := r.Namespace
	if ns == "" {
		ns = "(none)"
	}
	line("namespace", ns)
	pol := r.Policy
	if pol != "" && pol == globalPolicy {
		pol += " (global)"
	}
	if r.PolicyDigest != "" {
		pol += " " + r.PolicyDigest
	}
	line("policy", pol)
	line("image", r.Image)
	id := r.Identity
	if r.IdentityFromRecord {
		id += " (a reference it was pulled by)"
	}
	line("verified as", id)
	line("manifest", r.ManifestDigest)
	line("index", r.IndexDigest)
	line("scope", r.Scope)
	line("requirements", strings.Join(r.Requirements, " + "))
	line("decided by", r.Step)
	line("outcome", r.Outcome)
	line("reason", r.Reason)
	_ = tw.Flush()
}
