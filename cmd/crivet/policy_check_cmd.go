package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func newPolicyCheckCmd() *cobra.Command {
	var (
		namespace, podConfig, creds, credsFile string
		stored, asJSON                         bool
	)
	cmd := &cobra.Command{
		Use:   "check IMAGE",
		Short: "Evaluate what a pull (or, with --stored, a create) of IMAGE would decide; stores nothing",
		Long: `Evaluates what the daemon configured by the daemon flags (--config,
--signature-policy, --signature-policy-dir, --registries-conf,
--registries-d, --global-auth-file, limits, signature_policy_modes) would
decide for IMAGE, through the daemon's own code, and stores nothing: a pull
(the default: manifest, limits and signature policy, from the registry) or,
with --stored, a container create running the image already in the store
(offline). The decision is not written to the audit log.

Sigstore bundles (cosign v3 signatures): where the scope has a
sigstoreBundle requirement, the output lists each bundle considered, per
reference the image was verified as ("bundle N", and "bundles" in --json):
the bundle's digest; where it was found (referrers-api, tag-schema or
archive; the repository or archive; as a referrer of the manifest or of
the index it was chosen from); for a bundle that admits the image, what its
statement signs (the manifest, or the index the manifest was chosen from),
the signer (the key file, or the certificate's SAN, OIDC issuer, source
repository and build signer), the verified transparency-log entries (log,
index, kind, Rekor v1 integrated time) and RFC 3161 timestamps; and the
outcome: admitted, rejected with its reason class (not_a_signature,
untrusted_key, keyless_claims, digest_mismatch, missing_evidence,
invalid_signature, key_unreadable, ...) and message, or not used and why
(e.g. found in another repository: a bundle names a digest, not a
repository, so it vouches only for the repository it was found in). A
refused bundle's claimed signer and subject are not shown: nothing about
it was verified. Every bundle is verified, even after one admitted, so each
has a verdict; a real pull or create stops at the first.

Exit status: 0 allowed (or warned: refused, but the namespace is in warn
mode); 1 refused (by the signature policy, or by max_layers or
max_image_size); 2 nothing could be decided (usage, a policy file that
cannot be used, an unreachable registry, an image not stored).

Registry credentials: --creds USER:PASS puts the password where every
user of the host can read it (ps, /proc/PID/cmdline, shell history);
prefer --creds-file FILE, a file holding USER:PASS (one trailing newline
is ignored), or --creds - to read USER:PASS from standard input.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			auth, err := checkCredentials(cmd, creds, credsFile, stored)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "crivet policy check:", err)
				return exitCode(2)
			}
			code, err := runPolicyCheck(cmd, args[0], namespace, podConfig, auth, stored, asJSON)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "crivet policy check:", err)
				return exitCode(2)
			}
			if code != 0 {
				return exitCode(code)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&namespace, "namespace", "", "the pod's namespace (overrides --pod-config)")
	f.StringVar(&podConfig, "pod-config", "", "a CRI PodSandboxConfig, JSON or YAML as crictl takes it; its metadata.namespace is used")
	f.StringVar(&creds, "creds", "", `registry credentials USER:PASS, visible to other users in ps; "-" reads USER:PASS from standard input (default: global_auth_file, as a pull without credentials)`)
	f.StringVar(&credsFile, "creds-file", "", "read the registry credentials USER:PASS from FILE (one trailing newline ignored)")
	f.BoolVar(&stored, "stored", false, "check a container create of the image already in the store, offline")
	f.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	return cmd
}

// maxCredsSize bounds what --creds-file and --creds - read: credentials
// are a line, and a mistaken path (a device, a log) must not be slurped.
const maxCredsSize = 64 << 10

// checkCredentials reads --creds or --creds-file: nil when neither is set.
func checkCredentials(cmd *cobra.Command, creds, credsFile string, stored bool) (*image.Auth, error) {
	flag := "--creds"
	switch {
	case creds != "" && credsFile != "":
		return nil, errors.New("--creds and --creds-file: give one")
	case creds == "" && credsFile == "":
		return nil, nil
	case credsFile != "":
		flag = "--creds-file"
	}
	if stored {
		return nil, fmt.Errorf("%s: a stored check is offline, it contacts no registry", flag)
	}
	var data []byte
	switch {
	case credsFile != "":
		f, err := os.Open(credsFile)
		if err != nil {
			return nil, fmt.Errorf("--creds-file: %w", err)
		}
		defer f.Close()
		if data, err = readCreds(f); err != nil {
			return nil, fmt.Errorf("--creds-file %s: %w", credsFile, err)
		}
	case creds == "-":
		var err error
		if data, err = readCreds(cmd.InOrStdin()); err != nil {
			return nil, fmt.Errorf("--creds -: standard input: %w", err)
		}
	default:
		data = []byte(creds)
	}
	user, pass, ok := strings.Cut(string(data), ":")
	if !ok {
		// Never echo the content: it may be a password without its user.
		return nil, fmt.Errorf("%s: want USER:PASS", flag)
	}
	return &image.Auth{Username: user, Password: pass}, nil
}

// readCreds reads USER:PASS, less one trailing newline (\n or \r\n, as
// echo and editors leave): any other byte may belong to the password.
func readCreds(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxCredsSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxCredsSize {
		return nil, fmt.Errorf("more than %d bytes: not USER:PASS", maxCredsSize)
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	return data, nil
}

func runPolicyCheck(cmd *cobra.Command, ref, namespace, podConfig string, auth *image.Auth, stored, asJSON bool) (int, error) {
	cfg, _, err := loadConfig(cmd.Flags())
	if err != nil {
		return 0, err
	}
	if err := cfg.validate(); err != nil {
		return 0, err
	}
	ns := ""
	if podConfig != "" {
		if ns, err = podNamespace(podConfig); err != nil {
			return 0, err
		}
	}
	if cmd.Flags().Changed("namespace") {
		ns = namespace
	}
	log, _, err := newLogger(cfg, cmd.ErrOrStderr())
	if err != nil {
		return 0, err
	}
	policies := policy.NewStore(cfg.SignaturePolicy, cfg.SignaturePolicyDir)
	policies.SetModes(cfg.policyModes())
	checker, err := image.NewChecker(image.Config{
		Root: cfg.Root, RunRoot: cfg.RunRoot, Driver: cfg.StorageDriver,
		RegistriesConf: cfg.RegistriesConf, RegistriesD: cfg.RegistriesD, AuthFile: cfg.GlobalAuthFile,
		Policies: policies, Logger: log,
		PullProgressTimeout: time.Duration(cfg.PullProgressTimeout), MaxImageSize: cfg.MaxImageSize, MaxLayers: cfg.MaxLayers,
	})
	if err != nil {
		return 0, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var res image.CheckResult
	if stored {
		res, _ = checker.CheckStored(ctx, ns, ref)
	} else {
		res, _ = checker.Check(ctx, image.PullRequest{Ref: ref, Namespace: ns, Auth: auth})
	}
	out := cmd.OutOrStdout()
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return 0, err
		}
	} else {
		printCheck(out, res, cfg.SignaturePolicy)
	}
	switch res.Outcome {
	case "allowed", "warned":
		return 0, nil
	case "rejected":
		return 1, nil
	}
	return 2, nil
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
	// The bundles are aligned on their own, so that their longer keys do
	// not widen the summary above.
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, b := range r.Bundles {
		printBundle(line, i+1, b)
	}
	_ = tw.Flush()
}

// printBundle shows one sigstore bundle of a check under "bundle N".
func printBundle(line func(k, v string), n int, b image.BundleCheck) {
	line(fmt.Sprintf("bundle %d", n), b.Digest)
	line("  verified as", b.VerifiedAs)
	line("  found", fmt.Sprintf("%s in %s, for the %s %s", b.Source, b.Repository, b.FoundVia, b.FoundFor))
	if b.Subject != "" {
		signs := b.Subject + " (the manifest)"
		if b.ViaIndex {
			signs = b.Subject + " (the index the manifest was chosen from)"
		}
		line("  signs", signs)
	}
	if s := b.Signer; s != nil {
		if s.Key != "" {
			line("  signer", "key "+s.Key)
		} else {
			line("  signer", s.SAN+" (issuer "+s.Issuer+")")
			line("  source repository", strings.TrimSpace(s.SourceRepositoryURI+" "+s.SourceRepositoryRef))
			line("  build signer", s.BuildSignerURI)
		}
	}
	for _, e := range b.TransparencyLog {
		at := ""
		if !e.IntegratedTime.IsZero() {
			at = ", integrated " + e.IntegratedTime.UTC().Format(time.RFC3339)
		}
		line("  log entry", fmt.Sprintf("%s #%d (%s%s)", e.LogID, e.Index, e.Kind, at))
	}
	for _, ts := range b.Timestamps {
		line("  timestamp", ts.UTC().Format(time.RFC3339))
	}
	switch b.Outcome {
	case "rejected":
		line("  outcome", "rejected ("+b.ReasonClass+")")
	case "not_used":
		line("  outcome", "not used")
	default:
		line("  outcome", b.Outcome)
	}
	line("  reason", b.Reason)
}
