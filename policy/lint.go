package policy

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/crivet/crivet/policy/bundle"
	"go.podman.io/image/v5/signature"
)

// Finding is one thing Lint has to say about a policy file.
type Finding struct {
	File string `json:"file"`
	// Severity is "error" (the file, or a file it names, cannot work: every
	// pull under it fails) or "warning" (it works, but likely not as meant).
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

func (f Finding) String() string { return f.Severity + ": " + f.File + ": " + f.Message }

// Lint checks the global policy and every file of the namespace directory
// as crivet would use them: each parses (unknown keys and requirement
// types are errors, as in the library), each key, CA and keyring file it
// names exists and parses, each file name is a namespace crivet would ever
// look up, and no namespace file accepts unsigned images for a scope where
// the global policy requires more (a warning: it may be meant). dir may be
// empty; a missing global file is an error.
func Lint(globalPath, dir string) []Finding {
	var out []Finding
	global, fs := lintFile(globalPath)
	out = append(out, fs...)
	if dir == "" {
		return out
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			out = append(out, Finding{dir, "error", err.Error()})
		}
		return out
	}
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		ns, isJSON := strings.CutSuffix(e.Name(), ".json")
		if !isJSON {
			out = append(out, Finding{path, "warning", "not a <namespace>.json file: never used"})
			continue
		}
		if err := ValidateNamespace(ns); err != nil {
			out = append(out, Finding{path, "warning", fmt.Sprintf("%q is not a namespace name: the file is never used", ns)})
			continue
		}
		p, fs := lintFile(path)
		out = append(out, fs...)
		if p != nil && global != nil {
			out = append(out, looserThanGlobal(path, p, global)...)
		}
	}
	return out
}

// lintFile parses one policy file and checks the files it names.
func lintFile(path string) (*signature.Policy, []Finding) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, []Finding{{path, "error", err.Error()}}
	}
	forLibrary, bundles, err := extractBundles(data)
	if err != nil {
		return nil, []Finding{{path, "error", err.Error()}}
	}
	p, err := signature.NewPolicyFromBytes(forLibrary)
	if err != nil {
		return nil, []Finding{{path, "error", err.Error()}}
	}
	var out []Finding
	var reqs map[string][]*bundle.Requirement
	if bundles != nil {
		reqs = bundles.reqs
		out = append(out, Finding{path, "warning", "uses sigstoreBundle requirements: crivet reads this file, podman, CRI-O and skopeo refuse it"})
	}
	for _, key := range sortedKeys(reqs) {
		scope := strings.ReplaceAll(key, "\x00", " ")
		for _, req := range reqs[key] {
			var warnings []string
			if prep, err := bundle.Prepare(req); err != nil {
				out = append(out, Finding{path, "error", fmt.Sprintf("sigstoreBundle in %s: %v", scope, err)})
			} else {
				warnings = prep.Warnings()
			}
			for _, w := range append(req.Lint(), warnings...) {
				out = append(out, Finding{path, "warning", fmt.Sprintf("sigstoreBundle in %s: %s", scope, w)})
			}
		}
	}
	for _, ref := range namedFiles(data) {
		if ref.reqType == BundleRequirementType && ref.key == "trustedRootPath" {
			continue // read by bundle.Prepare above
		}
		if err := checkNamedFile(ref); err != nil {
			out = append(out, Finding{path, "error", fmt.Sprintf("%s %s: %v", ref.key, ref.path, err)})
		}
	}
	return p, out
}

// namedFile is a file a requirement names, with what it must hold.
type namedFile struct {
	key, path, reqType string
}

// namedFiles lists every file a policy document names, with the key and
// the requirement type naming it (see referencedFiles).
func namedFiles(data []byte) []namedFile {
	var doc any
	if json.Unmarshal(data, &doc) != nil {
		return nil
	}
	var out []namedFile
	var walk func(v any, reqType string)
	walk = func(v any, reqType string) {
		switch t := v.(type) {
		case map[string]any:
			if ty, ok := t["type"].(string); ok {
				reqType = ty
			}
			for k, e := range t {
				switch {
				case strings.HasSuffix(k, "Path"):
					if s, ok := e.(string); ok && s != "" {
						out = append(out, namedFile{k, s, reqType})
					}
				case strings.HasSuffix(k, "Paths"):
					if l, ok := e.([]any); ok {
						for _, x := range l {
							if s, ok := x.(string); ok && s != "" {
								out = append(out, namedFile{k, s, reqType})
							}
						}
					}
				}
				walk(e, reqType)
			}
		case []any:
			for _, e := range t {
				walk(e, reqType)
			}
		}
	}
	walk(doc, "")
	slices.SortFunc(out, func(a, b namedFile) int { return strings.Compare(a.key+a.path, b.key+b.path) })
	return slices.Compact(out)
}

