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
			l, err := openLog(path, t.Logf)
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
	l, err := openLog(path, t.Logf)
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
