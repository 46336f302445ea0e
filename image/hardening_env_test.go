package image

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/test/fixtures"
)

// reopen restarts e's service with tune applied to its Config, logging
// every record to logs (when not nil) as well as the decision log.
func reopen(e *env, tune func(*Config), logs *recordLog) {
	e.t.Helper()
	if e.svc != nil {
		_ = e.svc.Close()
	}
	var h slog.Handler = e.decisions
	if logs != nil {
		logs.next = e.decisions
		h = logs
	}
	cfg := Config{
		Root: e.root, RunRoot: filepath.Join(e.dir, "run"),
		RegistriesConf: e.regConf, RegistriesD: e.regD, AuthFile: e.authFile,
		Policies: policy.NewStore(e.global, e.nsDir),
		Logger:   slog.New(h),
	}
	tune(&cfg)
	svc, err := Open(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.svc = svc
	e.t.Cleanup(func() { _ = svc.Close() })
}

// storeState is what a failed pull must not change: the images and layers
// of the store, the layer directories of the driver and the pull's
// temporary files.
func storeState(t testing.TB, e *env) string {
	t.Helper()
	var out []string
	imgs, err := e.svc.Storage().Images()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range imgs {
		out = append(out, "image "+i.ID)
	}
	layers, err := e.svc.Storage().Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		out = append(out, "layer "+l.ID)
	}
	for _, dir := range []string{"tmp", "storage/overlay", "storage/overlay/l", "storage/overlay/tempdirs", "storage/overlay/staging"} {
		ents, _ := os.ReadDir(filepath.Join(e.root, dir))
		for _, d := range ents {
			if dir == "storage/overlay" && (d.Name() == "tempdirs" || d.Name() == "staging") {
				continue // the driver's scratch directories; their content is listed
			}
			out = append(out, dir+"/"+d.Name())
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// diskUsage is the space the store's files take (blocks, hard links once).
func diskUsage(root string) int64 {
	var total int64
	seen := map[uint64]bool{}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && !seen[st.Ino] {
			seen[st.Ino] = true
			total += st.Blocks * 512
		}
		return nil
	})
	return total
}

// recordLog keeps every log record's message and attributes, and passes
// each on to next, if set.
type recordLog struct {
	next    slog.Handler
	mu      sync.Mutex
	records []map[string]string
}

func (l *recordLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *recordLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *recordLog) WithGroup(string) slog.Handler            { return l }
func (l *recordLog) Handle(ctx context.Context, r slog.Record) error {
	m := map[string]string{"msg": r.Message}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	l.mu.Lock()
	l.records = append(l.records, m)
	l.mu.Unlock()
	if l.next == nil {
		return nil
	}
	return l.next.Handle(ctx, r)
}

func (l *recordLog) find(msg string) []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]string
	for _, r := range l.records {
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// pullWithin pulls with a deadline far above what the test expects, so a
// pull that hangs fails the test instead of the suite.
func pullWithin(e *env, ref string, d time.Duration) (*Image, error, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	img, err := e.svc.Pull(ctx, PullRequest{Ref: ref})
	return img, err, time.Since(start)
}

// hostileEnv is a node whose registries.conf also trusts a hostile registry.
func hostileEnv(t *testing.T, timeout time.Duration) (*env, *fixtures.HostileRegistry) {
	e := newEnv(t)
	h := fixtures.StartHostileRegistry(t)
	fixtures.WriteRegistriesConf(t, e.regConf, e.reg, h.Registry())
	reopen(e, func(c *Config) { c.PullProgressTimeout = timeout }, nil)
	return e, h
}

func mustStillPull(t *testing.T, e *env, repo string) {
	t.Helper()
	img := fixtures.PushImage(t, e.ref(repo), 1024)
	got, err, _ := pullWithin(e, img.Ref, time.Minute)
	if err != nil || got.ID != img.ConfigDigest {
		t.Fatalf("a normal pull after the hostile one: %v", err)
	}
	if _, err := e.svc.Get(img.Ref); err != nil {
		t.Fatal(err)
	}
}
