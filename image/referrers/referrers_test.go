package referrers_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/crivet/crivet/image/referrers"
	"github.com/crivet/crivet/test/fixtures"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"
)

const attestationType = "https://example.com/attestation/v1"

// sysFor returns a SystemContext that reads only a registries.conf marking
// regs insecure, and no host credentials or certificates.
func sysFor(t *testing.T, regs ...*fixtures.Registry) *types.SystemContext {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	fixtures.WriteRegistriesConf(t, conf, regs...)
	return &types.SystemContext{
		SystemRegistriesConfPath:    conf,
		SystemRegistriesConfDirPath: filepath.Join(dir, "registries.conf.d"),
		AuthFilePath:                filepath.Join(dir, "auth.json"),
		DockerPerHostCertDirPath:    filepath.Join(dir, "certs.d"),
	}
}

func named(t *testing.T, ref string) reference.Named {
	t.Helper()
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func finder() (*referrers.Finder, *fixtures.Buffer) {
	logs := &fixtures.Buffer{}
	return &referrers.Finder{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}, logs
}

func find(t *testing.T, f *referrers.Finder, sys *types.SystemContext, img fixtures.Image) ([]referrers.Found, error) {
	t.Helper()
	return f.Find(context.Background(), sys, named(t, img.Repo()), digest.Digest(img.ManifestDigest))
}

// tagExists says whether repo has the tag, read straight from the registry.
func tagExists(t *testing.T, reg *fixtures.Registry, repo, tag string) bool {
	t.Helper()
	req, _ := http.NewRequest(http.MethodHead, reg.URL()+"/v2/"+repo+"/manifests/"+tag, nil)
	req.Header.Set("Accept", imgspecv1.MediaTypeImageIndex)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func byManifest(found []referrers.Found) map[string]referrers.Found {
	m := map[string]referrers.Found{}
	for _, f := range found {
		m[f.Manifest.String()] = f
	}
	return m
}

// TestFindFixtureBundles: a signature and an attestation attached as cosign
// does are both found, through the API where the registry has one and
// through the tag schema where it has not.
func TestFindFixtureBundles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(testing.TB) *fixtures.Registry
		want  string
	}{
		{"referrers API", fixtures.StartRegistryWithReferrers, referrers.SourceReferrersAPI},
		{"tag schema", fixtures.StartRegistry, referrers.SourceTagSchema},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := tc.start(t)
			img := fixtures.PushImage(t, reg.Ref("team/app:v1"), 64, fixtures.WithOCI())
			other := fixtures.PushImage(t, reg.Ref("team/app:v2"), 64, fixtures.WithOCI())
			sig := fixtures.FakeBundle(t, fixtures.CosignSignPredicateType)
			att := fixtures.FakeBundle(t, attestationType)
			sigRef := fixtures.AttachBundle(t, img.DigestRef(), sig, fixtures.CosignSignPredicateType)
			attRef := fixtures.AttachBundle(t, img.DigestRef(), att, attestationType)
			// Another image's signature must not be returned.
			fixtures.AttachBundle(t, other.DigestRef(), fixtures.FakeBundle(t, fixtures.CosignSignPredicateType), fixtures.CosignSignPredicateType)

			// The fixture wrote the tag schema exactly when there is no API.
			if got, want := tagExists(t, reg, "team/app", fixtures.ReferrersTag(img.ManifestDigest)), tc.want == referrers.SourceTagSchema; got != want {
				t.Fatalf("tag schema index exists: %v, want %v", got, want)
			}

			f, _ := finder()
			found, err := find(t, f, sysFor(t, reg), img)
			if err != nil {
				t.Fatalf("Find: %v", err)
			}
			if len(found) != 2 {
				t.Fatalf("Find returned %d bundles, want 2: %+v", len(found), found)
			}
			m := byManifest(found)
			for ref, want := range map[string][]byte{sigRef: sig, attRef: att} {
				got, ok := m[ref]
				if !ok {
					t.Fatalf("referrer %s not found in %v", ref, found)
				}
				if !bytes.Equal(got.Bundle, want) {
					t.Errorf("bundle of %s = %q, want %q", ref, got.Bundle, want)
				}
				if got.Source != tc.want {
					t.Errorf("bundle %s found via %q, want %q", ref, got.Source, tc.want)
				}
				if got.Repository != reg.Addr+"/team/app" {
					t.Errorf("bundle %s found in %q", ref, got.Repository)
				}
			}
			if got := m[attRef].Annotations["dev.sigstore.bundle.predicateType"]; got != attestationType {
				t.Errorf("attestation predicate type annotation = %q", got)
			}
		})
	}
}

