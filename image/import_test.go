package image

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crivet/crivet/policy"
	"github.com/crivet/crivet/test/fixtures"
)

// acceptTransport admits anything coming by transport and rejects the rest.
func acceptTransport(transport, scope string) string {
	return fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{%q:{%q:[{"type":"insecureAcceptAnything"}]}}}`, transport, scope)
}

func (e *env) importFile(path, format, name string) ([]*Image, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return e.svc.Import(ctx, ImportRequest{Path: path, Format: format, Name: name})
}

func (e *env) mustImport(path, name string) *Image {
	e.t.Helper()
	imgs, err := e.importFile(path, "", name)
	if err != nil {
		e.t.Fatalf("import %s: %v", path, err)
	}
	if len(imgs) != 1 {
		e.t.Fatalf("import %s: %d images, want 1", path, len(imgs))
	}
	return imgs[0]
}

// A docker-archive imported (registry gone) is found by each of its
// RepoTags, and its record names the archive: the create-time check then
// evaluates the namespace's policy for docker-archive, not for the
// registry its names point to.
func TestImportDockerArchiveIsFoundByItsTagsAndAdmittedAsTheArchive(t *testing.T) {
	e := newEnv(t)
	src := fixtures.PushImage(t, e.ref("app/pause:1"), 1024)
	archive := filepath.Join(e.dir, "pause.tar")
	fixtures.SaveDockerArchive(t, src.Ref, archive, "registry.k8s.io/pause:3.10", "example.com/infra/pause:v1")
	e.reg.Stop()

	img := e.mustImport(archive, "")
	if img.ID != src.ConfigDigest {
		t.Fatalf("imported image %s, want the config digest %s", img.ID, src.ConfigDigest)
	}
	for _, name := range []string{"registry.k8s.io/pause:3.10", "example.com/infra/pause:v1"} {
		got, err := e.svc.Get(name)
		if err != nil || got.ID != img.ID {
			t.Fatalf("ImageStatus(%s): %v %v", name, got, err)
		}
	}
	want := []string{"example.com/infra/pause:v1", "registry.k8s.io/pause:3.10"}
	if !slices.Equal(img.RepoTags, want) {
		t.Fatalf("RepoTags %v, want %v", img.RepoTags, want)
	}
	var src0 *ImportSource
	for _, r := range img.Record.References {
		if r.User == "registry.k8s.io/pause:3.10" {
			src0 = r.Import
		}
	}
	if src0 == nil || src0.Transport != "docker-archive" || src0.Path != archive || src0.Manifest == "" {
		t.Fatalf("record does not name the archive: %+v", img.Record.References)
	}

	e.setNamespace("strict", rejectAll)
	e.setNamespace("kube-system", acceptTransport("docker-archive", ""))
	// A namespace trusting the registry the name points to does not trust
	// a file that merely carries the name.
	e.setNamespace("trusts-registry", acceptTransport("docker", "registry.k8s.io"))
	var rej *policy.Rejection
	if _, err := e.admit(img, "registry.k8s.io/pause:3.10", "strict"); !errors.As(err, &rej) {
		t.Fatalf("strict namespace admitted an unsigned import: %v", err)
	}
	if _, err := e.admit(img, "registry.k8s.io/pause:3.10", "trusts-registry"); !errors.As(err, &rej) {
		t.Fatalf("an imported name was verified as the registry's: %v", err)
	}
	a, err := e.admit(img, "registry.k8s.io/pause:3.10", "kube-system")
	if err != nil || a.Identity != "docker-archive:"+archive+":registry.k8s.io/pause:3.10" {
		t.Fatalf("kube-system (accepts docker-archive): %+v %v", a, err)
	}
	// By ID: the recorded sources are the identities.
	if a, err := e.admit(img, img.ID, "kube-system"); err != nil || !a.FromRecord || !strings.HasPrefix(a.Identity, "docker-archive:") {
		t.Fatalf("by ID: %+v %v", a, err)
	}
	// The decision is the namespace's even once the file is gone.
	if err := os.Remove(archive); err != nil {
		t.Fatal(err)
	}
	e.svc.trust.ForgetAdmissions()
	if _, err := e.svc.AdmitFor(context.Background(), AdmitRequest{Image: img, UserRef: "registry.k8s.io/pause:3.10", Namespace: "kube-system"}); err != nil {
		t.Fatalf("after the archive was removed: %v", err)
	}
	last := e.decisions.all()[len(e.decisions.all())-1]
	if last["stage"] != "create" || last["outcome"] != "allowed" || !strings.HasPrefix(last["identity"], "docker-archive:"+archive) {
		t.Fatalf("create decision: %v", last)
	}
}

// An oci-archive is evaluated under its path scopes (the library's
// oci-archive identity is the resolved file), and an entry without a
// usable name needs --name.
func TestImportOCIArchiveUnderPathScope(t *testing.T) {
	e := newEnv(t)
	src := fixtures.PushImage(t, e.ref("app/web:2"), 1024, fixtures.WithOCI())
	dir := filepath.Join(e.dir, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	named := filepath.Join(dir, "web.tar")
	fixtures.SaveOCIArchive(t, src.Ref, named, "example.com/web:2", false)
	unnamed := filepath.Join(dir, "unnamed.tar")
	fixtures.SaveOCIArchive(t, src.Ref, unnamed, "", false)
	e.reg.Stop()
	e.setGlobal(acceptTransport("oci-archive", dir))

	img := e.mustImport(named, "")
	if img.ID != src.ConfigDigest || !slices.Equal(img.RepoTags, []string{"example.com/web:2"}) {
		t.Fatalf("imported %s %v", img.ID, img.RepoTags)
	}
	if _, err := e.importFile(unnamed, "", ""); err == nil || !strings.Contains(err.Error(), "--name") {
		t.Fatalf("unnamed entry without --name: %v", err)
	}
	if img2 := e.mustImport(unnamed, "example.com/web:renamed"); img2.ID != img.ID {
		t.Fatalf("--name import is another image: %s", img2.ID)
	}
	e.setNamespace("images-dir", acceptTransport("oci-archive", dir))
	e.setNamespace("other-dir", acceptTransport("oci-archive", "/srv/elsewhere"))
	if _, err := e.admit(img, "example.com/web:2", "images-dir"); err != nil {
		t.Fatalf("namespace accepting the archive's directory: %v", err)
	}
	var rej *policy.Rejection
	if _, err := e.admit(img, "example.com/web:2", "other-dir"); !errors.As(err, &rej) {
		t.Fatalf("namespace accepting another directory: %v", err)
	}
}

// Under a global policy that rejects by default, an unsigned archive is
// refused like a pull (the library's rejection) and the store is as before.
func TestImportRefusedByGlobalPolicyLeavesNothing(t *testing.T) {
	e := newEnv(t)
	src := fixtures.PushImage(t, e.ref("app/x:1"), 1024)
	archive := filepath.Join(e.dir, "x.tar")
	fixtures.SaveDockerArchive(t, src.Ref, archive, "example.com/x:1")
	e.setGlobal(anyDocker(`{"type":"insecureAcceptAnything"}`)) // docker yes, archives: default reject
	before := storeState(t, e)
	_, err := e.importFile(archive, "", "")
	var rej *policy.Rejection
	if !errors.As(err, &rej) || !strings.Contains(err.Error(), "Source image rejected: Running image docker-archive:") {
		t.Fatalf("import under a reject default: %v", err)
	}
	if after := storeState(t, e); after != before {
		t.Fatalf("refused import changed the store:\n%s\n%s", before, after)
	}
	d := e.decisions.all()
	if last := d[len(d)-1]; last["stage"] != "import" || last["outcome"] != "rejected" {
		t.Fatalf("import decision: %v", last)
	}
}

// Garbage, a truncated archive and a layout whose index points at nothing
// are clear errors, and leave nothing; so does an archive over max_layers.
func TestImportHostileArchivesLeaveNothing(t *testing.T) {
	e := newEnv(t)
	src := fixtures.PushImage(t, e.ref("app/two:1"), 1024, fixtures.WithLayerCount(2))
	good := filepath.Join(e.dir, "good.tar")
	fixtures.SaveDockerArchive(t, src.Ref, good, "example.com/two:1")
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(e.dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	layout := t.TempDir()
	writeFile(t, filepath.Join(layout, "oci-layout"), `{"imageLayoutVersion":"1.0.0"}`)
	writeFile(t, filepath.Join(layout, "index.json"), `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:`+strings.Repeat("0", 64)+`","size":10,"annotations":{"org.opencontainers.image.ref.name":"example.com/a:1"}}]}`)
	badIndex := t.TempDir()
	writeFile(t, filepath.Join(badIndex, "oci-layout"), `{"imageLayoutVersion":"1.0.0"}`)
	writeFile(t, filepath.Join(badIndex, "index.json"), `{"schemaVersion":2,"manifests":[{"digest":"sha256:../../etc/passwd"}]}`)
	escape := filepath.Join(e.dir, "escape.tar")
	{
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "oci-layout"), `{"imageLayoutVersion":"1.0.0"}`)
		writeFile(t, filepath.Join(dir, "index.json"), `{"schemaVersion":2,"manifests":[]}`)
		fixtures.TarDirectory(t, dir, escape)
	}

	before := storeState(t, e)
	for _, c := range []struct {
		name, path, format, want string
		is                       error
	}{
		{"garbage", write("garbage.tar", []byte("this is not an archive at all, not even close")), "", "not a tar archive", ErrBadArchive},
		{"truncated", write("truncated.tar", data[:len(data)/2]), "docker-archive", "", nil},
		{"missing manifest blob", layout, "", "no such file", ErrBadManifest},
		{"malformed index digest", badIndex, "", "invalid checksum digest", ErrBadArchive},
		{"empty layout", escape, "", "no image in it", ErrBadArchive},
		{"unknown format", good, "tarball", "archive format", nil},
	} {
		_, err := e.importFile(c.path, c.format, "")
		if err == nil || !strings.Contains(err.Error(), c.want) || (c.is != nil && !errors.Is(err, c.is)) {
			t.Errorf("%s: want an error containing %q (is %v), got %v", c.name, c.want, c.is, err)
		}
	}
	e.svc.cfg.MaxLayers = 1
	if _, err := e.importFile(good, "", ""); !errors.Is(err, ErrImageLimit) {
		t.Errorf("2 layers under max_layers 1: %v", err)
	}
	if after := storeState(t, e); after != before {
		t.Fatalf("failed imports changed the store:\n%s\n%s", before, after)
	}
}

