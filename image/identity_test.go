package image

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/test/fixtures"
	"github.com/opencontainers/go-digest"
)

// twoRegistryNode is a node with an internal registry that short names
// resolve to (unqualified-search-registries, an alias for "pause") and a
// second registry that stands in for docker.io (a prefix rewrite, as the
// conformance harness maps gcr.io to its loopback registry).
func twoRegistryNode(t *testing.T) (e *env, internal, hub *fixtures.Registry) {
	e = newEnv(t)
	internal, hub = e.reg, fixtures.StartRegistry(t)
	e.regConf = filepath.Join(e.dir, "registries-two.conf")
	writeFile(t, e.regConf, fmt.Sprintf(`unqualified-search-registries = [%q]

[aliases]
"pause" = "%s/infra/pause"

[[registry]]
location = %q
insecure = true

[[registry]]
prefix = "docker.io"
location = %q
insecure = true
`, internal.Addr, internal.Addr, internal.Addr, hub.Addr))
	reopen(e, func(*Config) {}, nil)
	return e, internal, hub
}

// allowInternal is a strict namespace's allow-list: the internal registry
// is trusted as it is, everything else is refused.
func allowInternal(internal *fixtures.Registry) string {
	return scoped(internal.Addr, `{"type":"insecureAcceptAnything"}`)
}

func wantRefused(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: admitted", what)
	}
	var rej *policy.Rejection
	if !errors.Is(err, policy.ErrRefused) && !errors.As(err, &rej) {
		t.Fatalf("%s: %v is not a signature-policy refusal", what, err)
	}
}

// Point 1 of issue 16: ImageStatus normalised "team/app:1" to docker.io,
// the create-time check resolved it through registries.conf to the
// internal registry and verified the docker.io image as that name.
func TestShortNameIsVerifiedAsTheNameThatFoundIt(t *testing.T) {
	e, internal, hub := twoRegistryNode(t)
	unsigned := fixtures.PushImage(t, hub.Ref("team/app:1"), 1024)
	e.setNamespace("loose", acceptAll)
	e.setNamespace("strict", allowInternal(internal))
	img := e.mustPull("docker.io/team/app:1", "loose")
	if img.ID != unsigned.ConfigDigest {
		t.Fatalf("pulled %s, want %s", img.ID, unsigned.ConfigDigest)
	}
	e.reg.Stop()
	hub.Stop()

	// The lookup resolves the short name as the pull would: to the
	// internal registry, which holds no such image here.
	for _, ref := range []string{"team/app:1", "team/app@" + unsigned.ManifestDigest} {
		if got, err := e.svc.Get(ref); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(%q) = %v, %v; want not found (short names resolve to %s)", ref, got, err, internal.Addr)
		}
		_, err := e.admit(img, ref, "strict")
		wantRefused(t, err, "strict namespace, short name "+ref)
		if !strings.Contains(err.Error(), "does not name the image being created") {
			t.Fatalf("short name %q: %v", ref, err)
		}
	}
	// The name that does find it is verified as exactly that name.
	_, err := e.admit(img, "docker.io/team/app:1", "strict")
	wantRefused(t, err, "strict namespace, docker.io name")
	a, err := e.admit(img, "docker.io/team/app:1", "loose")
	if err != nil || a.Identity != "docker.io/team/app:1" {
		t.Fatalf("loose namespace: %+v, %v; want identity docker.io/team/app:1", a, err)
	}
}

// A short name pulled through the search registries is found by the same
// text and verified as the candidate it was pulled as.
func TestShortNamePulledFromSearchRegistryIsFoundAndVerifiedAsIt(t *testing.T) {
	e, internal, _ := twoRegistryNode(t)
	src := fixtures.PushImage(t, internal.Ref("team/web:2"), 1024)
	e.setNamespace("strict", allowInternal(internal))
	img := e.mustPull("team/web:2", "strict")
	e.reg.Stop()
	for _, ref := range []string{"team/web:2", internal.Ref("team/web:2"), "team/web@" + src.ManifestDigest} {
		got, err := e.svc.Get(ref)
		if err != nil || got.ID != img.ID {
			t.Fatalf("Get(%q) = %v, %v", ref, got, err)
		}
		a, err := e.admit(img, ref, "strict")
		if err != nil || !strings.HasPrefix(a.Identity, internal.Addr+"/team/web") {
			t.Fatalf("admit %q: %+v, %v", ref, a, err)
		}
	}
}

