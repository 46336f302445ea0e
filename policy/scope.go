package policy

import (
	"fmt"

	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

// Scope is the part of a policy that decides for one image: the scope
// whose requirements apply to it, and their types.
type Scope struct {
	// Transport is the transport whose scopes were searched ("docker").
	Transport string
	// Name is the scope that matched: a repository with its tag or
	// digest, a repository, a namespace, a registry, or "" for the
	// transport's catch-all scope. Empty when Default is set.
	Name string
	// Default: no scope of the transport matched, so the policy's
	// "default" requirements apply.
	Default bool
	// Requirements are the types of the scope's requirements, in order
	// ("sigstoreSigned", "signedBy", "reject", "insecureAcceptAnything"):
	// every one of them must accept for the image to be admitted.
	Requirements []string
}

// String names the scope as an operator finds it in the file:
// `docker: "reg.example/team"`, `docker: ""`, or `default`.
func (s Scope) String() string {
	if s.Default || s.Transport == "" {
		return "default"
	}
	return fmt.Sprintf("%s: %q", s.Transport, s.Name)
}

// ScopeFor finds the scope that applies to ref as containers-policy.json(5)
// says: the transport's most specific matching scope (the reference
// itself, then its enclosing namespaces), then the transport's "" scope,
// then the policy's default.
//
// Requirements name what the file says: a scope's sigstoreBundle
// requirements are listed as such (the library, which cannot read them,
// sees a reject standing in for a scope that has nothing else), so the
// audit log and the decision log name the rule that decided.
func (p *Policy) ScopeFor(ref types.ImageReference) Scope {
	s := p.scopeFor(ref)
	if p == nil || p.bundles == nil {
		return s
	}
	key := scopeKey(s)
	n := len(p.bundles.reqs[key])
	if n == 0 {
		return s
	}
	if p.bundles.only[key] {
		s.Requirements = nil
	}
	for range n {
		s.Requirements = append(s.Requirements, BundleRequirementType)
	}
	return s
}

// scopeFor is ScopeFor as the library sees the file (bundle requirements
// taken out).
func (p *Policy) scopeFor(ref types.ImageReference) Scope {
	if p == nil || p.parsed == nil || ref == nil {
		return Scope{}
	}
	transport := ref.Transport().Name()
	if scopes, ok := p.parsed.Transports[transport]; ok {
		if name, r, ok := scopeRequirements(scopes, ref); ok {
			return Scope{Transport: transport, Name: name, Requirements: typesOf(r)}
		}
	}
	return Scope{Default: true, Requirements: typesOf(p.parsed.Default)}
}

// RequirementTypes names the requirements of the scope that applies to ref.
func (p *Policy) RequirementTypes(ref types.ImageReference) []string {
	return p.ScopeFor(ref).Requirements
}

func scopeRequirements(scopes signature.PolicyTransportScopes, ref types.ImageReference) (string, signature.PolicyRequirements, bool) {
	if id := ref.PolicyConfigurationIdentity(); id != "" {
		if r, ok := scopes[id]; ok {
			return id, r, true
		}
	}
	for _, ns := range ref.PolicyConfigurationNamespaces() {
		if r, ok := scopes[ns]; ok {
			return ns, r, true
		}
	}
	r, ok := scopes[""]
	return "", r, ok
}