// checkNamedFile reads a named file and parses it as what its key says:
// a GPG keyring for signedBy keys, PEM certificates for CA files, a PEM
// public key otherwise (sigstore and Rekor keys).
func checkNamedFile(f namedFile) error {
	data, err := os.ReadFile(f.path)
	if err != nil {
		return err
	}
	switch {
	case f.reqType == "signedBy":
		if _, err := openpgp.ReadKeyRing(bytes.NewReader(data)); err != nil {
			if _, aerr := openpgp.ReadArmoredKeyRing(bytes.NewReader(data)); aerr != nil {
				return fmt.Errorf("not a GPG keyring: %w", err)
			}
		}
		return nil
	case strings.HasPrefix(strings.ToLower(f.key), "ca"):
		return parsePEM(data, "CERTIFICATE", func(b []byte) error { _, err := x509.ParseCertificate(b); return err })
	}
	return parsePEM(data, "PUBLIC KEY", func(b []byte) error { _, err := x509.ParsePKIXPublicKey(b); return err })
}

// parsePEM requires at least one block of the given type, each parsing.
func parsePEM(data []byte, blockType string, parse func([]byte) error) error {
	n := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != blockType {
			continue
		}
		if err := parse(b.Bytes); err != nil {
			return fmt.Errorf("%s: %w", blockType, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no PEM %s block", blockType)
	}
	return nil
}

// looserThanGlobal warns about docker scopes (and the default) where the
// namespace file accepts anything and the global policy does not.
func looserThanGlobal(path string, ns, global *signature.Policy) []Finding {
	var out []Finding
	check := func(scope string, nsReqs, globalReqs signature.PolicyRequirements) {
		if acceptsAnything(nsReqs) && !acceptsAnything(globalReqs) {
			what := "scope " + scope
			if scope == "" {
				what = "every docker image without a more specific scope"
			}
			out = append(out, Finding{path, "warning", fmt.Sprintf("accepts unsigned images for %s, where the global policy requires %s",
				what, strings.Join(typesOf(globalReqs), " + "))})
		}
	}
	gScopes := global.Transports["docker"]
	// The global requirement for a scope is that of the scope itself or of
	// its nearest enclosing one (repository without tag or digest, then
	// each parent namespace, then the registry), as for an image reference.
	globalFor := func(scope string) signature.PolicyRequirements {
		for s := scope; s != ""; s = parentScope(s) {
			if r, ok := gScopes[s]; ok {
				return r
			}
		}
		if r, ok := gScopes[""]; ok {
			return r
		}
		return global.Default
	}
	scopes := ns.Transports["docker"]
	names := make([]string, 0, len(scopes))
	for s := range scopes {
		names = append(names, s)
	}
	slices.Sort(names)
	for _, s := range names {
		check(s, scopes[s], globalFor(s))
	}
	if _, ok := scopes[""]; !ok && acceptsAnything(ns.Default) {
		check("", ns.Default, globalFor(""))
	}
	return out
}

func acceptsAnything(reqs signature.PolicyRequirements) bool {
	t := typesOf(reqs)
	return len(t) > 0 && !slices.ContainsFunc(t, func(s string) bool { return s != "insecureAcceptAnything" })
}

func typesOf(reqs signature.PolicyRequirements) []string {
	var out []string
	for _, r := range reqs {
		var t struct {
			Type string `json:"type"`
		}
		if b, err := json.Marshal(r); err == nil && json.Unmarshal(b, &t) == nil {
			out = append(out, t.Type)
		}
	}
	return out
}

// parentScope is the docker scope enclosing s: "reg/ns/repo:tag" →
// "reg/ns/repo" → "reg/ns" → "reg" → "".
func parentScope(s string) string {
	if i := strings.LastIndex(s, "@"); i >= 0 {
		return s[:i]
	}
	slash := strings.LastIndex(s, "/")
	if i := strings.LastIndex(s, ":"); i > slash && slash >= 0 {
		return s[:i]
	}
	if slash < 0 {
		return ""
	}
	return s[:slash]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
