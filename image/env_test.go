package image

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/test/fixtures"
	"go.podman.io/image/v5/docker/reference"
)

// env is a node: a real registry, the files an operator configures, and
// an image service over a real overlay store.
type env struct {
	t         testing.TB
	reg       *fixtures.Registry
	dir       string
	global    string
	nsDir     string
	regConf   string
	regD      string
	lookaside string
	root      string
	svc       *Service
	decisions *decisionLog
	authFile  string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{
		t: t, reg: fixtures.StartRegistry(t), dir: dir,
		global:    filepath.Join(dir, "policy.json"),
		nsDir:     filepath.Join(dir, "policies.d"),
		regConf:   filepath.Join(dir, "registries.conf"),
		regD:      filepath.Join(dir, "registries.d"),
		lookaside: filepath.Join(dir, "lookaside"),
		root:      filepath.Join(dir, "root"),
		decisions: &decisionLog{},
	}
	fixtures.WriteRegistriesConf(t, e.regConf, e.reg)
	fixtures.WriteRegistriesD(t, e.regD, e.lookaside)
	e.setGlobal(`{"default":[{"type":"insecureAcceptAnything"}]}`)
	e.open()
	return e
}

func (e *env) open() {
	e.t.Helper()
	svc, err := Open(Config{
		Root: e.root, RunRoot: filepath.Join(e.dir, "run"),
		RegistriesConf: e.regConf, RegistriesD: e.regD, AuthFile: e.authFile,
		Policies: policy.NewStore(e.global, e.nsDir),
		Logger:   slog.New(e.decisions),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.svc = svc
	e.t.Cleanup(func() { _ = svc.Close() })
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// Write and rename, as an operator's config management would.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func (e *env) setGlobal(js string)        { writeFile(e.t, e.global, js) }
func (e *env) setNamespace(ns, js string) { writeFile(e.t, filepath.Join(e.nsDir, ns+".json"), js) }
func (e *env) ref(repoTag string) string  { return e.reg.Ref(repoTag) }
func (e *env) pull(ref, ns string) (*Image, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return e.svc.Pull(ctx, PullRequest{Ref: ref, Namespace: ns})
}

func (e *env) mustPull(ref, ns string) *Image {
	e.t.Helper()
	img, err := e.pull(ref, ns)
	if err != nil {
		e.t.Fatalf("pull %s (namespace %q): %v", ref, ns, err)
	}
	return img
}

// mustReject pulls and requires a policy rejection whose text contains want.
func (e *env) mustReject(ref, ns, want string) {
	e.t.Helper()
	before := e.storeFiles()
	_, err := e.pull(ref, ns)
	var rej *policy.Rejection
	if !errorsAs(err, &rej) {
		e.t.Fatalf("pull %s (namespace %q): want a policy rejection, got %v", ref, ns, err)
	}
	if !strings.HasPrefix(rej.Error(), "Source image rejected: ") || !strings.Contains(rej.Error(), want) {
		e.t.Fatalf("pull %s (namespace %q): rejection %q does not contain %q", ref, ns, rej.Error(), want)
	}
	if after := e.storeFiles(); !slices.Equal(before, after) {
		e.t.Fatalf("rejected pull changed the store:\nbefore %v\nafter  %v", before, after)
	}
}

// storeFiles lists every path under the root with its size, except lock
// files whose content is bookkeeping of the lock itself.
func (e *env) storeFiles() []string {
	var out []string
	_ = filepath.WalkDir(e.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(e.root, p)
		if strings.HasSuffix(rel, ".lock") || strings.HasSuffix(rel, "/lock") {
			return nil
		}
		size := info.Size()
		if d.IsDir() {
			size = 0
		}
		out = append(out, fmt.Sprintf("%s:%d", rel, size))
		return nil
	})
	slices.Sort(out)
	return out
}

// decisionLog is the env's log: every record is kept (recordLog), and
// the signature policy decisions are read back from it.
type decisionLog = recordLog

func (l *recordLog) all() []map[string]string { return l.find("signature policy decision") }

func (l *recordLog) String() string {
	b, _ := json.Marshal(l.all())
	return string(b)
}

// verifyStored re-verifies a stored image offline under namespace ns's
// policy, as the image named identity.
func (e *env) verifyStored(img *Image, ns, identity string) error {
	e.t.Helper()
	pol, err := policy.NewStore(e.global, e.nsDir).ForNamespace(ns)
	if err != nil {
		e.t.Fatal(err)
	}
	named, err := reference.ParseNormalizedNamed(identity)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.svc.VerifyStored(context.Background(), img, reference.TagNameOnly(named), pol)
}
