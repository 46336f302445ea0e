// Package errclass names the few kinds of failure a caller has to tell
// apart (not found, already exists, wrong state, bad input, ...), so that
// each domain package declares what its errors are and the CRI server
// maps kinds, not the names of every package's sentinels.
//
// A domain package declares its sentinel with a class:
//
//	var ErrNotFound = errclass.New(errclass.NotFound, "container not found")
//
// errors.Is then matches the sentinel and its class wherever it is
// wrapped, and Of tells the class. The package knows nothing of gRPC:
// the mapping to status codes is the server's.
package errclass

import (
	"errors"
	"strconv"
)

// Class is a kind of failure. The zero Class is None: not classed.
//
// A Class is an error only so that errors.Is(err, errclass.NotFound)
// reads the way Go code asks about errors; it is not meant to be returned.
type Class int

const (
	// None: the error has no class (a failure of the runtime itself).
	None Class = iota
	// NotFound: the object the request names does not exist.
	NotFound
	// AlreadyExists: an object with the same name or ID exists.
	AlreadyExists
	// FailedPrecondition: the object is not in a state the operation
	// applies to (a container not running, an image still in use).
	FailedPrecondition
	// InvalidArgument: the request itself is malformed or contradictory.
	InvalidArgument
	// Unavailable: something the operation depends on cannot be reached.
	Unavailable
	// Unsupported: a well-formed request this runtime or host cannot honour.
	Unsupported
	// ResourceExhausted: too little of something (disk space) to go on.
	ResourceExhausted
	// PolicyRefusal: the signature policy refused the image, or could not
	// be applied (which refuses it too).
	PolicyRefusal
)

var names = [...]string{
	None:               "unclassified",
	NotFound:           "not found",
	AlreadyExists:      "already exists",
	FailedPrecondition: "failed precondition",
	InvalidArgument:    "invalid argument",
	Unavailable:        "unavailable",
	Unsupported:        "unsupported",
	ResourceExhausted:  "resource exhausted",
	PolicyRefusal:      "policy refusal",
}

// String is the class's name.
func (c Class) String() string {
	if c < 0 || int(c) >= len(names) {
		return "class(" + strconv.Itoa(int(c)) + ")"
	}
	return names[c]
}

// Error makes a Class usable as the target of errors.Is.
func (c Class) Error() string { return c.String() }

// sentinel is a domain error value with a class.
type sentinel struct {
	class Class
	msg   string
}

func (s *sentinel) Error() string { return s.msg }

// Is matches the sentinel's class; the sentinel itself is matched by
// identity, as errors.New's are.
func (s *sentinel) Is(target error) bool {
	c, ok := target.(Class)
	return ok && c != None && c == s.class
}

// Class is what Of reads.
func (s *sentinel) Class() Class { return s.class }

// New declares a sentinel error of class c with text msg. Each call
// returns a distinct error, like errors.New.
func New(c Class, msg string) error {
	return &sentinel{class: c, msg: msg}
}

// Of is the class of err: that of the outermost error in its tree (in
// errors.As order) that has one, None when nothing in it has a class.
// An error type outside this package has a class by a Class() Class
// method (and, to match errors.Is too, an Is method).
func Of(err error) Class {
	var c interface {
		error
		Class() Class
	}
	if errors.As(err, &c) {
		return c.Class()
	}
	return None
}
