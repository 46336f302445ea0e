package policy

import (
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

// RequirementTypes names the requirements of the scope that applies to
// ref ("sigstoreSigned", "signedBy", "reject", "insecureAcceptAnything"):
// every one of them had to accept for the image to be admitted. The scope
// is chosen as containers-policy.json(5) says: the transport's most
// specific matching scope (the reference itself, then its namespaces),
// then the transport's "" scope, then the policy's default.
func (p *Policy) RequirementTypes(ref types.ImageReference) []string {
	if p == nil || p.parsed == nil || ref == nil {
		return nil
	}
	reqs := p.parsed.Default
	if scopes, ok := p.parsed.Transports[ref.Transport().Name()]; ok {
		if r, ok := scopeRequirements(scopes, ref); ok {
			reqs = r
		}
	}
	return typesOf(reqs)
}

func scopeRequirements(scopes signature.PolicyTransportScopes, ref types.ImageReference) (signature.PolicyRequirements, bool) {
	if r, ok := scopes[ref.PolicyConfigurationIdentity()]; ok {
		return r, true
	}
	for _, ns := range ref.PolicyConfigurationNamespaces() {
		if r, ok := scopes[ns]; ok {
			return r, true
		}
	}
	r, ok := scopes[""]
	return r, ok
}
