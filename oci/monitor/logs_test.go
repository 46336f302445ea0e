package monitor

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

type record struct {
	stream, tag, content string
}

var recordLine = regexp.MustCompile(`^(\S+) (stdout|stderr) ([PF]) (.*)$`)

func readRecords(t *testing.T, path string) []record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []record
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m := recordLine.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Fatalf("not a CRI log record: %q", sc.Text())
		}
		if _, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
			t.Fatalf("timestamp %q: %v", m[1], err)
		}
		recs = append(recs, record{m[2], m[3], m[4]})
	}
	return recs
}

func TestLineSplitterMakesCRIRecords(t *testing.T) {
	long := strings.Repeat("x", maxLogLine)
	cases := []struct {
		name   string
		writes []string
		want   []record
	}{
		{"full lines in one write", []string{"a\nbb\n"}, []record{{"stdout", "F", "a"}, {"stdout", "F", "bb"}}},
		{"a line across writes", []string{"he", "llo", "\n"}, []record{{"stdout", "F", "hello"}}},
		{"an empty line", []string{"\n"}, []record{{"stdout", "F", ""}}},
		{"end of stream without newline", []string{"a\ntail"}, []record{{"stdout", "F", "a"}, {"stdout", "P", "tail"}}},
		{"a line of exactly the limit", []string{long + "\n"}, []record{{"stdout", "F", long}}},
		{"the limit reached at a write boundary", []string{long, "\n"}, []record{{"stdout", "F", long}}},
		{"one byte over the limit", []string{long + "y\n"}, []record{{"stdout", "P", long}, {"stdout", "F", "y"}}},
		{"two and a half limits", []string{long + long + "zz\n"}, []record{{"stdout", "P", long}, {"stdout", "P", long}, {"stdout", "F", "zz"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.log")
			l, err := openLog("", path, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			s := newLineSplitter("stdout", l)
			for _, w := range c.writes {
				s.Write([]byte(w))
			}
			s.flush()
			l.close()
			got := readRecords(t, path)
			if len(got) != len(c.want) {
				t.Fatalf("got %d records, want %d: %v", len(got), len(c.want), got)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("record %d = %s %s %d bytes, want %s %s %d bytes", i, got[i].stream, got[i].tag, len(got[i].content), c.want[i].stream, c.want[i].tag, len(c.want[i].content))
				}
			}
		})
	}
}

func TestReopenStartsANewFileAtThePath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.log")
	l, err := openLog("", path, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	s := newLineSplitter("stderr", l)
	s.Write([]byte("before\n"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.reopen(); err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("after\n"))
	l.close()
	if got := readRecords(t, path+".1"); len(got) != 1 || got[0].content != "before" {
		t.Errorf("rotated file: %v", got)
	}
	if got := readRecords(t, path); len(got) != 1 || got[0] != (record{"stderr", "F", "after"}) {
		t.Errorf("new file: %v", got)
	}
}

func TestUnixPathFitsLongDirectories(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 120))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	m := &monitor{dir: dir}
	if err := m.listen(); err != nil {
		t.Fatal(err)
	}
	defer m.ln.Close()
	if _, err := os.Stat(filepath.Join(dir, socketName)); err != nil {
		t.Fatalf("socket not in the state directory: %v", err)
	}
	c, err := dial(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestWaitWithoutMonitorIsGone(t *testing.T) {
	if _, err := Wait(t.Context(), t.TempDir()); err != ErrGone {
		t.Fatalf("Wait = %v, want ErrGone", err)
	}
}

// The monitor opens the log as root: a symlink planted at the log file, or
// at a directory beneath the pod's log directory, must not be followed,
// neither at start nor at ReopenContainerLog.
func TestLogOpenDoesNotFollowSymlinks(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "pod")
	outside := filepath.Join(base, "outside")
	os.MkdirAll(filepath.Join(dir, "c"), 0o755)
	os.MkdirAll(outside, 0o755)
	target := filepath.Join(outside, "victim")
	os.WriteFile(target, []byte("keep\n"), 0o644)

	// Final component a symlink, with and without the pod directory known.
	if err := os.Symlink(target, filepath.Join(dir, "c", "0.log")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, ""} {
		if _, err := openLog(d, filepath.Join(dir, "c", "0.log"), t.Logf); err == nil {
			t.Errorf("log dir %q: a symlinked log file was opened", d)
		}
	}
	// A directory beneath the pod's log directory swapped for a symlink
	// between the start and a reopen.
	l, err := openLog(dir, filepath.Join(dir, "d", "0.log"), t.Logf)
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		// d does not exist yet: the daemon creates it, not the monitor.
		t.Fatalf("missing directory: %v", err)
	}
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	if l, err = openLog(dir, filepath.Join(dir, "d", "0.log"), t.Logf); err != nil {
		t.Fatal(err)
	}
	os.Rename(filepath.Join(dir, "d"), filepath.Join(dir, "d.old"))
	os.Symlink(outside, filepath.Join(dir, "d"))
	if err := l.reopen(); err == nil {
		t.Error("reopen followed a symlinked directory")
	}
	l.close()
	if b, _ := os.ReadFile(target); string(b) != "keep\n" {
		t.Errorf("the symlink target was written: %q", b)
	}
	if _, err := os.Stat(filepath.Join(outside, "0.log")); err == nil {
		t.Error("a log file was created through the symlinked directory")
	}
	// An escape in the recorded path is refused too.
	if _, err := openLog(dir, filepath.Join(base, "escape.log"), t.Logf); err == nil {
		t.Error("a log path outside the pod's log directory was opened")
	}
}
