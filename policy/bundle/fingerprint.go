package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/opencontainers/go-digest"
)

// Fingerprint identifies everything a verification under r depends on:
// the requirement (with its effective thresholds, so an unset default and
// the same value written out agree) and the current content of every file
// it names, the trusted root and the keys. An admission cached under one
// fingerprint is valid exactly while it stays the same: a rotated trusted
// root or a replaced key changes it, and the next admission verifies
// again.
//
// The files are read at each call; they are a few kilobytes. A file that
// cannot be read gets a marker instead of a content digest, so the
// fingerprint still changes when it appears or is repaired.
func (r *Requirement) Fingerprint() digest.Digest {
	markers := map[string]string{}
	for _, path := range r.files() {
		limit := int64(maxKeyFileSize)
		if path == r.TrustedRootPath {
			limit = maxTrustedRootSize
		}
		data, err := readBounded(path, limit)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			markers[path] = "absent"
		case err != nil:
			markers[path] = "error:" + err.Error()
		default:
			markers[path] = digest.FromBytes(data).String()
		}
	}
	return fingerprint(r, markers)
}

// files lists every file the requirement names.
func (r *Requirement) files() []string {
	out := r.keyFiles()
	if r.TrustedRootPath != "" {
		out = append(out, r.TrustedRootPath)
	}
	return out
}

// fingerprint hashes the requirement and a marker per named file (the
// content digest, or why there is none). Prepare calls it with the bytes
// it actually loaded, so a Prepared's fingerprint never describes files
// newer than the ones it verifies with.
func fingerprint(r *Requirement, markers map[string]string) digest.Digest {
	norm := *r
	tl, ts, ct := r.TransparencyLogThreshold(), r.TimestampThreshold(), r.CertificateTransparencyThreshold()
	norm.TransparencyLog, norm.Timestamps, norm.CertificateTransparency = &tl, &ts, &ct
	// A struct marshals its fields in declaration order: stable.
	canonical, err := json.Marshal(norm)
	if err != nil {
		// Strings, string slices and ints cannot fail to marshal.
		panic(fmt.Sprintf("marshal requirement: %v", err))
	}
	d := digest.Canonical.Digester()
	fmt.Fprintf(d.Hash(), "sigstoreBundle/v1\x00%s\x00", canonical)
	paths := make([]string, 0, len(markers))
	for p := range markers {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		fmt.Fprintf(d.Hash(), "%s\x00%s\x00", p, markers[p])
	}
	return d.Digest()
}
