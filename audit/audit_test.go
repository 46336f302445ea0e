package audit

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func readLines(t *testing.T, path string) []Record {
	t.Helper()
	out, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEachRecordIsOneJSONLineAppended(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{
		{Time: time.Unix(1, 0).UTC(), Stage: "pull", Namespace: "a", Reference: "r1", Outcome: "allowed", Requirements: []string{"sigstoreSigned"}},
		{Time: time.Unix(2, 0).UTC(), Stage: "create", Namespace: "b", Pod: "p", Container: "c", Reference: "r2", Outcome: "rejected", Reason: "no signature"},
	}
	for _, r := range want {
		if err := l.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	// Written through at once: readable before Close (a kill -9 now loses nothing).
	got := readLines(t, path)
	if len(got) != 2 || got[0].Reference != "r1" || got[1].Reason != "no signature" || got[1].Pod != "p" || got[0].Requirements[0] != "sigstoreSigned" {
		t.Fatalf("records %+v", got)
	}
	l.Close()
	// Reopened, it appends.
	l, _ = Open(path, 0)
	l.Write(Record{Stage: "pull", Reference: "r3", Outcome: "error"})
	l.Close()
	if got := readLines(t, path); len(got) != 3 || got[2].Reference != "r3" {
		t.Fatalf("after reopen: %+v", got)
	}
}

func TestRotatesBySizeKeepingOnePreviousFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, 400)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 20; i++ {
		if err := l.Write(Record{Stage: "pull", Reference: "reg.example/app:1", Outcome: "allowed"}); err != nil {
			t.Fatal(err)
		}
	}
	cur, prev := readLines(t, path), readLines(t, path+".1")
	if len(cur) == 0 || len(prev) == 0 {
		t.Fatalf("no rotation: %d current, %d previous", len(cur), len(prev))
	}
	for _, p := range []string{path, path + ".1"} {
		if fi, _ := os.Stat(p); fi.Size() > 400 {
			t.Errorf("%s is %d bytes, over the 400 limit", p, fi.Size())
		}
	}
}

func TestNilLogDiscards(t *testing.T) {
	var l *Log
	if err := l.Write(Record{}); err != nil || l.Close() != nil {
		t.Fatal("nil log is not a no-op")
	}
}
