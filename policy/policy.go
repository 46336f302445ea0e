// Package policy owns signature policies: it loads containers-policy.json(5)
// files (the node's global one and one per Kubernetes namespace), caches them
// by content, and decides whether an image may be pulled or run.
//
// It is the only package that knows where policy files live and how a
// namespace selects one; callers hand it a namespace and an image and get a
// decision back.
package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"time"

	"github.com/crivet/crivet/internal/errclass"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

// ErrInvalidNamespace is returned for a namespace that is not a Kubernetes
// namespace name; such a name is never used to build a path.
var ErrInvalidNamespace = errclass.New(errclass.InvalidArgument, "invalid namespace")

// A namespace is a DNS-1123 label (k8s.io/apimachinery validation.IsDNS1123Label).
// Checking the shape, rather than cleaning the path, is what keeps "..",
// "a/b" and friends from ever reaching the filesystem.
var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidateNamespace reports whether ns may name a per-namespace policy.
func ValidateNamespace(ns string) error {
	if len(ns) > 63 || !dns1123Label.MatchString(ns) {
		return fmt.Errorf("%w %q: must be a DNS-1123 label (lower-case alphanumerics and '-', at most 63 characters)", ErrInvalidNamespace, ns)
	}
	return nil
}

// ErrRefused marks a refusal that is a signature-policy outcome without
// being the library's own decision: an image that cannot be verified
// (nothing recorded to verify), or a reference that does not name the
// image it claims to. Callers show it like a Rejection.
var ErrRefused = errclass.New(errclass.PolicyRefusal, "refused by signature policy")

// FileError is a policy file that exists but cannot be used: unreadable,
// not a regular file, or not a valid containers-policy.json(5). Nothing is
// admitted under it (fail closed), and it is reported like a rejection, so
// the operator sees it where signature failures are shown.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return "policy file " + e.Path + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// Class and Is make an unusable policy file a policy refusal (internal/errclass)
// wherever it is wrapped: nothing is admitted under it.
func (e *FileError) Class() errclass.Class { return errclass.PolicyRefusal }
func (e *FileError) Is(target error) bool  { return target == errclass.PolicyRefusal }

// Policy is one parsed policy file, immutable once loaded.
type Policy struct {
	// Path is the file the policy came from.
	Path string
	// Digest is the sha256 of the file's content when it was parsed; it
	// identifies the policy in records and decision caches.
	Digest digest.Digest
	// Namespace is the namespace whose own file this is, "" for the global policy.
	Namespace string
	// Files are the key, keyring, CA and Rekor key files the policy names;
	// the library reads them at each evaluation, not at parse time.
	Files []string

	parsed *signature.Policy
	hashes *fileHashes
	// bundles are the sigstoreBundle requirements by scope (bundles.go),
	// taken out of the document before the library parsed it.
	bundles *bundleScopes
}

// Rejection is a policy decision against an image. Its text is the
// library's reason, prefixed the way the library's copy path words it, so
// operators see the same message they know from podman and CRI-O.
type Rejection struct {
	Policy *Policy
	Reason error
}

func (r *Rejection) Error() string { return "Source image rejected: " + r.Reason.Error() }
func (r *Rejection) Unwrap() error { return r.Reason }

// Class and Is make a rejection a policy refusal (internal/errclass)
// wherever it is wrapped.
func (r *Rejection) Class() errclass.Class { return errclass.PolicyRefusal }
func (r *Rejection) Is(target error) bool  { return target == errclass.PolicyRefusal }

// Check evaluates img against the policy. Any outcome other than an explicit
// allow is a *Rejection, whatever error type the library produced: a
// missing, invalid or malformed signature must never slip through as some
// other kind of failure.
func (p *Policy) Check(ctx context.Context, img types.UnparsedImage) error {
	// A PolicyContext is a small state machine that refuses concurrent use,
	// so each evaluation gets its own; the parsed policy is shared.
	pc, err := signature.NewPolicyContext(p.parsed)
	if err != nil {
		return &FileError{Path: p.Path, Err: err}
	}
	defer func() { _ = pc.Destroy() }()
	allowed, err := pc.IsRunningImageAllowed(ctx, img)
	if allowed && err == nil {
		return nil
	}
	if err == nil {
		err = errors.New("image not allowed by policy")
	}
	if reqs, only := p.BundleRequirements(img.Reference()); len(reqs) > 0 {
		berr := p.checkBundles(ctx, img, reqs)
		switch {
		case berr == nil:
			return nil
		case only:
			// The library's refusal is the reject standing in for the
			// bundles; their reason is the decision's.
			err = berr
		default:
			err = fmt.Errorf("%w; %w", err, berr)
		}
	}
	return &Rejection{Policy: p, Reason: err}
}