// Export then import gives back the same image, Docker or OCI, into a
// fresh store; the archive carries the name the image was exported by.
func TestExportThenImportRoundTrips(t *testing.T) {
	e := newEnv(t)
	docker := fixtures.PushImage(t, e.ref("app/round:1"), 4096, fixtures.WithLayerCount(2))
	oci := fixtures.PushImage(t, e.ref("app/round-oci:1"), 4096, fixtures.WithOCI())
	other := newEnv(t)
	for _, src := range []fixtures.Image{docker, oci} {
		img := e.mustPull(src.Ref, "")
		path := filepath.Join(e.dir, filepath.Base(src.Repo())+".tar")
		if _, err := e.svc.Export(context.Background(), ExportRequest{Image: src.Ref, Path: path}); err != nil {
			t.Fatalf("export %s: %v", src.Ref, err)
		}
		if _, err := e.svc.Export(context.Background(), ExportRequest{Image: src.Ref, Path: path}); err == nil {
			t.Fatalf("export over an existing file succeeded")
		}
		got := other.mustImport(path, "")
		if got.ID != img.ID || !slices.Equal(got.RepoTags, []string{src.Ref}) {
			t.Fatalf("%s round trip: %s %v, want %s [%s]", src.MediaType, got.ID, got.RepoTags, img.ID, src.Ref)
		}
	}
	// A format that needs a conversion still gives an importable archive.
	conv := filepath.Join(e.dir, "converted.tar")
	if _, err := e.svc.Export(context.Background(), ExportRequest{Image: docker.Ref, Path: conv, Format: FormatOCIArchive}); err != nil {
		t.Fatal(err)
	}
	if got := other.mustImport(conv, ""); !slices.Equal(got.RepoTags, []string{docker.Ref}) {
		t.Fatalf("converted export: %v", got.RepoTags)
	}
	if _, err := e.svc.Export(context.Background(), ExportRequest{Image: "example.com/none:1", Path: filepath.Join(e.dir, "none.tar")}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("export of a missing image: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "none.tar")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed export left a file: %v", err)
	}
}

