package image

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crivet/crivet/test/fixtures"
	"github.com/opencontainers/go-digest"
)

const (
	schema2MIME = "application/vnd.docker.distribution.manifest.v2+json"
	schema1MIME = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	ociIndex    = "application/vnd.oci.image.index.v1+json"
)

// Manifests that used to panic the daemon, or that no pull may trust:
// each is an error, the store is untouched, and the service keeps working.
func TestHostileManifestsAreErrorsNotPanics(t *testing.T) {
	e, h := hostileEnv(t, 2*time.Second)
	other := h.PushRandomImage(t, "good/app", "1", 64, 1, fixtures.Delivery{})
	lying := digest.FromString("not the manifest")
	h.SetManifest("bad/lying", lying.String(), schema2MIME, []byte(mustRaw(t, h, other)), fixtures.Delivery{})

	for _, tc := range []struct {
		name, repo, ref, mime, body string
		want                        []string
		bad                         bool
	}{
		{"schema1", "bad/schema1", "1", schema1MIME, string(fixtures.Schema1Manifest("bad/schema1", "1")), []string{"schema1 manifest", "not supported"}, true},
		{"schema1 without content type", "bad/schema1b", "1", "", string(fixtures.Schema1Manifest("bad/schema1b", "1")), []string{"schema1 manifest", "not supported"}, true},
		{"config digest empty", "bad/cfg-empty", "1", schema2MIME, string(fixtures.Schema2WithConfigDigest("")), []string{"config digest"}, true},
		{"config digest without algorithm", "bad/cfg-alg", "1", schema2MIME, string(fixtures.Schema2WithConfigDigest("sha256")), []string{"config digest"}, true},
		{"config digest without hex", "bad/cfg-hex", "1", schema2MIME, string(fixtures.Schema2WithConfigDigest("sha256:")), []string{"config digest"}, true},
		{"garbage JSON", "bad/garbage", "1", schema2MIME, `{"schemaVersion":2,"config":{"digest":`, nil, false},
		{"empty index", "bad/empty-index", "1", ociIndex, fixtures.EmptyIndex, []string{"lists no manifests"}, true},
		{"digest does not match", "bad/lying", lying.String(), "", "", []string{"manifest"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.body != "" {
				h.SetManifest(tc.repo, tc.ref, tc.mime, []byte(tc.body), fixtures.Delivery{})
			}
			ref := h.Ref(tc.repo + ":" + tc.ref)
			if strings.Contains(tc.ref, ":") {
				ref = h.Ref(tc.repo + "@" + tc.ref)
			}
			before := storeState(t, e)
			_, err, _ := pullWithin(e, ref, time.Minute)
			if err == nil {
				t.Fatalf("pull of %s succeeded", tc.name)
			}
			if !strings.HasPrefix(err.Error(), "pull "+ref+": ") {
				t.Errorf("error does not name the pull: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tc.bad && !errors.Is(err, ErrBadManifest) {
				t.Errorf("error is not ErrBadManifest: %v", err)
			}
			if after := storeState(t, e); after != before {
				t.Fatalf("failed pull changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
	mustStillPull(t, e, "fine/app:1")
}

func mustRaw(t *testing.T, h *fixtures.HostileRegistry, img fixtures.Image) string {
	t.Helper()
	// A valid manifest of another image, served under a digest it does not have.
	return string(fixtures.Schema2WithConfigDigest(img.ConfigDigest))
}

// A blob that stops after a few bytes fails the pull after the progress
// timeout, leaves nothing behind, and does not hold up other pulls.
func TestStalledBlobTimesOutAndLeavesNothing(t *testing.T) {
	e, h := hostileEnv(t, 2*time.Second)
	logs := &recordLog{}
	reopen(e, func(c *Config) { c.PullProgressTimeout = 2 * time.Second }, logs)
	stalled := h.PushRandomImage(t, "slow/stall", "1", 512<<10, 2, fixtures.Delivery{StallAfter: 4096})
	unrelated := fixtures.PushImage(t, e.ref("other/app:1"), 1024)
	before := storeState(t, e)

	var wg sync.WaitGroup
	var err error
	var took time.Duration
	wg.Go(func() { _, err, took = pullWithin(e, stalled.Ref, time.Minute) })
	// Meanwhile an unrelated pull goes through at full speed.
	time.Sleep(200 * time.Millisecond)
	got, oerr, otook := pullWithin(e, unrelated.Ref, time.Minute)
	if oerr != nil || got.ID != unrelated.ConfigDigest || otook > 2*time.Second {
		t.Errorf("unrelated pull during a stalled one: %v after %s", oerr, otook)
	}
	wg.Wait()
	if !errors.Is(err, ErrPullStalled) || !strings.Contains(err.Error(), "pull "+stalled.Ref+": no progress for 2s: registry stalled") {
		t.Fatalf("stalled pull: %v", err)
	}
	if took < 2*time.Second || took > 10*time.Second {
		t.Errorf("stalled pull failed after %s, want just over the 2s timeout", took)
	}
	if err := e.svc.Remove(unrelated.Ref); err != nil {
		t.Fatal(err)
	}
	if after := storeState(t, e); after != before {
		t.Fatalf("stalled pull left data:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if len(logs.find("pull failed")) == 0 || len(logs.find("pull finished")) == 0 {
		t.Errorf("pull outcomes not logged: %v", logs.records)
	}
	if fin := logs.find("pull finished")[0]; fin["bytes"] == "0" || fin["layers"] != "1" || fin["duration"] == "" {
		t.Errorf("pull summary: %v", fin)
	}
}

// A manifest that never finishes is bounded by the same timeout.
func TestStalledManifestTimesOut(t *testing.T) {
	e, h := hostileEnv(t, 2*time.Second)
	h.SetManifest("slow/manifest", "1", schema2MIME, fixtures.Schema2WithConfigDigest(digest.FromString("x").String()), fixtures.Delivery{StallAfter: 20})
	before := storeState(t, e)
	_, err, took := pullWithin(e, h.Ref("slow/manifest:1"), time.Minute)
	if !errors.Is(err, ErrPullStalled) || took > 10*time.Second {
		t.Fatalf("stalled manifest: %v after %s", err, took)
	}
	if after := storeState(t, e); after != before {
		t.Fatalf("store changed:\n%s\n%s", before, after)
	}
	mustStillPull(t, e, "fine/app:1")
}

// Progress is progress: a blob trickling a byte every 100 ms for longer
// than the timeout completes.
func TestSlowDripIsNotAStall(t *testing.T) {
	e, h := hostileEnv(t, 2*time.Second)
	img := h.PushRandomImage(t, "slow/drip", "1", 0, 1, fixtures.Delivery{DripLast: 40, DripEvery: 100 * time.Millisecond})
	got, err, took := pullWithin(e, img.Ref, time.Minute)
	if err != nil {
		t.Fatalf("dripping pull: %v", err)
	}
	if got.ID != img.ConfigDigest {
		t.Fatalf("pulled %s, want %s", got.ID, img.ConfigDigest)
	}
	if took < 4*time.Second {
		t.Fatalf("pull took %s: the blob did not drip for longer than the timeout", took)
	}
}

// A caller that gives up does not cancel the identical pull another
// caller still waits for.
func TestSharedPullSurvivesOneCallerLeaving(t *testing.T) {
	e, h := hostileEnv(t, 10*time.Second)
	img := h.PushRandomImage(t, "slow/shared", "1", 0, 1, fixtures.Delivery{DripLast: 15, DripEvery: 100 * time.Millisecond})
	var wg sync.WaitGroup
	var quitErr, stayErr error
	wg.Go(func() { _, quitErr, _ = pullWithin(e, img.Ref, 500*time.Millisecond) })
	wg.Go(func() {
		time.Sleep(50 * time.Millisecond)
		_, stayErr, _ = pullWithin(e, img.Ref, time.Minute)
	})
	wg.Wait()
	if quitErr == nil {
		t.Fatal("the impatient caller's pull did not end with its deadline")
	}
	if stayErr != nil {
		t.Fatalf("the patient caller's pull failed with the other's cancellation: %v", stayErr)
	}
	if n := len(e.decisions.all()); n != 1 {
		t.Fatalf("%d decisions: the pull was not shared", n)
	}
}
