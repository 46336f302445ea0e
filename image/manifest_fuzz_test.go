package image

import (
	"testing"

	"github.com/crivet/crivet/test/fixtures"
	"github.com/opencontainers/go-digest"
)

// validateManifest stands between registry bytes and every use of their
// digests: whatever it accepts must be safe to use, and it never panics.
func FuzzValidateManifest(f *testing.F) {
	d := digest.FromString("x").String()
	oci := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"` + d + `"},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":3,"digest":"` + d + `"}]}`
	index := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":7,"digest":"` + d + `","platform":{"architecture":"amd64","os":"linux"}}]}`
	list := `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":7,"digest":"sha256","platform":{"architecture":"amd64","os":"linux"}}]}`
	for _, seed := range []struct{ body, mime string }{
		{string(fixtures.Schema1Manifest("a/b", "1")), schema1MIME},
		{string(fixtures.Schema1Manifest("a/b", "1")), ""},
		{string(fixtures.Schema2WithConfigDigest(d)), schema2MIME},
		{string(fixtures.Schema2WithConfigDigest("")), schema2MIME},
		{string(fixtures.Schema2WithConfigDigest("sha256")), schema2MIME},
		{string(fixtures.Schema2WithConfigDigest("sha256:")), ""},
		{oci, "application/vnd.oci.image.manifest.v1+json"},
		{oci, ""},
		{index, ociIndex},
		{list, "application/vnd.docker.distribution.manifest.list.v2+json"},
		{fixtures.EmptyIndex, ociIndex},
		{`{"schemaVersion":2,"config":{"digest":`, schema2MIME},
		{`null`, schema2MIME},
		{``, ""},
	} {
		f.Add([]byte(seed.body), seed.mime)
	}
	f.Fuzz(func(t *testing.T, blob []byte, mime string) {
		m, err := validateManifest(blob, mime)
		if err != nil {
			return
		}
		_ = m.Digest.Encoded()
		if m.List != nil {
			if len(m.List.Instances()) == 0 {
				t.Fatal("accepted an index without manifests")
			}
			for _, inst := range m.List.Instances() {
				_ = inst.Encoded() + inst.Algorithm().String()
			}
			return
		}
		if m.Manifest == nil {
			t.Fatal("accepted neither an index nor a manifest")
		}
		_ = m.Config.Digest.Encoded() + m.Config.Digest.Algorithm().String()
		var sum int64
		for _, l := range m.Layers {
			_ = l.Digest.Encoded() + l.Digest.Algorithm().String()
			if l.Size < 0 {
				t.Fatalf("accepted a negative layer size %d", l.Size)
			}
			sum += l.Size
		}
		if sum != m.LayerBytes || sum < 0 {
			t.Fatalf("layer bytes %d, sum %d", m.LayerBytes, sum)
		}
	})
}