// The same image imported and then pulled under the same name keeps both
// facts: the pull is verified as the registry's, the import as the file.
func TestImportAndPullOfOneImageCoexist(t *testing.T) {
	e := newEnv(t)
	src := fixtures.PushImage(t, e.ref("app/both:1"), 1024)
	archive := filepath.Join(e.dir, "both.tar")
	fixtures.SaveDockerArchive(t, src.Ref, archive, src.Ref)
	imported := e.mustImport(archive, "")
	pulled := e.mustPull(src.Ref, "")
	if pulled.ID != imported.ID {
		t.Fatalf("two images: %s %s", pulled.ID, imported.ID)
	}
	kinds := map[bool]bool{}
	for _, r := range pulled.Record.References {
		if r.User == src.Ref {
			kinds[r.Import != nil] = true
		}
	}
	if !kinds[true] || !kinds[false] {
		t.Fatalf("pull replaced the import reference (or not recorded): %+v", pulled.Record.References)
	}
	e.reg.Stop()
	e.setNamespace("registry-only", anyDocker(`{"type":"insecureAcceptAnything"}`))
	e.setNamespace("archives-only", acceptTransport("docker-archive", ""))
	for ns, prefix := range map[string]string{"registry-only": src.Ref, "archives-only": "docker-archive:"} {
		a, err := e.admit(pulled, src.Ref, ns)
		if err != nil || !strings.HasPrefix(a.Identity, prefix) {
			t.Fatalf("%s: %+v %v", ns, a, err)
		}
	}
}