// Point 2: an archive that carries docker.io/library/pause:3.10, on a node
// whose alias maps "pause" to the internal registry, is not that
// registry's image: "pause:3.10" does not find it, and its own name
// verifies it as the archive.
func TestArchiveNameIsNotRedirectedByAnAlias(t *testing.T) {
	e, internal, _ := twoRegistryNode(t)
	src := fixtures.PushImage(t, internal.Ref("scratch/pause:1"), 512)
	archive := filepath.Join(e.dir, "pause.tar")
	fixtures.SaveDockerArchive(t, src.Ref, archive, "docker.io/library/pause:3.10")
	e.reg.Stop()
	img := e.mustImport(archive, "")
	e.setNamespace("strict", allowInternal(internal))

	if got, err := e.svc.Get("pause:3.10"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(pause:3.10) = %v, %v; want not found (the alias names %s/infra/pause)", got, err, internal.Addr)
	}
	_, err := e.admit(img, "pause:3.10", "strict")
	wantRefused(t, err, "alias name")
	_, err = e.admit(img, "docker.io/library/pause:3.10", "strict")
	wantRefused(t, err, "archive name in the strict namespace")
	e.setNamespace("archives", `{"default":[{"type":"reject"}],"transports":{"docker-archive":{"":[{"type":"insecureAcceptAnything"}]}}}`)
	a, err := e.admit(img, "docker.io/library/pause:3.10", "archives")
	if err != nil || !strings.HasPrefix(a.Identity, "docker-archive:"+archive) {
		t.Fatalf("archive name: %+v, %v; want the archive as identity", a, err)
	}
}

// Point 3: an archive-only name with a digest its import never recorded
// (one a later pull of the same image added) finds the image but is
// verified as nothing: refused, never as a registry reference.
func TestArchiveNameWithUnrecordedDigestAdmitsNothing(t *testing.T) {
	e, internal, hub := twoRegistryNode(t)
	src := fixtures.PushImage(t, internal.Ref("scratch/app:1"), 512)
	archive := filepath.Join(e.dir, "app.tar")
	name := internal.Ref("team/app:1")
	fixtures.SaveDockerArchive(t, src.Ref, archive, name)
	img := e.mustImport(archive, "")
	copied := fixtures.PushAnnotatedCopy(t, src.Ref, hub.Ref("other/app:1"))
	e.setNamespace("loose", acceptAll)
	if again := e.mustPull("docker.io/other/app:1", "loose"); again.ID != img.ID {
		t.Fatalf("the copy is image %s, want %s", again.ID, img.ID)
	}
	e.reg.Stop()
	hub.Stop()
	e.setNamespace("strict", allowInternal(internal))

	ref := internal.Addr + "/team/app@" + copied.ManifestDigest
	got, err := e.svc.Get(ref)
	if err != nil || got.ID != img.ID {
		t.Fatalf("Get(%s) = %v, %v", ref, got, err)
	}
	_, err = e.admit(img, ref, "strict")
	wantRefused(t, err, "archive name with an unrecorded digest")
	if !strings.Contains(err.Error(), "no pull or import of it under that name is recorded") {
		t.Fatalf("refusal does not say why: %v", err)
	}
}

