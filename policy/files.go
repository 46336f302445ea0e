package policy

import (
	"errors"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
)

// FileState is one policy file as the daemon sees it now: what crictl
// info shows an operator, so a broken file is visible before it bites.
type FileState struct {
	Path string `json:"path"`
	// Namespace is "" for the global policy.
	Namespace string `json:"namespace,omitempty"`
	// SHA256 of the content, when it could be read.
	SHA256 string `json:"sha256,omitempty"`
	// State is "ok", "missing" (the global file only) or "error".
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	// Mode is the enforcement of the namespace (the global policy's: that
	// of namespaces without an entry).
	Mode Mode `json:"mode"`
}

// Files reports the global policy and every namespace file, parsed as a
// decision would parse them (through the same cache).
func (s *Store) Files() []FileState {
	out := []FileState{s.state(s.globalPath, "")}
	if s.dir == "" {
		return out
	}
	matches, _ := filepath.Glob(filepath.Join(s.dir, "*.json"))
	sort.Strings(matches)
	for _, path := range matches {
		ns := strings.TrimSuffix(filepath.Base(path), ".json")
		out = append(out, s.state(path, ns))
	}
	return out
}

func (s *Store) state(path, ns string) FileState {
	st := FileState{Path: path, Namespace: ns, State: "ok", Mode: s.ModeFor(ns)}
	if ns == "" {
		st.Mode = s.ModeFor(AnyNamespace)
	}
	if err := ValidateNamespace(ns); ns != "" && err != nil {
		st.State, st.Error = "error", err.Error()+": the file is never used"
		return st
	}
	p, err := s.load(path, ns)
	switch {
	case err == nil:
		st.SHA256 = p.Digest.Encoded()
	case ns == "" && errors.Is(err, fs.ErrNotExist):
		st.State, st.Error = "missing", err.Error()
	default:
		st.State, st.Error = "error", err.Error()
	}
	return st
}
