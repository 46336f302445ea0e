package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// The classes of library rejections are tested on real signatures and
// policies in the image package (TestDecisionsAreObservedWithAReasonClass);
// here the shapes that need no image.
func TestReasonOfClassesEveryErrorIntoTheFixedSet(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ReasonNone},
		{errors.New("storage broke"), ReasonOther},
		{fmt.Errorf("ns x: %w", &FileError{Path: "/p.json", Err: errors.New("bad json")}), ReasonPolicyUnreadable},
		{&Rejection{Reason: &os.PathError{Op: "open", Path: "/k.pub", Err: os.ErrNotExist}}, ReasonKeyUnreadable},
		{&Rejection{Reason: errors.New("something the library never said before")}, ReasonOther},
		{fmt.Errorf("%w: %w", ErrRefused, &Rejection{Reason: errors.New("None of the signatures were accepted, reasons: Signature for identity \"x\" is not accepted; y")}), ReasonIdentityMismatch},
	} {
		got := ReasonOf(tc.err)
		if got != tc.want {
			t.Errorf("ReasonOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
		if !slices.Contains(Reasons, got) {
			t.Errorf("ReasonOf(%v) = %q, not in Reasons", tc.err, got)
		}
	}
	for _, r := range reasonTexts {
		if !slices.Contains(Reasons, r.class) {
			t.Errorf("class %q of %q is not in Reasons", r.class, r.text)
		}
	}
}

// OnLoad hears of each parse (first use, then each change) and of each
// attempt that found a file unusable, never of a cached answer.
func TestOnLoadReportsParsesOncePerChangeAndEveryFailure(t *testing.T) {
	s, global, nsDir := newStore(t)
	var got []string
	s.OnLoad(func(ns string, err error) {
		var fe *FileError
		switch {
		case err == nil:
			got = append(got, "loaded "+ns)
		case errors.As(err, &fe):
			got = append(got, "error "+ns)
		default:
			got = append(got, "not a FileError "+ns)
		}
	})
	for range 3 {
		if _, err := s.ForNamespace("team-a"); err != nil {
			t.Fatal(err)
		}
		_, _ = s.Global()
	}
	path := filepath.Join(nsDir, "team-a.json")
	write(t, path, rejectAll)
	fi, _ := os.Stat(path)
	_ = os.Chtimes(path, time.Time{}, fi.ModTime())
	_, _ = s.ForNamespace("team-a")
	write(t, global, `{"default":[`)
	_, _ = s.Global()
	_, _ = s.Global()
	want := []string{"loaded team-a", "loaded ", "loaded team-a", "error ", "error "}
	if !slices.Equal(got, want) {
		t.Fatalf("OnLoad saw %q, want %q", got, want)
	}
}
