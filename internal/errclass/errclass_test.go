package errclass

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestSentinelMatchesItselfAndItsClass(t *testing.T) {
	errGone := New(NotFound, "thing not found")
	wrapped := fmt.Errorf("remove thing x: %w", errGone)
	if wrapped.Error() != "remove thing x: thing not found" {
		t.Fatalf("text %q", wrapped.Error())
	}
	for _, target := range []error{errGone, NotFound} {
		if !errors.Is(wrapped, target) {
			t.Errorf("errors.Is(wrapped, %v) = false", target)
		}
	}
	for _, target := range []error{AlreadyExists, None, New(NotFound, "thing not found"), io.EOF} {
		if errors.Is(wrapped, target) {
			t.Errorf("errors.Is(wrapped, %v) = true", target)
		}
	}
}

// classed is a domain error type that carries a class by method.
type classed struct{}

func (classed) Error() string { return "classed" }
func (classed) Class() Class  { return Unavailable }

func TestOf(t *testing.T) {
	errState := New(FailedPrecondition, "wrong state")
	errBad := New(InvalidArgument, "bad input")
	for _, c := range []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, None},
		{"plain", errors.New("x"), None},
		{"sentinel", errState, FailedPrecondition},
		{"wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", errBad)), InvalidArgument},
		{"joined with a plain error", errors.Join(io.EOF, errBad), InvalidArgument},
		{"outermost wins", fmt.Errorf("%w: %w", errState, errBad), FailedPrecondition},
		{"type with a Class method", fmt.Errorf("dial: %w", classed{}), Unavailable},
	} {
		if got := Of(c.err); got != c.want {
			t.Errorf("%s: Of = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestClassNames(t *testing.T) {
	seen := map[string]Class{}
	for c := None; int(c) < len(names); c++ {
		name := c.String()
		if name == "" || strings.HasPrefix(name, "class(") || name != c.Error() {
			t.Errorf("class %d has name %q", int(c), name)
		}
		if prev, dup := seen[name]; dup {
			t.Errorf("classes %d and %d share the name %q", int(prev), int(c), name)
		}
		seen[name] = c
	}
	if got := Class(99).String(); got != "class(99)" {
		t.Errorf("unknown class named %q", got)
	}
}
