package policy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzForNamespace: whatever namespace a request claims, the policy chosen
// is the global one or a file directly inside the policy directory named
// for that namespace; anything else is ErrInvalidNamespace. Never a panic,
// never a path outside the directory.
func FuzzForNamespace(f *testing.F) {
	dir := f.TempDir()
	global := filepath.Join(dir, "global.json")
	nsDir := filepath.Join(dir, "policies.d")
	if err := os.MkdirAll(nsDir, 0o755); err != nil {
		f.Fatal(err)
	}
	for path, body := range map[string]string{
		global:                              acceptAll,
		filepath.Join(nsDir, "team-a.json"): rejectAll,
		filepath.Join(dir, "escape.json"):   rejectAll,
		filepath.Join(nsDir, "broken.json"): "{",
		filepath.Join(nsDir, "..json"):      rejectAll,
		filepath.Join(nsDir, "a", "b.json"): rejectAll,
	} {
		_ = os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, "escape.json"), filepath.Join(nsDir, "linked.json")); err != nil {
		f.Fatal(err)
	}
	s := NewStore(global, nsDir)
	for _, seed := range []string{"", "team-a", "team-b", "broken", "linked", "../escape", "..", ".", "a/b", "A", "-x", "x-", "a\x00b", "team-a/../team-a", "kube-system", "a.b", string(make([]byte, 64))} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ns string) {
		p, err := s.ForNamespace(ns)
		if ValidateNamespace(ns) != nil && ns != "" {
			if !errors.Is(err, ErrInvalidNamespace) {
				t.Fatalf("namespace %q is not a DNS-1123 label but got %v, %v", ns, p, err)
			}
			return
		}
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) || filepath.Dir(fe.Path) != nsDir {
				t.Fatalf("namespace %q: %v", ns, err)
			}
			return
		}
		switch p.Path {
		case global:
			if ns != "" {
				if _, err := os.Lstat(filepath.Join(nsDir, ns+".json")); err == nil {
					t.Fatalf("namespace %q fell back to global with a file of its own", ns)
				}
			}
		case filepath.Join(nsDir, ns+".json"):
			if p.Namespace != ns {
				t.Fatalf("policy of %q records namespace %q", ns, p.Namespace)
			}
		default:
			t.Fatalf("namespace %q chose %s", ns, p.Path)
		}
	})
}