// Point 4: an image whose only name moved to a new image is verified,
// by ID, as the name it was pulled as, never as a made-up localhost name.
func TestImageThatLostItsNameIsVerifiedAsItsFormerName(t *testing.T) {
	e := newEnv(t)
	ref := e.ref("app/moving:1")
	first := fixtures.PushImage(t, ref, 1024)
	e.mustPull(ref, "")
	fixtures.PushImage(t, ref, 1024)
	e.mustPull(ref, "")
	e.reg.Stop()
	old, err := e.svc.Get(first.ConfigDigest)
	if err != nil {
		t.Fatal(err)
	}
	if len(old.RepoTags) != 0 {
		t.Fatalf("old image still tagged %v", old.RepoTags)
	}
	// localhost is trusted, the registry needs a signature.
	key := fixtures.NewSigstoreKey(t)
	e.setNamespace("strict", fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{"localhost":[{"type":"insecureAcceptAnything"}],%q:[%s]}}}`,
		e.reg.Addr, keyReq(key.PublicKeyPath, matchRepo)))
	for _, byID := range []string{"", first.ConfigDigest, strings.TrimPrefix(first.ConfigDigest, "sha256:")[:12]} {
		_, err := e.admit(old, byID, "strict")
		wantRefused(t, err, fmt.Sprintf("image that lost its name, by ID %q", byID))
		if strings.Contains(err.Error(), "localhost") {
			t.Fatalf("verified as a localhost name: %v", err)
		}
	}
	e.setNamespace("loose", acceptAll)
	a, err := e.admit(old, first.ConfigDigest, "loose")
	if err != nil || a.Identity != ref {
		t.Fatalf("loose namespace by ID: %+v, %v; want the former name %s", a, err, ref)
	}
	// The former name finds the new image only.
	if got, err := e.svc.Get(ref); err != nil || got.ID == old.ID {
		t.Fatalf("Get(%s) = %v, %v", ref, got, err)
	}
}

// An image with no recorded provenance at all (stored by another tool)
// is refused whatever the policy, with the reason.
func TestImageWithoutProvenanceIsRefused(t *testing.T) {
	e := newEnv(t)
	img := e.mustPull(fixtures.PushImage(t, e.ref("app/x:1"), 1024).Ref, "")
	rec := img.Record.Clone()
	rec.References = nil
	unlock, err := e.svc.lockImage(img.StorageID())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.saveRecord(img.StorageID(), rec); err != nil {
		t.Fatal(err)
	}
	unlock()
	img, err = e.svc.Get(img.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"", img.ID, e.ref("app/x:1")} {
		_, err := e.admit(img, ref, "")
		wantRefused(t, err, "accept-anything policy, reference "+ref)
		if !strings.Contains(err.Error(), "nothing to verify it as") {
			t.Fatalf("reference %q: %v", ref, err)
		}
	}
}

// Point 5: a pull of another manifest of the same image (a re-annotated
// copy) from any namespace adds provenance; it does not make the signed
// image refused where it was admitted.
func TestPullOfAnotherManifestOfTheImageAddsNeverReplaces(t *testing.T) {
	e := newEnv(t)
	key := fixtures.NewSigstoreKey(t)
	signed := fixtures.PushImage(t, e.ref("team/app:1"), 1024)
	key.Sign(t, signed.Ref)
	e.setNamespace("strict", scoped(e.reg.Addr+"/team/app", keyReq(key.PublicKeyPath, matchRepo)))
	e.setNamespace("loose", acceptAll)
	img := e.mustPull(signed.Ref, "strict")
	copied := fixtures.PushAnnotatedCopy(t, signed.Ref, e.ref("mirror/app:1"))
	if again := e.mustPull(copied.Ref, "loose"); again.ID != img.ID {
		t.Fatalf("the copy is image %s, want %s", again.ID, img.ID)
	}
	e.reg.Stop()
	img, err := e.svc.Get(img.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.svc.trust.ForgetAdmissions()
	if a, err := e.admit(img, signed.Ref, "strict"); err != nil || a.Identity != signed.Ref {
		t.Fatalf("signed image refused after a pull of another manifest: %+v, %v", a, err)
	}
	// The copy's name is verified as itself, with its own manifest.
	_, err = e.admit(img, copied.Ref, "strict")
	wantRefused(t, err, "unsigned copy's name in the strict namespace")
}

// Point 5 too: displaced signature sets are evicted oldest first, but
// never the set a namespace was admitted with.
func TestEvictionKeepsTheSignaturesAnAdmissionWasMadeWith(t *testing.T) {
	e := newEnv(t)
	key := fixtures.NewSigstoreKey(t)
	signed := fixtures.PushImage(t, e.ref("team/app:1"), 1024)
	key.Sign(t, signed.Ref)
	e.setNamespace("strict", scoped(e.reg.Addr+"/team/app", keyReq(key.PublicKeyPath, matchRepo)))
	e.setNamespace("loose", acceptAll)
	img := e.mustPull(signed.Ref, "strict")
	// The registry now serves a new set each time, without the strict
	// key's signature (another image's, moved onto this one); each loose
	// pull displaces the previous set.
	defer func(n int) { maxKeptSignatureSets = n }(maxKeptSignatureSets)
	maxKeptSignatureSets = 3
	other := fixtures.NewSigstoreKey(t)
	for i := 0; i < maxKeptSignatureSets+3; i++ {
		decoy := fixtures.PushImage(t, e.ref(fmt.Sprintf("team/app:decoy%d", i)), 64)
		other.Sign(t, decoy.Ref)
		fixtures.CopySigstoreAttachment(t, e.reg, "team/app", decoy.ManifestDigest, signed.ManifestDigest)
		e.mustPull(signed.Ref, "loose")
	}
	e.reg.Stop()
	if n := len(e.svc.keptSignatures(img.StorageID())); n > maxKeptSignatureSets+1 {
		t.Fatalf("%d kept sets, want at most %d unpinned + the pinned one", n, maxKeptSignatureSets)
	}
	img, err := e.svc.Get(img.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.svc.trust.ForgetAdmissions()
	if _, err := e.admit(img, signed.Ref, "strict"); err != nil {
		t.Fatalf("strict namespace refused after eviction: %v", err)
	}
}

// Point 9 of issue 16: with the first search registry unreachable, a short
// name is not pulled from the next one.
func TestShortNameSearchStopsAtAnUnreachableRegistry(t *testing.T) {
	e := newEnv(t)
	down, up := fixtures.StartRegistry(t), e.reg
	fixtures.PushImage(t, up.Ref("team/app:1"), 512)
	e.regConf = filepath.Join(e.dir, "registries-search.conf")
	writeFile(t, e.regConf, fmt.Sprintf(`unqualified-search-registries = [%q, %q]

