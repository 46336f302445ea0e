package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	"go.podman.io/storage"
)

// recordKey is the big-data item of a storage image that holds its Record.
// Keeping the record inside the image makes it vanish atomically with it.
const recordKey = "crivet-record"

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

// manifest is the manifest verified for this reference.
func (r *Reference) manifest(rec *Record) digest.Digest {
	switch {
	case r.Import != nil && r.Import.Manifest != "":
		return r.Import.Manifest
	case r.Manifest != "":
		return r.Manifest
	}
	return rec.manifestDigest()
}

// index is the index this reference's manifest was chosen from, if any.
func (r *Reference) index(rec *Record) digest.Digest {
	if r.Manifest != "" || r.Import != nil {
		return r.Index
	}
	return rec.IndexDigest // a record from before per-reference manifests
}

// sameFact: two references record one fact (same name, same source, same
// manifest); a new one replaces the old, any other difference adds.
func (r *Reference) sameFact(o *Reference, rec *Record) bool {
	if r.Resolved != o.Resolved || (r.Import == nil) != (o.Import == nil) {
		return false
	}
	if r.Import != nil && r.Import.String() != o.Import.String() {
		return false
	}
	return r.manifest(rec) == o.manifest(rec)
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

// addReference records ref, replacing only a reference of the same fact
// (name, source and manifest): a pull and an import under one name, or
// two manifests pulled under one name, are different facts and all stay.
// A name recorded again is current again.
func (r *Record) addReference(ref Reference) {
	r.References = slices.DeleteFunc(r.References, func(x Reference) bool { return x.sameFact(&ref, r) })
	r.References = append(r.References, ref)
}

// markFormerly marks the current references whose name is resolved as
// formerly this image's; it reports whether any changed.
func (r *Record) markFormerly(resolved string) bool {
	changed := false
	for i := range r.References {
		if x := &r.References[i]; x.Resolved == resolved && !x.Formerly {
			x.Formerly, changed = true, true
		}
	}
	return changed
}

// pinnedSignatures are the signature sets the recorded references and
// each namespace's latest decision were admitted with.
func (r *Record) pinnedSignatures() map[digest.Digest]bool {
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

func (r *Record) addDecision(d Decision) {
	r.Decisions = slices.DeleteFunc(r.Decisions, func(x Decision) bool { return x.Namespace == d.Namespace })
	r.Decisions = append(r.Decisions, d)
}

func (r *Record) clone() *Record {
	c := *r
	c.References = slices.Clone(r.References)
	c.Decisions = slices.Clone(r.Decisions)
	return &c
}

// cachedRecord is a record with the digest of the item it was read from.
type cachedRecord struct {
	digest digest.Digest
	rec    *Record
}

// record returns the image's record (a copy), reading it from disk only
// when its item changed: another process (crivet image import) may write
// records into the store this daemon serves.
func (s *Service) record(id string) (*Record, error) {
	img, err := s.store.Image(id)
	if err != nil {
		if errors.Is(err, storage.ErrImageUnknown) || errors.Is(err, storage.ErrNotAnImage) {
			return nil, fmt.Errorf("image %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("image %s: %w", id, err)
	}
	return s.recordOf(img)
}

// recordOf is record for an image already looked up. An image without a
// record item (stored by another tool) gets an empty record.
func (s *Service) recordOf(img *storage.Image) (*Record, error) {
	id, d := img.ID, img.BigDataDigests[recordKey]
	s.recMu.Lock()
	c, ok := s.records[id]
	s.recMu.Unlock()
	if ok && c.digest == d {
		return c.rec.clone(), nil
	}
	r := &Record{}
	if d != "" {
		data, err := s.store.ImageBigData(id, recordKey)
		switch {
		case err == nil:
			if err := json.Unmarshal(data, r); err != nil {
				return nil, fmt.Errorf("image %s: corrupt record: %w", id, err)
			}
			r.migrate()
			// The item read may be newer than img; its own digest keys it.
			d = digest.FromBytes(data)
		case errors.Is(err, storage.ErrImageUnknown):
			return nil, fmt.Errorf("image %s: %w", id, ErrNotFound)
		default:
			return nil, fmt.Errorf("image %s: read record: %w", id, err)
		}
	}
	s.recMu.Lock()
	s.records[id] = cachedRecord{digest: d, rec: r}
	s.recMu.Unlock()
	return r.clone(), nil
}

// saveRecord writes the record into the image (storage writes big data
// atomically) and then the cache. Callers hold the image's lock.
func (s *Service) saveRecord(id string, r *Record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := s.store.SetImageBigData(id, recordKey, data, nil); err != nil {
		return fmt.Errorf("image %s: save record: %w", id, err)
	}
	s.recMu.Lock()
	s.records[id] = cachedRecord{digest: digest.FromBytes(data), rec: r.clone()}
	s.recMu.Unlock()
	return nil
}

func (s *Service) forgetRecord(id string) {
	s.recMu.Lock()
	delete(s.records, id)
	s.recMu.Unlock()
}

// migrate gives references recorded before per-reference manifests the
// record's manifest, which was the last one verified for all of them: the
// nearest truth there is, and what those records were verified as before.
func (r *Record) migrate() {
	for i := range r.References {
		x := &r.References[i]
		if x.Import == nil && x.Manifest == "" {
			x.Manifest, x.Index = r.ManifestDigest, r.IndexDigest
		}
	}
}