// TestFindCosign: bundles written by the real cosign v3, with its defaults,
// are found: through the referrers API where the registry has one, and the
// tag schema cosign writes where it has not.
func TestFindCosign(t *testing.T) {
	key := fixtures.NewCosignKey(t) // skips unless cosign is built or may be
	for _, tc := range []struct {
		name  string
		start func(testing.TB) *fixtures.Registry
		want  string
	}{
		{"referrers API", fixtures.StartRegistryWithReferrers, referrers.SourceReferrersAPI},
		{"tag schema", fixtures.StartRegistry, referrers.SourceTagSchema},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := tc.start(t)
			img := fixtures.PushImage(t, reg.Ref("team/app:v1"), 64, fixtures.WithOCI())
			sys := sysFor(t, reg)
			f, _ := finder()

			key.Sign(t, img.DigestRef())
			if got, want := tagExists(t, reg, "team/app", fixtures.ReferrersTag(img.ManifestDigest)), tc.want == referrers.SourceTagSchema; got != want {
				t.Fatalf("cosign wrote the tag schema index: %v, want %v", got, want)
			}
			found, err := find(t, f, sys, img)
			if err != nil {
				t.Fatalf("Find: %v", err)
			}
			if len(found) != 1 {
				t.Fatalf("Find returned %d bundles after cosign sign, want 1", len(found))
			}
			checkCosignBundle(t, found[0], tc.want, fixtures.CosignSignPredicateType, img.ManifestDigest)

			key.Attest(t, img.DigestRef(), attestationType, []byte(`{"ok":true}`))
			found, err = find(t, f, sys, img)
			if err != nil {
				t.Fatalf("Find: %v", err)
			}
			if len(found) != 2 {
				t.Fatalf("Find returned %d bundles after cosign attest, want 2", len(found))
			}
			var types []string
			for _, fd := range found {
				pt := fd.Annotations["dev.sigstore.bundle.predicateType"]
				types = append(types, pt)
				checkCosignBundle(t, fd, tc.want, pt, img.ManifestDigest)
			}
			slices.Sort(types)
			if want := []string{attestationType, fixtures.CosignSignPredicateType}; !slices.Equal(types, want) {
				t.Errorf("predicate types %v, want %v", types, want)
			}
		})
	}
}

