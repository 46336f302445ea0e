package runtime

import (
	"os"
	"path/filepath"
	"testing"
)

// CRIU's words in an error: its Error lines, the last n; its last lines
// when it logged no error; "no log" when there is none.
func TestCRIUErrors(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "restore.log")
	if got := criuErrors(log, 2); got != "no log" {
		t.Errorf("no log: %q", got)
	}
	os.WriteFile(log, []byte("(0.1) a\n(0.2) Error (x.c:1): one\n(0.3) b\n(0.4) Error (x.c:2): two\n(0.5) Error (x.c:3): three\n"), 0o600)
	if got, want := criuErrors(log, 2), "(0.4) Error (x.c:2): two | (0.5) Error (x.c:3): three"; got != want {
		t.Errorf("errors: %q, want %q", got, want)
	}
	os.WriteFile(log, []byte("(0.1) a\n(0.2) b\n(0.3) c\n"), 0o600)
	if got, want := criuErrors(log, 2), "(0.2) b | (0.3) c"; got != want {
		t.Errorf("no errors: %q, want %q", got, want)
	}
}