// Store finds the effective policy for a namespace and keeps parsed
// policies until their file changes.
type Store struct {
	globalPath string
	dir        string

	mu    sync.Mutex
	cache map[string]cached
	modes map[string]Mode

	hashes fileHashes

	onLoad func(namespace string, err error)
}

type cached struct {
	id     fileID
	policy *Policy
}

// fileID changes whenever a file is replaced or rewritten: editors either
// rename a new file in (new inode) or write in place (new mtime/ctime, and
// usually size), so re-reading only on change is safe and cheap.
type fileID struct {
	dev, ino    uint64
	size        int64
	mtime, ctim time.Time
}

func statID(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	id := fileID{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
		id.ctim = time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
	}
	if !fi.Mode().IsRegular() {
		return id, fmt.Errorf("not a regular file")
	}
	return id, nil
}

// NewStore returns a store for the global policy file and the directory of
// per-namespace files (<dir>/<namespace>.json). dir may be empty.
func NewStore(globalPath, dir string) *Store {
	return &Store{globalPath: globalPath, dir: dir, cache: map[string]cached{}}
}

// OnLoad sets fn to be told of every policy file parsed anew (err nil:
// a first load or a reload after a change) and of every attempt that
// found a file unusable (err a *FileError), for metrics. Set it before
// the store is used; fn must be cheap.
func (s *Store) OnLoad(fn func(namespace string, err error)) { s.onLoad = fn }

// GlobalPath is the file of the node-wide policy.
func (s *Store) GlobalPath() string { return s.globalPath }

// Global loads the node-wide policy.
func (s *Store) Global() (*Policy, error) { return s.load(s.globalPath, "") }

// ForNamespace returns the policy in force for a pod namespace: the
// namespace's own file if it exists, else the global policy. An existing
// but unreadable or malformed namespace file is an error, never a silent
// fallback to the (possibly looser) global policy.
func (s *Store) ForNamespace(ns string) (*Policy, error) {
	if ns == "" {
		return s.Global()
	}
	if err := ValidateNamespace(ns); err != nil {
		return nil, err
	}
	if s.dir == "" {
		return s.Global()
	}
	path := filepath.Join(s.dir, ns+".json")
	if _, err := os.Lstat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return s.Global()
		}
		fe := &FileError{Path: path, Err: err}
		if s.onLoad != nil {
			s.onLoad(ns, fe)
		}
		return nil, fmt.Errorf("signature policy for namespace %s: %w", ns, fe)
	}
	p, err := s.load(path, ns)
	if err != nil {
		return nil, fmt.Errorf("signature policy for namespace %s: %w", ns, err)
	}
	return p, nil
}

func (s *Store) load(path, ns string) (*Policy, error) {
	p, parsed, err := s.loadFile(path, ns)
	if s.onLoad != nil && (parsed || err != nil) {
		s.onLoad(ns, err)
	}
	return p, err
}

// loadFile returns the cached policy of path, parsing it when it changed
// (parsed true).
func (s *Store) loadFile(path, ns string) (_ *Policy, parsed bool, _ error) {
	id, err := statID(path)
	if err != nil {
		return nil, false, &FileError{Path: path, Err: err}
	}
	s.mu.Lock()
	c, ok := s.cache[path]
	s.mu.Unlock()
	if ok && c.id == id {
		return c.policy, false, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false, &FileError{Path: path, Err: err}
	}
	forLibrary, bundles, err := extractBundles(data)
	if err != nil {
		return nil, false, &FileError{Path: path, Err: err}
	}
	pol, err := signature.NewPolicyFromBytes(forLibrary)
	if err != nil {
		return nil, false, &FileError{Path: path, Err: err}
	}
	p := &Policy{Path: path, Digest: digest.FromBytes(data), Namespace: ns, Files: referencedFiles(data), parsed: pol, hashes: &s.hashes, bundles: bundles}
	// The file may have changed between stat and read; keying the entry
	// by the earlier stat only means the next call reads it once more.
	s.mu.Lock()
	s.cache[path] = cached{id: id, policy: p}
	s.mu.Unlock()
	return p, true, nil
}