// A sigstore signature an oci-archive carries as an attachment is
// verified at import under the global policy, kept, and verified again
// (offline, the file gone) at create time; an unsigned archive is refused.
func TestImportSignedOCIArchiveVerifiedAtCreate(t *testing.T) {
	e := newEnv(t)
	key, other := fixtures.NewSigstoreKey(t), fixtures.NewSigstoreKey(t)
	signed := fixtures.PushImage(t, e.ref("app/signed:1"), 1024, fixtures.WithOCI())
	key.Sign(t, signed.Ref)
	unsigned := fixtures.PushImage(t, e.ref("app/unsigned:1"), 1024, fixtures.WithOCI())
	signedTar, unsignedTar := filepath.Join(e.dir, "signed.tar"), filepath.Join(e.dir, "unsigned.tar")
	fixtures.SaveOCIArchive(t, signed.Ref, signedTar, signed.Ref, true)
	fixtures.SaveOCIArchive(t, unsigned.Ref, unsignedTar, unsigned.Ref, false)
	e.reg.Stop()
	// An oci-archive has no Docker reference of its own (as in the
	// library): the signature's identity is matched exactly.
	sigPolicy := func(pub, ident string) string {
		return fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"oci-archive":{"":[%s]}}}`,
			keyReq(pub, fmt.Sprintf(`{"type":"exactReference","dockerReference":%q}`, ident)))
	}
	e.setGlobal(sigPolicy(key.PublicKeyPath, signed.Ref))

	before := storeState(t, e)
	var rej *policy.Rejection
	if _, err := e.importFile(unsignedTar, "", ""); !errors.As(err, &rej) || !strings.Contains(err.Error(), noSignature) {
		t.Fatalf("unsigned import under a signature policy: %v", err)
	}
	if after := storeState(t, e); after != before {
		t.Fatalf("refused import changed the store:\n%s\n%s", before, after)
	}
	img := e.mustImport(signedTar, "")
	if err := os.Remove(signedTar); err != nil {
		t.Fatal(err)
	}
	e.setNamespace("strict", sigPolicy(key.PublicKeyPath, signed.Ref))
	e.setNamespace("other-key", sigPolicy(other.PublicKeyPath, signed.Ref))
	if _, err := e.admit(img, signed.Ref, "strict"); err != nil {
		t.Fatalf("signed import under the signing key's policy: %v", err)
	}
	if _, err := e.admit(img, signed.Ref, "other-key"); !errors.As(err, &rej) {
		t.Fatalf("signed import admitted under another key: %v", err)
	}
}

// A daemon serving the store sees an image another process imported
// (crivet image import opens the store shared), including the new
// reference added to an image whose record it had cached.
func TestImportBySharedUserSeenByServingService(t *testing.T) {
	e := newEnv(t)
	src := fixtures.PushImage(t, e.ref("app/seen:1"), 1024)
	pulled := e.mustPull(src.Ref, "")
	archive := filepath.Join(e.dir, "seen.tar")
	fixtures.SaveDockerArchive(t, src.Ref, archive, "example.com/seen:1")
	if _, err := e.svc.Get(pulled.ID); err != nil { // caches the record
		t.Fatal(err)
	}
	shared, err := Open(Config{
		Root: e.root, RunRoot: filepath.Join(e.dir, "run"),
		Policies: policy.NewStore(e.global, e.nsDir), Logger: slog.New(e.decisions), Shared: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := shared.Import(ctx, ImportRequest{Path: archive}); err != nil {
		t.Fatal(err)
	}
	_ = shared.Close()
	got, err := e.svc.Get("example.com/seen:1")
	if err != nil || got.ID != pulled.ID {
		t.Fatalf("serving service does not find the imported name: %v %v", got, err)
	}
	e.setNamespace("kube-system", acceptTransport("docker-archive", ""))
	if _, err := e.admit(got, "example.com/seen:1", "kube-system"); err != nil {
		t.Fatalf("serving service has a stale record: %v (%+v)", err, got.Record.References)
	}
}