// checkCosignBundle checks that fd is a bundle v0.3 whose DSSE statement is
// about subject with predicateType.
func checkCosignBundle(t *testing.T, fd referrers.Found, source, predicateType, subject string) {
	t.Helper()
	if fd.Source != source {
		t.Errorf("found via %q, want %q", fd.Source, source)
	}
	var b struct {
		MediaType    string `json:"mediaType"`
		DSSEEnvelope struct {
			Payload     []byte `json:"payload"`
			PayloadType string `json:"payloadType"`
		} `json:"dsseEnvelope"`
	}
	if err := json.Unmarshal(fd.Bundle, &b); err != nil {
		t.Fatalf("bundle is not JSON: %v\n%s", err, fd.Bundle)
	}
	if b.MediaType != referrers.BundleMediaType {
		t.Errorf("bundle media type %q", b.MediaType)
	}
	var st struct {
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(b.DSSEEnvelope.Payload, &st); err != nil {
		t.Fatalf("DSSE payload (%s) is not JSON: %v", b.DSSEEnvelope.PayloadType, err)
	}
	if st.PredicateType != predicateType {
		t.Errorf("statement predicate type %q, want %q", st.PredicateType, predicateType)
	}
	d := digest.Digest(subject)
	if len(st.Subject) != 1 || st.Subject[0].Digest[string(d.Algorithm())] != d.Encoded() {
		t.Errorf("statement subject %+v, want %s", st.Subject, subject)
	}
}

// TestFindNone: no referrers at all is no bundle and no error, on both
// kinds of registry, and for a repository the registry does not have.
func TestFindNone(t *testing.T) {
	for _, start := range []func(testing.TB) *fixtures.Registry{fixtures.StartRegistryWithReferrers, fixtures.StartRegistry} {
		reg := start(t)
		img := fixtures.PushImage(t, reg.Ref("team/app:v1"), 64, fixtures.WithOCI())
		f, _ := finder()
		for _, repo := range []string{img.Repo(), reg.Ref("team/absent")} {
			found, err := f.Find(context.Background(), sysFor(t, reg), named(t, repo), digest.Digest(img.ManifestDigest))
			if err != nil || len(found) != 0 {
				t.Errorf("Find(%s) = %v, %v; want nothing and no error", repo, found, err)
			}
		}
	}
}

// proxy serves the registry up through override, which answers the
// requests it wants to (returning true).
func proxy(t *testing.T, up *fixtures.Registry, override func(w http.ResponseWriter, r *http.Request) bool) *fixtures.Registry {
	t.Helper()
	u, err := url.Parse(up.URL())
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if override(w, r) {
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return &fixtures.Registry{Addr: strings.TrimPrefix(srv.URL, "http://")}
}

// TestFindRegistryFailing: a registry that fails is an error, never "no
// signature": 500 on the referrers API, 500 on the tag schema, 500 on a
// referrer manifest, and a registry that is down.
func TestFindRegistryFailing(t *testing.T) {
	fail := func(part string) func(http.ResponseWriter, *http.Request) bool {
		return func(w http.ResponseWriter, r *http.Request) bool {
			if strings.Contains(r.URL.Path, part) {
				http.Error(w, "registry on fire", http.StatusInternalServerError)
				return true
			}
			return false
		}
	}
	for _, tc := range []struct {
		name  string
		start func(testing.TB) *fixtures.Registry
		part  string
	}{
		{"referrers API", fixtures.StartRegistryWithReferrers, "/referrers/"},
		{"tag schema", fixtures.StartRegistry, "/manifests/sha256-"},
		{"referrer manifest", fixtures.StartRegistryWithReferrers, "/manifests/sha256:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := tc.start(t)
			img := fixtures.PushImage(t, up.Ref("team/app:v1"), 64, fixtures.WithOCI())
			fixtures.AttachBundle(t, img.DigestRef(), fixtures.FakeBundle(t, fixtures.CosignSignPredicateType), fixtures.CosignSignPredicateType)
			front := proxy(t, up, fail(tc.part))
			f, _ := finder()
			found, err := f.Find(context.Background(), sysFor(t, front), named(t, front.Ref("team/app")), digest.Digest(img.ManifestDigest))
			if err == nil || !strings.Contains(err.Error(), "500") {
				t.Fatalf("Find = %v, %v; want an error with the 500", found, err)
			}
		})
	}
	t.Run("down", func(t *testing.T) {
		reg := fixtures.StartRegistryWithReferrers(t)
		img := fixtures.PushImage(t, reg.Ref("team/app:v1"), 64, fixtures.WithOCI())
		reg.Stop()
		f, _ := finder()
		if found, err := find(t, f, sysFor(t, reg), img); err == nil {
			t.Fatalf("Find on a stopped registry = %v, nil; want an error", found)
		}
	})
}

// fakeRegistry is a registry that serves exactly what a test sets, for
// content no real registry would accept: lying digests, hostile indexes.
type fakeRegistry struct {
	*fixtures.Registry
	mu        sync.Mutex
	content   map[string][]byte // path → body, served with 200
	referrers func(w http.ResponseWriter, r *http.Request)
	manifests atomic.Int64 // manifest GETs
}

func startFake(t *testing.T) *fakeRegistry {
	t.Helper()
	fr := &fakeRegistry{content: map[string][]byte{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		if strings.Contains(r.URL.Path, "/referrers/") && fr.referrers != nil {
			fr.referrers(w, r)
			return
		}
		if strings.Contains(r.URL.Path, "/manifests/") {
			fr.manifests.Add(1)
		}
		fr.mu.Lock()
		body, ok := fr.content[r.URL.Path]
		fr.mu.Unlock()
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`)
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	fr.Registry = &fixtures.Registry{Addr: strings.TrimPrefix(srv.URL, "http://")}
	return fr
}

func (fr *fakeRegistry) set(path string, body []byte) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	fr.content[path] = body
}

// manifest stores a cosign-shaped referrer manifest of subject with the
// bundle layer descriptor layer, and returns its descriptor.
func (fr *fakeRegistry) manifest(t *testing.T, subject digest.Digest, artifactType string, layer imgspecv1.Descriptor) imgspecv1.Descriptor {
	t.Helper()
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     imgspecv1.MediaTypeImageManifest,
		"artifactType":  artifactType,
		"config":        map[string]any{"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest.FromString("{}"), "size": 2},
		"layers":        []imgspecv1.Descriptor{layer},
		"subject":       map[string]any{"mediaType": imgspecv1.MediaTypeImageManifest, "digest": subject, "size": 100},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(raw)
	fr.set("/v2/team/app/manifests/"+d.String(), raw)
	return imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageManifest, ArtifactType: artifactType, Digest: d, Size: int64(len(raw))}
}

func (fr *fakeRegistry) blob(body []byte) imgspecv1.Descriptor {
	d := digest.FromBytes(body)
	fr.set("/v2/team/app/blobs/"+d.String(), body)
	return imgspecv1.Descriptor{MediaType: referrers.BundleMediaType, Digest: d, Size: int64(len(body))}
}

func (fr *fakeRegistry) serveIndex(descs []imgspecv1.Descriptor) {
	raw, _ := json.Marshal(imgspecv1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageIndex, Manifests: descs})
	fr.referrers = func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", imgspecv1.MediaTypeImageIndex)
		_, _ = w.Write(raw)
	}
}

var subjectDigest = digest.FromString("the subject image manifest")

func (fr *fakeRegistry) find(t *testing.T, f *referrers.Finder) ([]referrers.Found, error) {
	t.Helper()
	return f.Find(context.Background(), sysFor(t, fr.Registry), named(t, fr.Ref("team/app")), subjectDigest)
}

// TestFindSkipsBadEntries: entries of other media or artifact types are not
// fetched; a manifest for another subject, a blob that does not match its
// digest, and a blob over the limit are skipped with a log line, and the
// good bundle beside them is still returned.
func TestFindSkipsBadEntries(t *testing.T) {
	fr := startFake(t)
	good := []byte(`{"good":true}`)
	goodDesc := fr.manifest(t, subjectDigest, referrers.BundleMediaType, fr.blob(good))

	// Listed, but the wrong kinds: never fetched.
	sbom := fr.manifest(t, subjectDigest, "application/spdx+json", fr.blob([]byte(`{}`)))
	index := imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageIndex, ArtifactType: referrers.BundleMediaType, Digest: digest.FromString("index"), Size: 10}

	// Fetched, then skipped.
	otherSubject := fr.manifest(t, digest.FromString("another image"), referrers.BundleMediaType, fr.blob([]byte(`{"other":true}`)))
	lyingLayer := fr.blob([]byte(`{"honest":true}`))
	fr.set("/v2/team/app/blobs/"+lyingLayer.Digest.String(), []byte(`{"honest":fals}`)) // same size, other bytes
	tampered := fr.manifest(t, subjectDigest, referrers.BundleMediaType, lyingLayer)
	big := fr.manifest(t, subjectDigest, referrers.BundleMediaType, fr.blob(bytes.Repeat([]byte("x"), 2000)))
	// A manifest whose own bytes do not match the listed digest.
	liar := fr.manifest(t, subjectDigest, referrers.BundleMediaType, fr.blob([]byte(`{"liar":true}`)))
	fr.set("/v2/team/app/manifests/"+liar.Digest.String(), []byte(`{"schemaVersion":2}`))

	fr.serveIndex([]imgspecv1.Descriptor{sbom, index, otherSubject, tampered, big, liar, goodDesc, goodDesc, tampered})
	f, logs := finder()
	f.MaxBundleBytes = 1000
	found, err := fr.find(t, f)
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	if len(found) != 1 || found[0].Manifest != goodDesc.Digest || !bytes.Equal(found[0].Bundle, good) {
		t.Fatalf("Find = %+v, want only the good bundle", found)
	}
	// sbom and index are not fetched, nor the repeated entries: 5 manifests are.
	if n := fr.manifests.Load(); n != 5 {
		t.Errorf("%d manifests fetched, want 5", n)
	}
	for _, want := range []string{
		"referrer=" + otherSubject.Digest.String() + ` error="manifest subject is not`,
		"referrer=" + tampered.Digest.String() + ` error="bundle blob content has digest`,
		"referrer=" + big.Digest.String() + ` error="bundle size 2000 exceeds the 1000-byte limit"`,
		"referrer=" + liar.Digest.String() + ` error="manifest content has digest`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

// TestFindOversizeBundleRealRegistry: a bundle over 1 MiB, attached as cosign
// would, is skipped with its size in the log; the normal one is returned.
func TestFindOversizeBundleRealRegistry(t *testing.T) {
	reg := fixtures.StartRegistryWithReferrers(t)
	img := fixtures.PushImage(t, reg.Ref("team/app:v1"), 64, fixtures.WithOCI())
	huge := append([]byte(`{"pad":"`), bytes.Repeat([]byte("x"), 1<<20)...)
	huge = append(huge, `"}`...)
	hugeRef := fixtures.AttachBundle(t, img.DigestRef(), huge, fixtures.CosignSignPredicateType)
	okRef := fixtures.AttachBundle(t, img.DigestRef(), fixtures.FakeBundle(t, fixtures.CosignSignPredicateType), fixtures.CosignSignPredicateType)
	// A descriptor that understates the blob: the read stops at the limit.
	lieRef := fixtures.AttachBundleLayer(t, img.DigestRef(), append(bytes.Repeat([]byte(" "), 1<<20), "{}"...), fixtures.CosignSignPredicateType,
		func(d *v1.Descriptor) { d.Size = 10 })

	// A small blob whose descriptor has the right digest but a wrong size.
	small := fixtures.FakeBundle(t, fixtures.CosignSignPredicateType)
	shortRef := fixtures.AttachBundleLayer(t, img.DigestRef(), small, fixtures.CosignSignPredicateType,
		func(d *v1.Descriptor) { d.Size-- })

	f, logs := finder()
	found, err := find(t, f, sysFor(t, reg), img)
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	if len(found) != 1 || found[0].Manifest.String() != okRef {
		t.Fatalf("Find = %v, want only %s", found, okRef)
	}
	for _, want := range []string{
		fmt.Sprintf(`referrer=%s error="bundle size %d exceeds the 1048576-byte limit"`, hugeRef, len(huge)),
		fmt.Sprintf(`referrer=%s error="response body exceeds the 1048576-byte limit"`, lieRef),
		fmt.Sprintf(`referrer=%s error="bundle blob sha256:`, shortRef),
		fmt.Sprintf(`is %d bytes, the layer descriptor says %d"`, len(small), len(small)-1),
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

// TestFindManyReferrers: 10,000 listed referrers are cut to the first 64,
// with a log line; nothing more is fetched.
func TestFindManyReferrers(t *testing.T) {
	fr := startFake(t)
	descs := make([]imgspecv1.Descriptor, 10000)
	for i := range descs {
		descs[i] = imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageManifest, ArtifactType: referrers.BundleMediaType,
			Digest: digest.FromString(fmt.Sprint(i)), Size: 500}
	}
	// The last one is real, and beyond the bound.
	descs[len(descs)-1] = fr.manifest(t, subjectDigest, referrers.BundleMediaType, fr.blob([]byte(`{}`)))
	fr.serveIndex(descs)
	f, logs := finder()
	found, err := fr.find(t, f)
	if err != nil || len(found) != 0 {
		t.Fatalf("Find = %v, %v; want nothing (the only bundle is past the bound), no error", found, err)
	}
	if n := fr.manifests.Load(); n != 64 {
		t.Errorf("%d manifests fetched, want 64", n)
	}
	if want := "too many referrers, ignoring the rest"; !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), "candidates=10000") {
		t.Errorf("logs lack %q with candidates=10000:\n%s", want, logs)
	}
}

// TestFindHugeIndex: an index over the limit, even one that never ends, is
// an error after the limit is read, not a hang or an allocation without end.
func TestFindHugeIndex(t *testing.T) {
	fr := startFake(t)
	fr.referrers = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", imgspecv1.MediaTypeImageIndex)
		_, _ = w.Write([]byte(`{"schemaVersion":2,"manifests":[`))
		chunk := bytes.Repeat([]byte(`{"mediaType":"x","digest":"sha256:0","size":1},`), 1000)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
	f, _ := finder()
	found, err := fr.find(t, f)
	if err == nil || !strings.Contains(err.Error(), "exceeds the 4194304-byte limit") {
		t.Fatalf("Find = %v, %v; want the index size error", found, err)
	}
}

// TestFindPages: the API's Link pages are followed.
func TestFindPages(t *testing.T) {
	fr := startFake(t)
	one := fr.manifest(t, subjectDigest, referrers.BundleMediaType, fr.blob([]byte(`{"page":1}`)))
	two := fr.manifest(t, subjectDigest, referrers.BundleMediaType, fr.blob([]byte(`{"page":2}`)))
	fr.referrers = func(w http.ResponseWriter, r *http.Request) {
		d := one
		if r.URL.Query().Get("last") == "" {
			w.Header().Set("Link", fmt.Sprintf(`<%s?n=1&last=%s>; rel="next"`, r.URL.Path, one.Digest))
		} else {
			d = two
		}
		raw, _ := json.Marshal(imgspecv1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageIndex, Manifests: []imgspecv1.Descriptor{d}})
		_, _ = w.Write(raw)
	}
	f, _ := finder()
	found, err := fr.find(t, f)
	if err != nil || len(found) != 2 || found[0].Manifest != one.Digest || found[1].Manifest != two.Digest {
		t.Fatalf("Find = %v, %v; want both pages' bundles", found, err)
	}
}

// manifestShape fetches a manifest from reg and blanks what differs between
// two bundles of one kind (times, the bundle digest and size, the subject),
// so that cosign's referrer can be compared with the fixture's.
func manifestShape(t *testing.T, reg *fixtures.Registry, repo, ref, accept string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, reg.URL()+"/v2/"+repo+"/manifests/"+ref, nil)
	req.Header.Set("Accept", accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("manifest %s: %v", ref, err)
	}
	blank := func(v any, keys ...string) {
		if o, ok := v.(map[string]any); ok {
			for _, k := range keys {
				if _, ok := o[k]; ok {
					o[k] = "<blank>"
				}
			}
		}
	}
	blank(m["annotations"], "org.opencontainers.image.created")
	blank(m["subject"], "digest", "size")
	if layers, ok := m["layers"].([]any); ok {
		for _, l := range layers {
			blank(l, "digest", "size")
		}
	}
	if ms, ok := m["manifests"].([]any); ok {
		for _, d := range ms {
			blank(d, "digest", "size")
		}
	}
	return m
}

// TestFixtureMatchesCosign: AttachBundle writes the referrer manifest, and
// the tag schema index, in the same shape as the real cosign v3.
func TestFixtureMatchesCosign(t *testing.T) {
	key := fixtures.NewCosignKey(t)
	for _, start := range []func(testing.TB) *fixtures.Registry{fixtures.StartRegistryWithReferrers, fixtures.StartRegistry} {
		reg := start(t)
		byCosign := fixtures.PushImage(t, reg.Ref("team/app:v1"), 64, fixtures.WithOCI())
		byFixture := fixtures.PushImage(t, reg.Ref("team/app:v2"), 64, fixtures.WithOCI())
		key.Sign(t, byCosign.DigestRef())
		fixtureRef := fixtures.AttachBundle(t, byFixture.DigestRef(), fixtures.FakeBundle(t, fixtures.CosignSignPredicateType), fixtures.CosignSignPredicateType)

		f, _ := finder()
		found, err := find(t, f, sysFor(t, reg), byCosign)
		if err != nil || len(found) != 1 {
			t.Fatalf("Find = %v, %v", found, err)
		}
		cosignShape := manifestShape(t, reg, "team/app", found[0].Manifest.String(), imgspecv1.MediaTypeImageManifest)
		fixtureShape := manifestShape(t, reg, "team/app", fixtureRef, imgspecv1.MediaTypeImageManifest)
		if !reflect.DeepEqual(cosignShape, fixtureShape) {
			t.Errorf("referrer manifests differ:\ncosign:  %v\nfixture: %v", cosignShape, fixtureShape)
		}
		if tagExists(t, reg, "team/app", fixtures.ReferrersTag(byCosign.ManifestDigest)) {
			cosignIndex := manifestShape(t, reg, "team/app", fixtures.ReferrersTag(byCosign.ManifestDigest), imgspecv1.MediaTypeImageIndex)
			fixtureIndex := manifestShape(t, reg, "team/app", fixtures.ReferrersTag(byFixture.ManifestDigest), imgspecv1.MediaTypeImageIndex)
			if !reflect.DeepEqual(cosignIndex, fixtureIndex) {
				t.Errorf("tag schema indexes differ:\ncosign:  %v\nfixture: %v", cosignIndex, fixtureIndex)
			}
		}
	}
}

// writeMirrorConf makes mirror a mirror of primary (both insecure).
func writeMirrorConf(t *testing.T, primary, mirror *fixtures.Registry) *types.SystemContext {
	t.Helper()
	sys := sysFor(t)
	conf := fmt.Sprintf("unqualified-search-registries = []\n\n[[registry]]\nlocation = %q\ninsecure = true\n\n[[registry.mirror]]\nlocation = %q\ninsecure = true\n",
		primary.Addr, mirror.Addr)
	if err := os.WriteFile(sys.SystemRegistriesConfPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return sys
}

// TestFindMirrors: mirrors from registries.conf are asked first; one
// without referrers passes on to the primary, and a failing one is an
// error unless another source has bundles.
func TestFindMirrors(t *testing.T) {
	primary := fixtures.StartRegistryWithReferrers(t)
	img := fixtures.PushImage(t, primary.Ref("team/app:v1"), 64, fixtures.WithOCI())
	signed := fixtures.AttachBundle(t, img.DigestRef(), fixtures.FakeBundle(t, fixtures.CosignSignPredicateType), fixtures.CosignSignPredicateType)
	unsigned := fixtures.PushImage(t, primary.Ref("team/app:v2"), 64, fixtures.WithOCI())

	t.Run("empty mirror", func(t *testing.T) {
		mirror := fixtures.StartRegistry(t)
		fixtures.CopyImage(t, img.DigestRef(), mirror.Ref("team/app@"+img.ManifestDigest))
		f, _ := finder()
		found, err := find(t, f, writeMirrorConf(t, primary, mirror), img)
		if err != nil || len(found) != 1 || found[0].Manifest.String() != signed || found[0].Repository != primary.Addr+"/team/app" {
			t.Fatalf("Find = %+v, %v; want %s from the primary", found, err, signed)
		}
	})
	t.Run("mirror with bundles", func(t *testing.T) {
		mirror := fixtures.StartRegistry(t)
		fixtures.CopyImage(t, img.DigestRef(), mirror.Ref("team/app@"+img.ManifestDigest))
		mirrored := fixtures.AttachBundle(t, mirror.Ref("team/app@"+img.ManifestDigest), fixtures.FakeBundle(t, fixtures.CosignSignPredicateType), fixtures.CosignSignPredicateType)
		f, _ := finder()
		found, err := find(t, f, writeMirrorConf(t, primary, mirror), img)
		if err != nil || len(found) != 1 || found[0].Manifest.String() != mirrored || found[0].Source != referrers.SourceTagSchema {
			t.Fatalf("Find = %+v, %v; want %s from the mirror's tag schema", found, err, mirrored)
		}
	})
	t.Run("failing mirror", func(t *testing.T) {
		mirror := fixtures.StartRegistry(t)
		mirror.Stop()
		f, logs := finder()
		sys := writeMirrorConf(t, primary, mirror)
		found, err := find(t, f, sys, img)
		if err != nil || len(found) != 1 || found[0].Manifest.String() != signed {
			t.Fatalf("Find = %+v, %v; want %s from the primary", found, err, signed)
		}
		if !strings.Contains(logs.String(), "referrers found after another source failed") {
			t.Errorf("the mirror's failure is not logged:\n%s", logs)
		}
		// Nothing anywhere, but the mirror could not be asked: an error.
		if found, err := find(t, f, sys, unsigned); err == nil {
			t.Fatalf("Find with a failed mirror and an unsigned image = %v, nil; want an error", found)
		}
	})
}

// TestFindAuth: credentials come from the auth file; a registry refusing
// the request is an error, not "no signature".
func TestFindAuth(t *testing.T) {
	for _, start := range []func(testing.TB) *fixtures.Registry{fixtures.StartRegistryWithReferrers, fixtures.StartRegistry} {
		reg := start(t)
		img := fixtures.PushImage(t, reg.Ref("team/app:v1"), 64, fixtures.WithOCI())
		signed := fixtures.AttachBundle(t, img.DigestRef(), fixtures.FakeBundle(t, fixtures.CosignSignPredicateType), fixtures.CosignSignPredicateType)
		reg.RequireBasicAuth("user", "secret")
		sys := sysFor(t, reg)
		f, _ := finder()
		if found, err := find(t, f, sys, img); err == nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("Find without credentials = %v, %v; want a 401 error", found, err)
		}
		auth := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Addr, base64.StdEncoding.EncodeToString([]byte("user:secret")))
		if err := os.WriteFile(sys.AuthFilePath, []byte(auth), 0o600); err != nil {
			t.Fatal(err)
		}
		found, err := find(t, f, sys, img)
		if err != nil || len(found) != 1 || found[0].Manifest.String() != signed {
			t.Fatalf("Find with credentials = %+v, %v; want %s", found, err, signed)
		}
	}
}
