package image

import (
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"
)

// maxManifestSize bounds a manifest taken from a registry. The library
// already refuses larger bodies when it fetches one; this keeps the
// validation honest for any other caller.
const maxManifestSize = 4 << 20

// errSchema1 refuses Docker schema1 manifests. The library can convert
// them on copy, but the stored image's ID is then the digest of a config
// synthesised during the conversion, unknown until after the layers are
// stored, and its signatures vouch for a manifest whose digest excludes its
// own JWS signature block: none of the checks made before the copy (limits,
// locks, records, the verified-digest pin) could be made on the image that
// ends up stored. Registries stopped serving schema1 years ago (Docker and
// containerd 2 removed pulling it), so refusing it costs nothing real.
var errSchema1 = errors.New("not supported")

// remoteManifest is a registry manifest that passed validateManifest: every
// digest in it is well formed, so the rest of the pull may call Encoded()
// or Algorithm() (which panic on malformed digests) on any of them.
type remoteManifest struct {
	Digest digest.Digest
	MIME   string
	// List is set for an image index / manifest list.
	List manifest.List
	// Manifest is set for a single-image manifest.
	Manifest manifest.Manifest
	Config   types.BlobInfo
	Layers   []types.BlobInfo
	// LayerBytes is the sum of the declared (compressed) layer sizes.
	LayerBytes int64
}

// validateManifest parses blob, served by a registry with Content-Type
// mime, and checks everything the pull later relies on. It never panics,
// whatever the input (see FuzzValidateManifest).
func validateManifest(blob []byte, mime string) (*remoteManifest, error) {
	switch {
	case len(blob) == 0:
		return nil, errors.New("empty manifest")
	case len(blob) > maxManifestSize:
		return nil, fmt.Errorf("manifest of %d bytes exceeds %d", len(blob), maxManifestSize)
	}
	// The library parses a manifest as the type NormalizedMIMEType makes of
	// the registry's Content-Type (a missing or generic one means schema1),
	// so that is the type to validate. A body that is schema1 whatever its
	// header says is refused too.
	mime = manifest.NormalizedMIMEType(mime)
	if guessed := manifest.GuessMIMEType(blob); guessed == manifest.DockerV2Schema1MediaType || guessed == manifest.DockerV2Schema1SignedMediaType {
		mime = guessed
	}
	if mime == manifest.DockerV2Schema1MediaType || mime == manifest.DockerV2Schema1SignedMediaType {
		return nil, fmt.Errorf("schema1 manifest %s: %w", mime, errSchema1)
	}
	d, err := manifest.Digest(blob)
	if err != nil {
		return nil, err
	}
	rm := &remoteManifest{Digest: d, MIME: mime}
	if manifest.MIMETypeIsMultiImage(mime) {
		list, err := manifest.ListFromBlob(blob, mime)
		if err != nil {
			return nil, err
		}
		instances := list.Instances()
		if len(instances) == 0 {
			return nil, errors.New("image index lists no manifests")
		}
		for _, inst := range instances {
			if err := inst.Validate(); err != nil {
				return nil, fmt.Errorf("image index entry %q: %w", inst, err)
			}
		}
		rm.List = list
		return rm, nil
	}
	if mime != imgspecv1.MediaTypeImageManifest && mime != manifest.DockerV2Schema2MediaType {
		// Only OCI and Docker schema2 image manifests carry a config and
		// layer list the checks below can trust.
		return nil, fmt.Errorf("manifest type %q: not supported", mime)
	}
	m, err := manifest.FromBlob(blob, mime)
	if err != nil {
		return nil, err
	}
	rm.Manifest, rm.Config = m, m.ConfigInfo()
	if err := rm.Config.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("config digest %q: %w", rm.Config.Digest, err)
	}
	if rm.Config.Size < 0 {
		return nil, fmt.Errorf("config %s: negative size %d", rm.Config.Digest, rm.Config.Size)
	}
	for _, l := range m.LayerInfos() {
		if err := l.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("layer digest %q: %w", l.Digest, err)
		}
		if l.Size < 0 {
			return nil, fmt.Errorf("layer %s: negative size %d", l.Digest, l.Size)
		}
		if rm.LayerBytes+l.Size < rm.LayerBytes {
			return nil, fmt.Errorf("layer %s: declared sizes overflow", l.Digest)
		}
		rm.LayerBytes += l.Size
		rm.Layers = append(rm.Layers, l.BlobInfo)
	}
	return rm, nil
}