[[registry]]
location = %q
insecure = true

[[registry]]
location = %q
insecure = true
`, down.Addr, up.Addr, down.Addr, up.Addr))
	reopen(e, func(*Config) {}, nil)
	down.Stop()
	_, err := e.pull("team/app:1", "")
	if !errors.Is(err, ErrRegistryUnavailable) {
		t.Fatalf("pull with the first search registry down: %v; want registry unavailable", err)
	}
	if imgs, err := e.svc.List(); err != nil || len(imgs) != 0 {
		t.Fatalf("images after the refused search: %d, %v", len(imgs), err)
	}
}

// Point 6 of issue 16: crivet image import (another process, here another
// service on the same store with its own file description) and the
// daemon's pull read, change and write one record; each holds the
// image's lock for the whole step, so neither loses the other's reference.
func TestRecordWritesOfTwoProcessesAreSerialised(t *testing.T) {
	e := newEnv(t)
	src := fixtures.PushImage(t, e.ref("app/both:1"), 1024)
	shared, err := Open(Config{
		Root: e.root, RunRoot: filepath.Join(e.dir, "run"),
		Policies: policy.NewStore(e.global, e.nsDir), Logger: slog.New(e.decisions), Shared: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	e.mustPull(src.Ref, "")
	id := strings.TrimPrefix(src.ConfigDigest, "sha256:")

	// The other process holds the image and is in the middle of its
	// read-modify-write when the daemon pulls the image again under
	// another name.
	unlock, err := shared.lockImage(id)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := shared.record(id)
	if err != nil {
		t.Fatal(err)
	}
	second := e.ref("app/both:2")
	fixtures.PushAnnotatedCopy(t, src.Ref, second)
	done := make(chan error, 1)
	go func() { _, err := e.pull(second, ""); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("the pull wrote the record while another process held it (err %v)", err)
	case <-time.After(2 * time.Second):
		// Still waiting for the lock; whatever it does must come after.
	}
	imported := &ImportSource{Transport: "docker-archive", Path: "/x.tar", Name: "example.com/both:1", Manifest: digest.Digest(src.ManifestDigest)}
	rec.AddReference(Reference{User: imported.Name, Resolved: imported.Name, Import: imported, Manifest: imported.Manifest})
	if err := shared.saveRecord(id, rec); err != nil {
		t.Fatal(err)
	}
	unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	final, err := e.svc.record(id)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range final.References {
		names = append(names, r.Resolved)
	}
	for _, want := range []string{src.Ref, second, imported.Name} {
		if !slices.Contains(names, want) {
			t.Fatalf("record lost %s: %v", want, names)
		}
	}
}
