package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/crivet/crivet/policy/bundle"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"
)

// BundleRequirementType is crivet's requirement for Sigstore bundles (what
// cosign v3 writes by default), which go.podman.io/image does not know.
//
// Its meaning inside a scope: the scope's sigstoreBundle requirements are
// alternatives to the rest of the scope. The image is admitted when the
// library admits it under the scope's other requirements (all of them, as
// containers-policy.json(5) says), or when one bundle satisfies one of the
// scope's sigstoreBundle requirements. A scope with only sigstoreBundle
// requirements admits nothing else. So `[{"type":"sigstoreSigned",…},
// {"type":"sigstoreBundle",…}]` accepts a legacy cosign signature or a v3
// bundle.
//
// A file that uses it is crivet's: podman, CRI-O and skopeo refuse to parse
// it ("unknown policy requirement type"). A file without it stays readable
// by them byte for byte.
const BundleRequirementType = "sigstoreBundle"

// BundleSource is what an image offers the policy when bundles may decide:
// the image being checked implements it (a pull finds bundles in the
// registry; the create-time check reads those kept at pull).
type BundleSource interface {
	// SigstoreBundles returns the bundles found for the image. An error
	// (a registry that failed) is never read as "no bundle".
	SigstoreBundles(ctx context.Context) ([][]byte, error)
	// BundleSubjects are the digests a bundle's subject may name besides
	// the manifest's own: the index the manifest was chosen from.
	BundleSubjects() []digest.Digest
}

// scopeKey names a scope in bundleReqs: "default", or transport and name.
func scopeKey(s Scope) string {
	if s.Default || s.Transport == "" {
		return "default"
	}
	return s.Transport + "\x00" + s.Name
}

// extractBundles takes the sigstoreBundle requirements out of a policy
// document: it returns the document the library parses (each such
// requirement removed; a list left empty becomes a reject, so the library
// alone admits nothing there) and the requirements by scope. A document
// without them is returned unchanged.
func extractBundles(data []byte) ([]byte, *bundleScopes, error) {
	if !bytes.Contains(data, []byte(BundleRequirementType)) {
		return data, nil, nil
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return data, nil, nil // the library reports the syntax error
	}
	reqs := map[string][]*bundle.Requirement{}
	only := map[string]bool{}
	split := func(key string, raw json.RawMessage) (json.RawMessage, error) {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return raw, nil // the library reports the shape error
		}
		var keep []json.RawMessage
		for _, r := range list {
			var head struct {
				Type string `json:"type"`
			}
			if json.Unmarshal(r, &head) == nil && head.Type == BundleRequirementType {
				req, err := bundle.ParseRequirement(r)
				if err != nil {
					return nil, err
				}
				reqs[key] = append(reqs[key], req)
				continue
			}
			keep = append(keep, r)
		}
		if len(keep) == len(list) {
			return raw, nil
		}
		if len(keep) == 0 {
			keep = []json.RawMessage{json.RawMessage(`{"type":"reject"}`)}
			only[key] = true
		}
		return json.Marshal(keep)
	}
	if raw, ok := doc["default"]; ok {
		out, err := split("default", raw)
		if err != nil {
			return nil, nil, fmt.Errorf("default: %w", err)
		}
		doc["default"] = out
	}
	if raw, ok := doc["transports"]; ok {
		var transports map[string]map[string]json.RawMessage
		if err := json.Unmarshal(raw, &transports); err == nil {
			for t, scopes := range transports {
				for name, list := range scopes {
					out, err := split(t+"\x00"+name, list)
					if err != nil {
						return nil, nil, fmt.Errorf("transports.%s.%q: %w", t, name, err)
					}
					scopes[name] = out
				}
			}
			if doc["transports"], err = json.Marshal(transports); err != nil {
				return nil, nil, err
			}
		}
	}
	if len(reqs) == 0 {
		return data, nil, nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, nil, err
	}
	return out, &bundleScopes{reqs: reqs, only: only}, nil
}

// bundleScopes are a policy's sigstoreBundle requirements by scope key,
// and the scopes that have no other requirement.
type bundleScopes struct {
	reqs map[string][]*bundle.Requirement
	only map[string]bool
}

