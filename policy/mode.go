package policy

import (
	"fmt"
	"maps"
)

// Mode is how a namespace's decisions are enforced.
type Mode string

const (
	// Enforce refuses what the policy rejects (the default everywhere).
	Enforce Mode = "enforce"
	// Warn admits what the policy rejects, and says so: the decision is
	// logged, audited and counted as "warned". It is for rolling a policy
	// out namespace by namespace, never a silent bypass.
	Warn Mode = "warn"
)

// AnyNamespace is the modes key for namespaces without an entry of their own.
const AnyNamespace = "*"

// ParseMode reads "enforce" or "warn".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Enforce, Warn:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: want enforce or warn", s)
}

// SetModes replaces the namespace modes (config signature_policy_modes;
// SIGHUP reloads them). Keys are namespaces or AnyNamespace; values must
// have been checked with ParseMode.
func (s *Store) SetModes(modes map[string]Mode) {
	s.mu.Lock()
	s.modes = maps.Clone(modes)
	s.mu.Unlock()
}

// ModeFor is the enforcement of namespace ns: its own entry, else the
// AnyNamespace entry, else Enforce. Warn is therefore only ever in force
// where an operator wrote it, for the global policy as for a namespace's.
func (s *Store) ModeFor(ns string) Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.modes[ns]; ok && ns != "" {
		return m
	}
	if m, ok := s.modes[AnyNamespace]; ok {
		return m
	}
	return Enforce
}
