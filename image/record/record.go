// Package record holds the data the image store keeps about an image
// beyond its content: its provenance (Record), the signature sets and
// Sigstore bundles kept with it, and the CRI-facing view of it (Image).
// It is data only: the store (package image) reads and writes it, and the
// trust decisions (package image/trust) read it, so neither has to import
// the other to share it.
package record

import (
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Image is the CRI-facing view of a stored image.
type Image struct {
	// ID is the image's config digest, "sha256:<hex>"; it is what
	// PullImage returns, ListImages lists and containers report.
	ID          string
	RepoTags    []string
	RepoDigests []string
	Size        uint64
	// User is the image config's User ("1000", "www-data:1004", "").
	User   string
	Record *Record
}

// StorageID is the id of the image inside containers/storage.
func (i *Image) StorageID() string { return strings.TrimPrefix(i.ID, "sha256:") }

// Record is what crivet knows about an image beyond its content.
type Record struct {
	// ManifestDigest is the per-platform manifest that was verified and stored.
	ManifestDigest digest.Digest `json:"manifestDigest"`
	// IndexDigest is the image index the manifest was chosen from, if any.
	IndexDigest digest.Digest `json:"indexDigest,omitempty"`
	// References are every reference the image was pulled by.
	References []Reference `json:"references"`
	// Decisions hold the latest policy decision per namespace that pulled it.
	Decisions []Decision `json:"decisions"`
	// User is the image config's User, for CRI's uid/username.
	User string `json:"user,omitempty"`
}

// Reference is one piece of provenance: the image was pulled from a
// registry as Resolved, or imported from an archive under that name. It is
// what the create-time check verifies the image as, and the only way a name
// finds an image (besides a name in the store that no record explains, which
// finds the image but admits nothing).
type Reference struct {
	// User is the reference as the client wrote it ("busybox", "reg/x:1");
	// informational: lookups resolve the client's text afresh, the way the
	// pull does, and match Resolved.
	User string `json:"user"`
	// Resolved is the fully qualified reference it was pulled as.
	Resolved string    `json:"resolved"`
	Pulled   time.Time `json:"pulled"`
	// Import is set when the image came under this name from an archive,
	// not from a registry.
	Import *ImportSource `json:"import,omitempty"`
	// Manifest is the per-platform manifest verified for this reference
	// (records written before it existed use Record.ManifestDigest), and
	// Index the index it was chosen from. A later pull of another manifest
	// of the same image adds a reference; it never replaces this one.
	Manifest digest.Digest `json:"manifest,omitempty"`
	Index    digest.Digest `json:"index,omitempty"`
	// Signatures is the digest of the signature set stored for Manifest
	// when this reference was admitted; that set is never evicted while
	// the reference is recorded.
	Signatures digest.Digest `json:"signatures,omitempty"`
	// Formerly: the name has since moved to another image (its tag was
	// pulled again). Kept as provenance for verifying this image by ID,
	// never used to find it.
	Formerly bool `json:"formerly,omitempty"`
}

// ManifestFor is the manifest verified for this reference of rec.
func (r *Reference) ManifestFor(rec *Record) digest.Digest {
	switch {
	case r.Import != nil && r.Import.Manifest != "":
		return r.Import.Manifest
	case r.Manifest != "":
		return r.Manifest
	}
	return rec.VerifiedManifest()
}

// IndexFor is the index this reference's manifest was chosen from, if any.
func (r *Reference) IndexFor(rec *Record) digest.Digest {
	if r.Manifest != "" || r.Import != nil {
		return r.Index
	}
	return rec.IndexDigest // a record from before per-reference manifests
}

// SameFact: two references record one fact (same name, same source, same
// manifest); a new one replaces the old, any other difference adds.
func (r *Reference) SameFact(o *Reference, rec *Record) bool {
	if r.Resolved != o.Resolved || (r.Import == nil) != (o.Import == nil) {
		return false
	}
	if r.Import != nil && r.Import.String() != o.Import.String() {
		return false
	}
	return r.ManifestFor(rec) == o.ManifestFor(rec)
}

// ImportSource is the archive an image was imported from, as the policy
// saw it then: the create-time check evaluates the policy for this very
// transport and scope, even after the file is gone.
type ImportSource struct {
	// Transport is "docker-archive", "oci-archive" or "oci".
	Transport string `json:"transport"`
	// Path is the archive (or layout directory) as an absolute path.
	Path string `json:"path"`
	// Name is the name the archive gave the image (or --name), normalised.
	Name string `json:"name"`
	// Manifest is the manifest verified at import.
	Manifest digest.Digest `json:"manifest"`
	// PolicyIdentity, PolicyNamespaces and DockerReference are the
	// library's reference's answers for the archive at import time.
	PolicyIdentity   string   `json:"policyIdentity,omitempty"`
	PolicyNamespaces []string `json:"policyNamespaces,omitempty"`
	DockerReference  string   `json:"dockerReference,omitempty"`
}

// String is how logs and admissions name the source.
func (i *ImportSource) String() string { return i.Transport + ":" + i.Path + ":" + i.Name }

// Decision is one namespace's verdict on the image at pull time.
type Decision struct {
	Namespace    string        `json:"namespace"`
	PolicyPath   string        `json:"policyPath"`
	PolicyDigest digest.Digest `json:"policyDigest"`
	Reference    string        `json:"reference"`
	Allowed      bool          `json:"allowed"`
	// Signatures is the digest of the signature set this namespace's
	// admission was made with; never evicted while the decision stands.
	Signatures digest.Digest `json:"signatures,omitempty"`
	// Warning is the reason of a refusal that warn mode admitted.
	Warning string    `json:"warning,omitempty"`
	Time    time.Time `json:"time"`
}

// VerifiedManifest is the record's verified manifest; "" for no record.
func (r *Record) VerifiedManifest() digest.Digest {
	if r == nil {
		return ""
	}
	return r.ManifestDigest
}

// AddReference records ref, replacing only a reference of the same fact
// (name, source and manifest): a pull and an import under one name, or
// two manifests pulled under one name, are different facts and all stay.
// A name recorded again is current again.
func (r *Record) AddReference(ref Reference) {
	r.References = slices.DeleteFunc(r.References, func(x Reference) bool { return x.SameFact(&ref, r) })
	r.References = append(r.References, ref)
}

// MarkFormerly marks the current references whose name is resolved as
// formerly this image's; it reports whether any changed.
func (r *Record) MarkFormerly(resolved string) bool {
	changed := false
	for i := range r.References {
		if x := &r.References[i]; x.Resolved == resolved && !x.Formerly {
			x.Formerly, changed = true, true
		}
	}
	return changed
}

// PinnedSignatures are the signature sets the recorded references and
// each namespace's latest decision were admitted with.
func (r *Record) PinnedSignatures() map[digest.Digest]bool {
	pins := map[digest.Digest]bool{}
	for _, x := range r.References {
		if x.Signatures != "" {
			pins[x.Signatures] = true
		}
	}
	for _, d := range r.Decisions {
		if d.Signatures != "" {
			pins[d.Signatures] = true
		}
	}
	return pins
}

// AddDecision records d as its namespace's latest decision.
func (r *Record) AddDecision(d Decision) {
	r.Decisions = slices.DeleteFunc(r.Decisions, func(x Decision) bool { return x.Namespace == d.Namespace })
	r.Decisions = append(r.Decisions, d)
}

// Clone is a copy that shares no slice with r.
func (r *Record) Clone() *Record {
	c := *r
	c.References = slices.Clone(r.References)
	c.Decisions = slices.Clone(r.Decisions)
	return &c
}

// Migrate gives references recorded before per-reference manifests the
// record's manifest, which was the last one verified for all of them: the
// nearest truth there is, and what those records were verified as before.
func (r *Record) Migrate() {
	for i := range r.References {
		x := &r.References[i]
		if x.Import == nil && x.Manifest == "" {
			x.Manifest, x.Index = r.ManifestDigest, r.IndexDigest
		}
	}
}