// BundleRequirements are the sigstoreBundle requirements of the scope
// that applies to ref, and whether the scope has no other requirement.
func (p *Policy) BundleRequirements(ref types.ImageReference) (reqs []*bundle.Requirement, only bool) {
	if p == nil || p.bundles == nil {
		return nil, false
	}
	key := scopeKey(p.scopeFor(ref))
	return p.bundles.reqs[key], p.bundles.only[key]
}

// BundleOutcome is one bundle's verdict under a scope's sigstoreBundle
// requirements, as checkBundles reached it.
type BundleOutcome struct {
	// Index is the bundle's position in what SigstoreBundles returned.
	Index int
	// Result is what the bundle proved, when Err is nil.
	Result bundle.Result
	// Err is why no requirement accepted the bundle (bundle.ReasonOf
	// classes it); nil: it admits the image.
	Err error
}

type bundleObserverKey struct{}

// WithBundleObserver returns a context under which Policy.Check reports
// each bundle it verifies to fn, in order, from the calling goroutine.
// Observing changes no decision, but it does make the check verify every
// bundle instead of stopping at the first one that admits, so that each
// has a verdict to show (crivet policy check); admissions do not use it.
func WithBundleObserver(ctx context.Context, fn func(BundleOutcome)) context.Context {
	return context.WithValue(ctx, bundleObserverKey{}, fn)
}

// checkBundles is the alternative the scope's sigstoreBundle requirements
// offer once the library refused: nil when one bundle satisfies one of
// them. The error says why none did.
func (p *Policy) checkBundles(ctx context.Context, img types.UnparsedImage, reqs []*bundle.Requirement) error {
	src, ok := img.(BundleSource)
	if !ok {
		return errors.New("no sigstore bundle can be read for this image")
	}
	blob, _, err := img.Manifest(ctx)
	if err != nil {
		return fmt.Errorf("sigstore bundles: %w", err)
	}
	md, err := manifest.Digest(blob)
	if err != nil {
		return fmt.Errorf("sigstore bundles: %w", err)
	}
	bundles, err := src.SigstoreBundles(ctx)
	if err != nil {
		return fmt.Errorf("sigstore bundles: %w", err)
	}
	if len(bundles) == 0 {
		return errNoBundle
	}
	observe, _ := ctx.Value(bundleObserverKey{}).(func(BundleOutcome))
	// Per bundle: the result that admitted it, or each requirement's
	// refusal, so an observer gets one verdict per bundle.
	admitted := make([]*bundle.Result, len(bundles))
	refusals := make([][]error, len(bundles))
	var why []error
	for _, req := range reqs {
		prep, err := bundle.Prepare(req)
		if err != nil {
			why = append(why, err)
			for i := range bundles {
				refusals[i] = append(refusals[i], err)
			}
			continue
		}
		for i, b := range bundles {
			if admitted[i] != nil {
				continue
			}
			res, err := prep.Verify(ctx, b, md, src.BundleSubjects())
			if err == nil {
				admitted[i] = &res
				if observe == nil {
					return nil
				}
				continue
			}
			why = append(why, err)
			refusals[i] = append(refusals[i], err)
		}
	}
	ok = false
	for i := range bundles {
		out := BundleOutcome{Index: i}
		if admitted[i] != nil {
			ok = true
			out.Result = *admitted[i]
		} else {
			out.Err = errors.Join(refusals[i]...)
		}
		if observe != nil {
			observe(out)
		}
	}
	if ok {
		return nil
	}
	return &bundlesRefused{n: len(bundles), why: why}
}

// errNoBundle: the registry (or, at create, the store) has no bundle for
// the image.
var errNoBundle = errors.New("no sigstore bundle exists")

// bundlesRefused says why each bundle was refused; errors.As finds the
// first refusal's class.
type bundlesRefused struct {
	n   int
	why []error
}

func (e *bundlesRefused) Error() string {
	texts := make([]string, len(e.why))
	for i, w := range e.why {
		texts[i] = w.Error()
	}
	return fmt.Sprintf("none of %d sigstore bundles was accepted: %s", e.n, strings.Join(texts, "; "))
}

func (e *bundlesRefused) Unwrap() []error { return e.why }
