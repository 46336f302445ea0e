package policy

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	"github.com/opencontainers/go-digest"
)

// Fingerprint identifies everything an evaluation of p depends on: the
// policy file's content and the current content of every file it names.
// A decision cached under one fingerprint is valid exactly while the
// fingerprint stays the same, so a rotated or revoked key (the file
// replaced or removed) is seen by the next evaluation. Referenced files
// are re-hashed only when their stat identity changes.
func (p *Policy) Fingerprint() digest.Digest {
	if len(p.Files) == 0 || p.hashes == nil {
		return p.Digest
	}
	d := digest.Canonical.Digester()
	fmt.Fprintf(d.Hash(), "%s\x00", p.Digest)
	for _, f := range p.Files {
		fmt.Fprintf(d.Hash(), "%s\x00%s\x00", f, p.hashes.get(f))
	}
	return d.Digest()
}

// fileHashes caches the content digest of referenced files by stat identity.
type fileHashes struct {
	mu sync.Mutex
	m  map[string]hashed
}

type hashed struct {
	id fileID
	d  string
}

func (h *fileHashes) get(path string) string {
	id, err := statID(path)
	if err != nil {
		// Absent or unusable: the evaluation will fail on it; the marker
		// still changes when the file appears.
		if errors.Is(err, os.ErrNotExist) {
			return "absent"
		}
		return "error:" + err.Error()
	}
	h.mu.Lock()
	c, ok := h.m[path]
	h.mu.Unlock()
	if ok && c.id == id {
		return c.d
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "error:" + err.Error()
	}
	d := digest.FromBytes(data).String()
	h.mu.Lock()
	if h.m == nil {
		h.m = map[string]hashed{}
	}
	h.m[path] = hashed{id: id, d: d}
	h.mu.Unlock()
	return d
}

// referencedFiles lists the files a containers-policy.json(5) document
// names, in a stable order. It walks the raw JSON rather than the library's
// parsed types (whose requirement structs are unexported), taking every
// string under a key ending in "Path" and every string list under a key
// ending in "Paths": keyPath(s), fulcio.caPath, rekorPublicKeyPath(s),
// pki.caRootsPath, pki.caIntermediatesPath, and any such key a later
// library version adds.
func referencedFiles(data []byte) []string {
	var out []string
	for _, f := range namedFiles(data) {
		out = append(out, f.path)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
