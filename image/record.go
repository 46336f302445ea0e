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

// Reference is one way a user named the image.
type Reference struct {
	// User is the reference as the client wrote it ("busybox", "reg/x:1").
	User string `json:"user"`
	// Resolved is the fully qualified reference it was pulled as.
	Resolved string    `json:"resolved"`
	Pulled   time.Time `json:"pulled"`
}

// Decision is one namespace's verdict on the image at pull time.
type Decision struct {
	Namespace    string        `json:"namespace"`
	PolicyPath   string        `json:"policyPath"`
	PolicyDigest digest.Digest `json:"policyDigest"`
	Reference    string        `json:"reference"`
	Allowed      bool          `json:"allowed"`
	// Warning is the reason of a refusal that warn mode admitted.
	Warning string    `json:"warning,omitempty"`
	Time    time.Time `json:"time"`
}

func (r *Record) addReference(ref Reference) {
	r.References = slices.DeleteFunc(r.References, func(x Reference) bool { return x.User == ref.User })
	r.References = append(r.References, ref)
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

// record returns the image's record (a copy), reading it once from disk.
// An image without one (created by another tool) gets an empty record.
func (s *Service) record(id string) (*Record, error) {
	s.recMu.Lock()
	r, ok := s.records[id]
	s.recMu.Unlock()
	if ok {
		return r.clone(), nil
	}
	data, err := s.store.ImageBigData(id, recordKey)
	switch {
	case err == nil:
		r = &Record{}
		if err := json.Unmarshal(data, r); err != nil {
			return nil, fmt.Errorf("image %s: corrupt record: %w", id, err)
		}
	case errors.Is(err, storage.ErrImageUnknown):
		return nil, fmt.Errorf("image %s: %w", id, ErrNotFound)
	default:
		// No record item: an image stored by something else.
		r = &Record{}
	}
	s.recMu.Lock()
	s.records[id] = r
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
	s.records[id] = r.clone()
	s.recMu.Unlock()
	return nil
}

func (s *Service) forgetRecord(id string) {
	s.recMu.Lock()
	delete(s.records, id)
	s.recMu.Unlock()
}
