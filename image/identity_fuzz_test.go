package image

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"

	"github.com/crivet/crivet/image/trust"
	"github.com/crivet/crivet/policy"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
)

// FuzzLookupAndIdentity drives the lookup and the identity rule together:
// for stored states made from the fuzzer's bytes (images with names,
// pulled and imported references, moved names, digests no record explains,
// images with no record) and any reference, whatever the lookup finds is
// verified only as provenance recorded for that image under the name that
// found it (or, by ID, any recorded provenance) — or it is refused.
func FuzzLookupAndIdentity(f *testing.F) {
	for _, seed := range []struct {
		state []byte
		ref   string
	}{
		{[]byte{0, 1, 2, 3, 4, 5, 6, 7}, "team/app:1"},
		{[]byte{9, 9, 1, 0, 3}, "pause"},
		{[]byte{7, 3, 5, 1, 8, 2}, "reg.example/team/app:1"},
		{[]byte{1, 2, 3}, "reg.example/team/app@" + digest.FromString("m1").String()},
		{[]byte{4, 4, 4, 4}, "docker.io/library/pause:3.10"},
		{[]byte{2, 6, 1}, "sha256:" + digest.FromString("c1").Encoded()[:12]},
		{[]byte{5}, digest.FromString("c2").Encoded()},
	} {
		f.Add(seed.state, seed.ref)
	}
	f.Fuzz(func(t *testing.T, state []byte, ref string) {
		if len(state) > 64 || len(ref) > 256 {
			return
		}
		dir := t.TempDir()
		conf := filepath.Join(dir, "registries.conf")
		writeFile(t, conf, `unqualified-search-registries = ["reg.example", "docker.io"]
[aliases]
"pause" = "registry.k8s.io/pause"
`)
		svc, err := Open(Config{
			Root: filepath.Join(dir, "root"), RunRoot: filepath.Join(dir, "run"), Driver: "vfs",
			RegistriesConf: conf, RegistriesD: filepath.Join(dir, "absent.d"),
			Policies: policy.NewStore(filepath.Join(dir, "policy.json"), ""),
			Logger:   slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer svc.Close()
		buildFuzzState(t, svc, state)

		fd, err := svc.resolve(ref)
		if err != nil {
			return
		}
		rec, err := svc.recordOf(fd.Img)
		if err != nil {
			t.Fatal(err)
		}
		ids := fd.Identities()
		if fd.How == trust.ByStoreName && len(ids) > 0 {
			t.Fatalf("%q found %s by a stored name without provenance, yet verifies it as %v", ref, fd.Img.ID, ids)
		}
		for _, id := range ids {
			if !recordedAs(rec, fd, id) {
				t.Fatalf("%q (found by %s as %v) is verified as %s (manifest %s), which image %s was never recorded as: %+v",
					ref, fd.How, fd.Name, id.Name, id.Manifest, fd.Img.ID, rec.References)
			}
		}
	})
}

// recordedAs: id is one of rec's references, and for a name match one
// under that very name.
func recordedAs(rec *Record, fd *trust.Found, id trust.Identity) bool {
	for _, r := range rec.References {
		if r.Import != nil {
			if id.Name == r.Import.String() && id.Manifest == r.Import.Manifest {
				return fd.How == trust.ByID || slices.ContainsFunc(fd.Refs, func(x Reference) bool { return x.Import != nil && x.Import.String() == id.Name })
			}
			continue
		}
		rn, err := reference.ParseNormalizedNamed(r.Resolved)
		if err != nil || id.Manifest != r.ManifestFor(rec) {
			continue
		}
		idn, err := reference.ParseNormalizedNamed(id.Name)
		if err != nil || idn.Name() != rn.Name() {
			continue
		}
		if fd.How == trust.ByID {
			return true
		}
		if fd.Name.String() == id.Name && !r.Formerly {
			return true
		}
	}
	return false
}

// buildFuzzState stores up to 4 layer-less images; each byte picks a fact.
func buildFuzzState(t *testing.T, svc *Service, state []byte) {
	names := []string{"reg.example/team/app:1", "docker.io/team/app:1", "docker.io/library/pause:3.10",
		"registry.k8s.io/pause:latest", "reg.example/team/app:2", "localhost/crivet-unnamed-image:latest"}
	type img struct {
		id    string
		names []string
		rec   Record
	}
	imgs := make([]*img, 4)
	for i := range imgs {
		imgs[i] = &img{id: digest.FromString(fmt.Sprintf("c%d", i)).Encoded()}
	}
	man := func(b byte) digest.Digest { return digest.FromString(fmt.Sprintf("m%d", b%4)) }
	for i, b := range state {
		im := imgs[int(b)%len(imgs)]
		name := names[int(b>>2)%len(names)]
		switch (int(b>>5) + i) % 5 {
		case 0: // a pull under name
			im.names = append(im.names, name)
			im.rec.References = append(im.rec.References, Reference{User: name, Resolved: name, Manifest: man(b)})
		case 1: // an import under name
			im.names = append(im.names, name)
			im.rec.References = append(im.rec.References, Reference{User: name, Resolved: name,
				Import: &ImportSource{Transport: "docker-archive", Path: "/a.tar", Name: name, Manifest: man(b + 1)}})
		case 2: // a stored name no record explains
			im.names = append(im.names, name)
		case 3: // a name that moved elsewhere
			im.rec.References = append(im.rec.References, Reference{User: name, Resolved: name, Manifest: man(b), Formerly: true})
		case 4: // a legacy record: one manifest for all references
			im.rec.ManifestDigest = man(b + 2)
		}
	}
	taken := map[string]bool{}
	for _, im := range imgs {
		var own []string
		for _, n := range im.names {
			if !taken[n] { // a name belongs to one image
				taken[n] = true
				own = append(own, n)
			}
		}
		if _, err := svc.store.CreateImage(im.id, own, "", "", nil); err != nil {
			t.Fatal(err)
		}
		if len(im.rec.References) > 0 || im.rec.ManifestDigest != "" {
			if err := svc.saveRecord(im.id, &im.rec); err != nil {
				t.Fatal(err)
			}
		}
	}
}
