package trust

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/crivet/crivet/image/record"
	dockerarchive "go.podman.io/image/v5/docker/archive"
	"go.podman.io/image/v5/docker/reference"
	ociarchive "go.podman.io/image/v5/oci/archive"
	ocilayout "go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// The identity rule. One function, the store's resolve (Store.Resolve), turns a client's reference
// into an image for every caller (ImageStatus, RemoveImage, CreateContainer's
// image, user_specified_image and image volumes, crivet policy check), and it
// says how it found the image. The create-time check verifies exactly that:
//
//   - A name is resolved the way a pull resolves it (registries.conf
//     aliases and unqualified-search registries, else docker.io), giving
//     fully qualified candidates in the pull's order. The first candidate
//     that the store knows decides, and the image is verified as that very
//     candidate and as nothing else, under each piece of provenance the
//     record holds for it: pulled from its registry (verified with the
//     manifest and signatures that pull stored), or imported from an archive
//     (verified as that archive). A name the store carries but no record
//     explains (stored by another tool, or a digest no pull or import of
//     that name recorded) finds the image and admits nothing.
//   - An image ID (full, "sha256:" prefixed, or a unique prefix) says
//     nothing about where the image came from: it is verified as every
//     piece of provenance its record holds, including names that have since
//     moved to another image ("formerly"). An image with none is refused.
//
// There is no second normalisation, no fallback to a guessed name and no
// synthetic name.

// Match says how a reference found an image.
type Match int

const (
	ByReference Match = iota // a name the image is recorded as pulled or imported under
	ByStoreName              // a name the store carries that no record explains
	ByID                     // the image's ID, full or a unique prefix
)

func (m Match) String() string {
	switch m {
	case ByReference:
		return "recorded reference"
	case ByStoreName:
		return "stored name without provenance"
	}
	return "image ID"
}

// Found is the answer of the one lookup.
type Found struct {
	Img *storage.Image
	How Match
	// Name is the qualified candidate that found the image (a name match).
	Name reference.Named
	// Rec is the image's record as read by the lookup; Refs are its current
	// references for Name (ByReference only).
	Rec  *record.Record
	Refs []record.Reference
}

// Identities is what the found image is verified as, under the rule.
func (f *Found) Identities() []Identity {
	switch f.How {
	case ByReference:
		return identitiesOf(f.Rec, f.Refs, f.Name)
	case ByID:
		return recordedIdentities(f.Rec)
	}
	return nil
}

// identitiesOf turns references into identities: a pull is verified as
// name (the reference that found it) with the manifest that pull stored;
// an import as its archive. Duplicates are dropped.
func identitiesOf(rec *record.Record, refs []record.Reference, name reference.Named) []Identity {
	var out []Identity
	seen := map[string]bool{}
	for _, r := range refs {
		var id Identity
		if r.Import != nil {
			id = importIdentity(r.Import)
		} else {
			n := name
			if n == nil {
				parsed, err := reference.ParseNormalizedNamed(r.Resolved)
				if err != nil {
					continue
				}
				n = StripTagIfDigested(reference.TagNameOnly(parsed))
			}
			var ok bool
			if id, ok = dockerIdentity(n); !ok {
				continue
			}
			id.Manifest = r.ManifestFor(rec)
		}
		key := id.Ref.Transport().Name() + ":" + id.Name + "\x00" + string(id.Manifest)
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, id)
	}
	return out
}

// recordedIdentities: every piece of provenance the record holds, the
// current ones most recent first, then the former ones.
func recordedIdentities(rec *record.Record) []Identity {
	if rec == nil {
		return nil
	}
	refs := slices.Clone(rec.References)
	slices.Reverse(refs)
	slices.SortStableFunc(refs, func(a, b record.Reference) int {
		switch {
		case a.Formerly == b.Formerly:
			return 0
		case b.Formerly:
			return -1
		}
		return 1
	})
	return identitiesOf(rec, refs, nil)
}

// errNoProvenance explains a found image that the rule admits as nothing.
func errNoProvenance(f *Found, userRef string) error {
	if f.How == ByStoreName {
		return fmt.Errorf("image sha256:%s is stored as %s, but no pull or import of it under that name is recorded, so there is nothing to verify it as (reference %q)", f.Img.ID, f.Name, userRef)
	}
	return fmt.Errorf("image sha256:%s has no recorded provenance (no pull or import of it is recorded), so there is nothing to verify it as", f.Img.ID)
}

// importIdentity is the identity an imported image is verified as.
func importIdentity(src *record.ImportSource) Identity {
	return Identity{Name: src.String(), Ref: NewImportRef(src), Manifest: src.Manifest}
}

// ImportRef presents a recorded import source to the policy exactly as the
// library's reference for the archive did at import (transport, scope,
// Docker reference), without needing the file: it may be long gone when
// a container is created.
type ImportRef struct {
	src *record.ImportSource
}

// NewImportRef is the reference the policy sees for src.
func NewImportRef(src *record.ImportSource) *ImportRef { return &ImportRef{src: src} }

// Source is the recorded import source.
func (r *ImportRef) Source() *record.ImportSource { return r.src }

var importTransports = map[string]types.ImageTransport{
	dockerarchive.Transport.Name(): dockerarchive.Transport,
	ociarchive.Transport.Name():    ociarchive.Transport,
	ocilayout.Transport.Name():     ocilayout.Transport,
}

func (r *ImportRef) Transport() types.ImageTransport {
	if t, ok := importTransports[r.src.Transport]; ok {
		return t
	}
	// A transport this build does not know: no scope of a policy names
	// it, so only the policy's default applies.
	return unknownTransport(r.src.Transport)
}
func (r *ImportRef) StringWithinTransport() string { return r.src.Path + ":" + r.src.Name }
func (r *ImportRef) DockerReference() reference.Named {
	if r.src.DockerReference == "" {
		return nil
	}
	named, err := reference.ParseNormalizedNamed(r.src.DockerReference)
	if err != nil {
		return nil
	}
	return named
}
func (r *ImportRef) PolicyConfigurationIdentity() string     { return r.src.PolicyIdentity }
func (r *ImportRef) PolicyConfigurationNamespaces() []string { return r.src.PolicyNamespaces }

var errRecordedSource = errors.New("a recorded import source cannot be opened")

func (r *ImportRef) NewImage(context.Context, *types.SystemContext) (types.ImageCloser, error) {
	return nil, errRecordedSource
}
func (r *ImportRef) NewImageSource(context.Context, *types.SystemContext) (types.ImageSource, error) {
	return nil, errRecordedSource
}
func (r *ImportRef) NewImageDestination(context.Context, *types.SystemContext) (types.ImageDestination, error) {
	return nil, errRecordedSource
}
func (r *ImportRef) DeleteImage(context.Context, *types.SystemContext) error {
	return errRecordedSource
}

type unknownTransport string

func (t unknownTransport) Name() string { return string(t) }
func (t unknownTransport) ParseReference(string) (types.ImageReference, error) {
	return nil, errRecordedSource
}
func (t unknownTransport) ValidatePolicyConfigurationScope(string) error { return nil }
