package image

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crivet/crivet/image/trust"
	"github.com/crivet/crivet/policy"
	"github.com/opencontainers/go-digest"
)

// FuzzReferenceResolution feeds arbitrary client references (ImageStatus,
// CreateContainer's image and user_specified_image) to the lookup and the
// pull-candidate resolution. Neither may panic, and an ID-shaped reference
// may only ever find the image whose ID it is a prefix of.
func FuzzReferenceResolution(f *testing.F) {
	dir := f.TempDir()
	svc, err := Open(Config{
		Root: filepath.Join(dir, "root"), RunRoot: filepath.Join(dir, "run"), Driver: "vfs",
		RegistriesConf: filepath.Join(dir, "absent-registries.conf"), RegistriesD: filepath.Join(dir, "absent.d"),
		Policies: policy.NewStore(filepath.Join(dir, "policy.json"), ""),
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = svc.Close() })
	// One stored image (no layers) with a name, a digest and a record.
	id := digest.FromString("config").Encoded()
	if _, err := svc.store.CreateImage(id, []string{"reg.example/app:1"}, "", "", nil); err != nil {
		f.Fatal(err)
	}
	rec := &Record{ManifestDigest: digest.FromString("manifest"), References: []Reference{{User: "app", Resolved: "reg.example/app:1"}}}
	if err := svc.saveRecord(id, rec); err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		"", "app", "reg.example/app:1", "reg.example/app@" + digest.FromString("manifest").String(),
		"sha256:" + id, id, "sha256:" + id[:12], id[:12], "sha256:", "sha256:zz", "sha256:" + id + "0",
		"docker.io/library/sha256:" + id, "UPPER/Case", "a/../b", "reg:99999999999/x", "x@sha256", "x@sha256:", "@", ":", "//",
		"localhost:5000/a/b/c:tag@sha256:" + strings.Repeat("a", 64), strings.Repeat("a", 300),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		fd, err := svc.resolve(ref)
		if err == nil {
			if fd.Img.ID != id {
				t.Fatalf("%q found unknown image %s", ref, fd.Img.ID)
			}
			if fd.How == trust.ByID && !strings.HasPrefix(id, strings.TrimPrefix(strings.TrimSpace(ref), "sha256:")) {
				t.Fatalf("%q matched image %s as an ID it is not a prefix of", ref, fd.Img.ID)
			}
		}
		if cands, err := svc.candidates(svc.systemContext(), ref); err == nil && len(cands) == 0 {
			t.Fatalf("%q: no candidates and no error", ref)
		}
		if v, err := svc.Get(ref); err == nil {
			_ = (&trust.Found{How: trust.ByID, Rec: v.Record}).Identities()
		}
	})
}
