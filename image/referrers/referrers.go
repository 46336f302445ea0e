// Package referrers finds the Sigstore bundles that cosign v3 attaches to an
// image as OCI 1.1 referrers.
//
// cosign v3 (with its defaults) stores a signature, and an attestation alike,
// as a manifest whose artifactType is the bundle media type, whose subject is
// the signed image manifest and whose single layer is the bundle JSON. A
// registry with the referrers API lists such manifests at
// GET /v2/<name>/referrers/<digest>; for one without it, the pusher maintains
// an OCI index tagged "<alg>-<hex>" (the referrers tag schema) instead. Find
// reads the API first and falls back to the tag schema only when the registry
// says it has no API.
//
// Find only finds: nothing here verifies a bundle. It returns signatures and
// attestations alike (they share the artifact type); the verifier tells them
// apart by the bundle's content.
package referrers

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/docker/config"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/pkg/tlsclientconfig"
	"go.podman.io/image/v5/types"
)

const (
	// BundleMediaType is the artifact type of a cosign v3 referrer and the
	// media type of its bundle layer.
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"

	// SourceReferrersAPI and SourceTagSchema say how a bundle was found.
	SourceReferrersAPI = "referrers-api"
	SourceTagSchema    = "tag-schema"

	// emptyMediaType is the config media type of an artifact manifest. Some
	// registries (go-containerregistry's pkg/registry among them) put it in
	// the referrers index as the artifactType instead of the manifest's
	// own artifactType, so it cannot rule an entry out.
	emptyMediaType = "application/vnd.oci.empty.v1+json"
)

// Found is one bundle attached to the subject manifest.
type Found struct {
	// Bundle is the raw bundle JSON, its digest checked against the
	// referrer manifest's layer descriptor (the content is not verified).
	Bundle []byte
	// Manifest is the digest of the referrer manifest holding the bundle.
	Manifest digest.Digest
	// Source is SourceReferrersAPI or SourceTagSchema.
	Source string
	// Repository is where the bundle was read: "host[:port]/path" of the
	// registry or of the mirror (from registries.conf) that answered.
	Repository string
	// Annotations are the referrer manifest's annotations (cosign writes
	// dev.sigstore.bundle.predicateType there); unauthenticated hints only.
	Annotations map[string]string
}

// Finder holds Find's bounds and logger. The zero value uses the defaults.
type Finder struct {
	// Logger receives the skipped entries and the bounds hit; nil means
	// slog.Default().
	Logger *slog.Logger
	// MaxReferrers is how many candidate referrers (after the artifact type
	// filter) are fetched; the rest are ignored. 0 means 64.
	MaxReferrers int
	// MaxIndexBytes bounds a referrers index (each page of the API, or the
	// tag schema index) and MaxManifestBytes a referrer manifest; 0 means 4 MiB.
	MaxIndexBytes    int64
	MaxManifestBytes int64
	// MaxBundleBytes bounds a bundle blob; 0 means 1 MiB.
	MaxBundleBytes int64
	// MaxPages bounds the referrers API pages followed through Link
	// headers; 0 means 16.
	MaxPages int
	// Timeout bounds the whole Find when ctx has no deadline, so a registry
	// that drips bytes cannot hold a caller forever; 0 means 2 minutes.
	Timeout time.Duration
}

// Find returns the bundles attached to the manifest digest of repository
// ref with the default Finder.
func Find(ctx context.Context, sys *types.SystemContext, ref reference.Named, manifest digest.Digest) ([]Found, error) {
	return (&Finder{}).Find(ctx, sys, ref, manifest)
}

// Find returns every bundle attached to manifest in ref's repository (ref's
// tag or digest, if any, is ignored). Registries and mirrors come from sys's
// registries.conf, credentials from its auth files, TLS settings from its
// certs.d directories.
//
// No referrers at all (neither the API nor the tag schema has any) is zero
// bundles and a nil error. A registry that cannot answer (network error,
// 5xx, refused credentials) is an error, never zero bundles: a caller must not
// take an outage for "unsigned". Entries that are not bundles, or whose
// content does not match its digest or exceeds the bounds, are skipped and
// logged.
func (f *Finder) Find(ctx context.Context, sys *types.SystemContext, ref reference.Named, manifest digest.Digest) ([]Found, error) {
	if err := manifest.Validate(); err != nil {
		return nil, fmt.Errorf("referrers of %s: invalid manifest digest %q: %w", ref.Name(), manifest, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout())
		defer cancel()
	}
	repo := reference.TrimNamed(ref)
	// Digested, so that mirrors configured for pulls by digest only are
	// used: referrers belong to a digest.
	canonical, err := reference.WithDigest(repo, manifest)
	if err != nil {
		return nil, fmt.Errorf("referrers of %s@%s: %w", repo.Name(), manifest, err)
	}
	sources, err := pullSources(sys, canonical)
	if err != nil {
		return nil, fmt.Errorf("referrers of %s@%s: %w", repo.Name(), manifest, err)
	}

	// The first source that has bundles answers. A mirror may lack the
	// referrers its primary has, so an empty answer moves on to the next
	// source; but a failed source is remembered, so that "nothing found"
	// is never reported while one of them could not be asked.
	var errs []error
	for _, src := range sources {
		found, err := f.findAt(ctx, sys, src, manifest)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(found) > 0 {
			if len(errs) > 0 {
				f.logger().Warn("referrers found after another source failed",
					"subject", manifest, "repository", src.repo, "failed", errors.Join(errs...))
			}
			return found, nil
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("referrers of %s@%s: %w", repo.Name(), manifest, errors.Join(errs...))
	}
	return nil, nil
}

// source is one place to ask: the registry itself or one of its mirrors.
type source struct {
	host     string // "host[:port]"
	path     string // repository path on that host
	repo     string // host/path, for messages
	insecure bool   // skip TLS verification, and allow plain http
	named    reference.Named
}

// pullSources lists where ref can be read, mirrors first, as the library's
// own pulls do.
func pullSources(sys *types.SystemContext, ref reference.Named) ([]source, error) {
	reg, err := sysregistriesv2.FindRegistry(sys, ref.Name())
	if err != nil {
		return nil, fmt.Errorf("reading registries configuration: %w", err)
	}
	if reg == nil {
		domain := reference.Domain(ref)
		return []source{{host: domain, path: reference.Path(ref), repo: reference.TrimNamed(ref).Name(), named: ref}}, nil
	}
	if reg.Blocked {
		return nil, fmt.Errorf("registry %s is blocked in %s", reg.Prefix, sysregistriesv2.ConfigurationSourceDescription(sys))
	}
	pss, err := reg.PullSourcesFromReference(ref)
	if err != nil {
		return nil, fmt.Errorf("pull sources: %w", err)
	}
	var out []source
	for _, ps := range pss {
		out = append(out, source{
			host:     reference.Domain(ps.Reference),
			path:     reference.Path(ps.Reference),
			repo:     reference.TrimNamed(ps.Reference).Name(),
			insecure: ps.Endpoint.Insecure,
			named:    ps.Reference,
		})
	}
	return out, nil
}

// findAt looks for the subject's bundles at one source.
func (f *Finder) findAt(ctx context.Context, sys *types.SystemContext, src source, subject digest.Digest) ([]Found, error) {
	c, err := newClient(ctx, sys, src)
	if err != nil {
		return nil, err
	}
	descs, how, err := f.list(ctx, c, subject)
	if err != nil {
		return nil, err
	}
	candidates := f.filter(descs, src, subject)
	if max := f.maxReferrers(); len(candidates) > max {
		f.logger().Warn("too many referrers, ignoring the rest",
			"subject", subject, "repository", src.repo, "candidates", len(candidates), "considered", max)
		candidates = candidates[:max]
	}
	var found []Found
	for _, d := range candidates {
		fd, err := f.fetchBundle(ctx, c, subject, d)
		if err != nil {
			var skip *skipError
			if errors.As(err, &skip) {
				f.logger().Error("skipping referrer", "subject", subject, "repository", src.repo,
					"referrer", d.Digest, "error", skip.err)
				continue
			}
			return nil, err
		}
		fd.Source = how
		found = append(found, fd)
	}
	return found, nil
}

// list returns the referrers index entries for subject, from the API or,
// where the registry has none, from the tag schema.
func (f *Finder) list(ctx context.Context, c *client, subject digest.Digest) ([]imgspecv1.Descriptor, string, error) {
	descs, supported, err := f.listAPI(ctx, c, subject)
	if err != nil {
		return nil, "", err
	}
	if supported {
		return descs, SourceReferrersAPI, nil
	}
	descs, err = f.listTagSchema(ctx, c, subject)
	if err != nil {
		return nil, "", err
	}
	return descs, SourceTagSchema, nil
}

// listAPI reads GET /v2/<name>/referrers/<digest>, following Link pages up
// to the bounds. supported is false when the registry has no referrers API.
func (f *Finder) listAPI(ctx context.Context, c *client, subject digest.Digest) (descs []imgspecv1.Descriptor, supported bool, err error) {
	u := c.url("referrers/" + subject.String())
	// A registry may filter for us; whether it did or not, list filters
	// again.
	u.RawQuery = url.Values{"artifactType": {BundleMediaType}}.Encode()
	for page := 0; ; page++ {
		resp, err := c.get(ctx, u, imgspecv1.MediaTypeImageIndex)
		if err != nil {
			return nil, false, fmt.Errorf("referrers API of %s: %w", c.src.repo, err)
		}
		switch {
		case resp.StatusCode == http.StatusOK:
		case page == 0 && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusMethodNotAllowed):
			// The distribution spec says a registry without the API answers
			// 404; some older ones answer 400 or 405 to a path they do not
			// know. Either way, the tag schema is where referrers are.
			drain(resp)
			return nil, false, nil
		default:
			err := statusError(resp)
			return nil, false, fmt.Errorf("referrers API of %s: %w", c.src.repo, err)
		}
		idx, err := readIndex(resp, f.maxIndexBytes())
		if err != nil {
			return nil, false, fmt.Errorf("referrers API of %s: %w", c.src.repo, err)
		}
		descs = append(descs, idx.Manifests...)
		next, err := nextPage(resp, u)
		if err != nil {
			return nil, false, fmt.Errorf("referrers API of %s: %w", c.src.repo, err)
		}
		if next == nil {
			return descs, true, nil
		}
		if page+1 >= f.maxPages() || countCandidates(descs) >= f.maxReferrers() {
			f.logger().Warn("referrers API has more pages, ignoring them",
				"subject", subject, "repository", c.src.repo, "pages", page+1, "entries", len(descs))
			return descs, true, nil
		}
		u = next
	}
}

// listTagSchema reads the index tagged with the referrers tag schema; none
// there is no referrer.
func (f *Finder) listTagSchema(ctx context.Context, c *client, subject digest.Digest) ([]imgspecv1.Descriptor, error) {
	tag := TagSchemaTag(subject)
	resp, err := c.get(ctx, c.url("manifests/"+tag), imgspecv1.MediaTypeImageIndex)
	if err != nil {
		return nil, fmt.Errorf("referrers tag %s:%s: %w", c.src.repo, tag, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		drain(resp)
		return nil, nil
	default:
		return nil, fmt.Errorf("referrers tag %s:%s: %w", c.src.repo, tag, statusError(resp))
	}
	idx, err := readIndex(resp, f.maxIndexBytes())
	if err != nil {
		return nil, fmt.Errorf("referrers tag %s:%s: %w", c.src.repo, tag, err)
	}
	return idx.Manifests, nil
}

// TagSchemaTag is the tag of subject's referrers index under the referrers
// tag schema: "<alg>-<encoded>", each part truncated as the distribution
// spec says (sha256 digests are never truncated).
func TagSchemaTag(subject digest.Digest) string {
	alg, enc := string(subject.Algorithm()), subject.Encoded()
	if len(alg) > 32 {
		alg = alg[:32]
	}
	if len(enc) > 64 {
		enc = enc[:64]
	}
	return alg + "-" + enc
}

// filter keeps the index entries that may be bundle referrers of subject.
func (f *Finder) filter(descs []imgspecv1.Descriptor, src source, subject digest.Digest) []imgspecv1.Descriptor {
	var out []imgspecv1.Descriptor
	skipped := 0
	// A listing may repeat an entry (a hostile one, to use up the bound);
	// each manifest is fetched once.
	seen := map[digest.Digest]bool{}
	for _, d := range descs {
		if !isCandidate(d) || seen[d.Digest] {
			skipped++
			continue
		}
		seen[d.Digest] = true
		out = append(out, d)
	}
	if skipped > 0 {
		f.logger().Debug("skipped referrers of other artifact types, or repeated",
			"subject", subject, "repository", src.repo, "skipped", skipped)
	}
	return out
}

// isCandidate is true for an image manifest whose artifact type is the
// bundle's, or unknown (the manifest itself is checked once fetched).
func isCandidate(d imgspecv1.Descriptor) bool {
	if d.MediaType != imgspecv1.MediaTypeImageManifest {
		return false
	}
	switch d.ArtifactType {
	case BundleMediaType, "", emptyMediaType:
		return true
	}
	return false
}

func countCandidates(descs []imgspecv1.Descriptor) int {
	n := 0
	for _, d := range descs {
		if isCandidate(d) {
			n++
		}
	}
	return n
}

// skipError is a referrer that is not a usable bundle: skipped, not fatal.
type skipError struct{ err error }

func (e *skipError) Error() string { return e.err.Error() }

func skipf(format string, args ...any) error { return &skipError{fmt.Errorf(format, args...)} }

// referrerManifest is the part of a cosign v3 referrer manifest Find reads.
type referrerManifest struct {
	MediaType    string                 `json:"mediaType"`
	ArtifactType string                 `json:"artifactType"`
	Config       imgspecv1.Descriptor   `json:"config"`
	Layers       []imgspecv1.Descriptor `json:"layers"`
	Subject      *imgspecv1.Descriptor  `json:"subject"`
	Annotations  map[string]string      `json:"annotations"`
}

// fetchBundle reads the referrer manifest d and its bundle layer. A
// referrer that is not a bundle of subject, or does not match its
// digests or bounds, is a *skipError.
func (f *Finder) fetchBundle(ctx context.Context, c *client, subject digest.Digest, d imgspecv1.Descriptor) (Found, error) {
	if err := d.Digest.Validate(); err != nil {
		return Found{}, skipf("invalid digest %q: %w", d.Digest, err)
	}
	if d.Size > f.maxManifestBytes() {
		return Found{}, skipf("manifest size %d exceeds the %d-byte limit", d.Size, f.maxManifestBytes())
	}
	raw, err := c.fetch(ctx, c.url("manifests/"+d.Digest.String()), imgspecv1.MediaTypeImageManifest, f.maxManifestBytes())
	if err != nil {
		return Found{}, fmt.Errorf("referrer manifest %s@%s: %w", c.src.repo, d.Digest, err)
	}
	if got := d.Digest.Algorithm().FromBytes(raw); got != d.Digest {
		return Found{}, skipf("manifest content has digest %s, not the listed %s", got, d.Digest)
	}
	var m referrerManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return Found{}, skipf("parsing manifest: %w", err)
	}
	if m.MediaType != imgspecv1.MediaTypeImageManifest {
		return Found{}, skipf("manifest media type %q is not an OCI image manifest", m.MediaType)
	}
	if m.ArtifactType != BundleMediaType {
		return Found{}, skipf("artifact type %q is not %s", m.ArtifactType, BundleMediaType)
	}
	// A tag schema index is written by clients, and a hostile API can list
	// anything: the manifest itself must name the subject.
	if m.Subject == nil || m.Subject.Digest != subject {
		return Found{}, skipf("manifest subject is not %s", subject)
	}
	var layer *imgspecv1.Descriptor
	for i := range m.Layers {
		if m.Layers[i].MediaType == BundleMediaType {
			if layer != nil {
				return Found{}, skipf("more than one bundle layer")
			}
			layer = &m.Layers[i]
		}
	}
	if layer == nil {
		return Found{}, skipf("no layer of media type %s", BundleMediaType)
	}
	if err := layer.Digest.Validate(); err != nil {
		return Found{}, skipf("bundle layer digest %q: %w", layer.Digest, err)
	}
	if layer.Size < 0 || layer.Size > f.maxBundleBytes() {
		return Found{}, skipf("bundle size %d exceeds the %d-byte limit", layer.Size, f.maxBundleBytes())
	}
	blob, err := c.fetch(ctx, c.url("blobs/"+layer.Digest.String()), "", f.maxBundleBytes())
	if err != nil {
		return Found{}, fmt.Errorf("bundle blob %s@%s: %w", c.src.repo, layer.Digest, err)
	}
	if int64(len(blob)) != layer.Size {
		return Found{}, skipf("bundle blob %s is %d bytes, the layer descriptor says %d", layer.Digest, len(blob), layer.Size)
	}
	if got := layer.Digest.Algorithm().FromBytes(blob); got != layer.Digest {
		return Found{}, skipf("bundle blob content has digest %s, not the layer's %s", got, layer.Digest)
	}
	return Found{Bundle: blob, Manifest: d.Digest, Repository: c.src.repo, Annotations: m.Annotations}, nil
}

// client talks to one source with the library's TLS, credentials and
// ggcr's authentication handshake.
type client struct {
	src       source
	http      *http.Client
	userAgent string
}

// newClient builds an HTTP client for src. go.podman.io/image keeps its
// registry client unexported and has no referrers call, so the settings it
// would use are read here from the same configuration (certs.d, auth files
// and credential helpers, insecure registries), and go-containerregistry's
// transport does the /v2/ ping and the bearer token exchange.
func newClient(ctx context.Context, sys *types.SystemContext, src source) (*client, error) {
	tlsc := &tls.Config{MinVersion: tls.VersionTLS12}
	if sys != nil && sys.BaseTLSConfig != nil {
		tlsc = sys.BaseTLSConfig.Clone()
	}
	if dir := certDir(sys, src.host); dir != "" {
		if err := tlsclientconfig.SetupCertificates(dir, tlsc); err != nil {
			return nil, fmt.Errorf("TLS certificates for %s from %s: %w", src.host, dir, err)
		}
	}
	insecure := src.insecure || (sys != nil && sys.DockerInsecureSkipTLSVerify == types.OptionalBoolTrue)
	tlsc.InsecureSkipVerify = insecure

	tr := tlsclientconfig.NewTransport()
	tr.TLSClientConfig = tlsc

	var regOpts []name.Option
	if insecure {
		// Lets the ping fall back to plain http, as the library does for
		// a registry marked insecure.
		regOpts = append(regOpts, name.Insecure)
	}
	reg, err := name.NewRegistry(src.host, regOpts...)
	if err != nil {
		return nil, fmt.Errorf("registry name %q: %w", src.host, err)
	}
	auth, err := authenticator(sys, src.named)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", src.repo, err)
	}
	scope := "repository:" + src.path + ":pull"
	rt, err := transport.NewWithContext(ctx, reg, auth, tr, []string{scope})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", src.host, err)
	}
	ua := "crivet"
	if sys != nil && sys.DockerRegistryUserAgent != "" {
		ua = sys.DockerRegistryUserAgent
	}
	return &client{src: src, http: &http.Client{Transport: rt}, userAgent: ua}, nil
}

// authenticator returns the credentials the library would use for ref.
func authenticator(sys *types.SystemContext, ref reference.Named) (authn.Authenticator, error) {
	if sys != nil && sys.DockerBearerRegistryToken != "" {
		return authn.FromConfig(authn.AuthConfig{RegistryToken: sys.DockerBearerRegistryToken}), nil
	}
	creds, err := config.GetCredentialsForRef(sys, ref)
	if err != nil {
		return nil, err
	}
	if creds == (types.DockerAuthConfig{}) {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{Username: creds.Username, Password: creds.Password, IdentityToken: creds.IdentityToken}), nil
}

// certDir is the library's per-registry certificate directory for host,
// "" when there is none.
func certDir(sys *types.SystemContext, host string) string {
	if sys != nil && sys.DockerCertPath != "" {
		return sys.DockerCertPath
	}
	if sys != nil && sys.DockerPerHostCertDirPath != "" {
		return filepath.Join(sys.DockerPerHostCertDirPath, host)
	}
	root := ""
	if sys != nil {
		root = sys.RootForImplicitAbsolutePaths
	}
	for _, base := range []string{"/etc/containers/certs.d", "/etc/docker/certs.d"} {
		dir := filepath.Join(root, base, host)
		if _, err := os.Stat(dir); err == nil {
			return dir
		}
	}
	return ""
}

// url returns https://host/v2/<path>/<rest>; the transport switches to
// http when the ping found the registry there.
func (c *client) url(rest string) *url.URL {
	return &url.URL{Scheme: "https", Host: c.src.host, Path: "/v2/" + c.src.path + "/" + rest}
}

func (c *client) get(ctx context.Context, u *url.URL, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	req.Header.Set("User-Agent", c.userAgent)
	return c.http.Do(req)
}

// fetch GETs u and returns at most limit bytes of a 200 body. A 404 is a
// *skipError (an index entry whose content is gone); other statuses and
// bodies over the limit are errors.
func (c *client) fetch(ctx context.Context, u *url.URL, accept string, limit int64) ([]byte, error) {
	resp, err := c.get(ctx, u, accept)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		drain(resp)
		return nil, skipf("%s: not found", u.Path)
	default:
		return nil, statusError(resp)
	}
	body, err := readLimited(resp, limit)
	if err != nil {
		var tooBig *tooLargeError
		if errors.As(err, &tooBig) {
			return nil, &skipError{err}
		}
		return nil, err
	}
	return body, nil
}

type tooLargeError struct{ limit int64 }

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("response body exceeds the %d-byte limit", e.limit)
}

// readLimited reads resp's body, failing past limit bytes without reading
// the rest (a registry announcing or sending more is cut off).
func readLimited(resp *http.Response, limit int64) ([]byte, error) {
	if resp.ContentLength > limit {
		return nil, &tooLargeError{limit}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading response: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, &tooLargeError{limit}
	}
	return body, nil
}

// readIndex parses an OCI image index of at most limit bytes and closes
// the body.
func readIndex(resp *http.Response, limit int64) (*imgspecv1.Index, error) {
	defer resp.Body.Close()
	body, err := readLimited(resp, limit)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	var idx imgspecv1.Index
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&idx); err != nil {
		return nil, fmt.Errorf("parsing index: %w", err)
	}
	if idx.MediaType != "" && idx.MediaType != imgspecv1.MediaTypeImageIndex {
		return nil, fmt.Errorf("index media type is %q, not %s", idx.MediaType, imgspecv1.MediaTypeImageIndex)
	}
	if idx.SchemaVersion != 2 {
		return nil, fmt.Errorf("index schema version is %d, not 2", idx.SchemaVersion)
	}
	return &idx, nil
}

// nextPage returns the referrers API's next page from a Link header
// (`<url>; rel="next"`), nil when there is none. Pages stay on the same
// registry: the credentials are only for it.
func nextPage(resp *http.Response, cur *url.URL) (*url.URL, error) {
	for _, link := range resp.Header.Values("Link") {
		for part := range strings.SplitSeq(link, ",") {
			target, params, ok := strings.Cut(strings.TrimSpace(part), ";")
			if !ok || !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) {
				continue
			}
			target = strings.TrimSpace(target)
			if !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
				return nil, fmt.Errorf("malformed Link header %q", link)
			}
			next, err := cur.Parse(target[1 : len(target)-1])
			if err != nil {
				return nil, fmt.Errorf("link %q: %w", target, err)
			}
			if next.Host != cur.Host {
				return nil, fmt.Errorf("next page %s is on another host than %s", next, cur.Host)
			}
			// The transport picks the scheme the ping found.
			next.Scheme = cur.Scheme
			return next, nil
		}
	}
	return nil, nil
}

// statusError describes an unexpected response, with the registry's error
// text (bounded), and closes its body.
func statusError(resp *http.Response) error {
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	msg := strings.TrimSpace(string(text))
	if msg == "" {
		return fmt.Errorf("%s %s: %s", resp.Request.Method, resp.Request.URL.Redacted(), resp.Status)
	}
	return fmt.Errorf("%s %s: %s: %s", resp.Request.Method, resp.Request.URL.Redacted(), resp.Status, msg)
}

// drain reads a little of an unwanted body so the connection can be reused,
// and closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
}

func (f *Finder) logger() *slog.Logger {
	if f.Logger != nil {
		return f.Logger
	}
	return slog.Default()
}

// The limits a zero (or negative) Finder field leaves at its default.
func (f *Finder) maxReferrers() int       { return orDefault(f.MaxReferrers, 64) }
func (f *Finder) maxIndexBytes() int64    { return orDefault(f.MaxIndexBytes, 4<<20) }
func (f *Finder) maxManifestBytes() int64 { return orDefault(f.MaxManifestBytes, 4<<20) }
func (f *Finder) maxBundleBytes() int64   { return orDefault(f.MaxBundleBytes, 1<<20) }
func (f *Finder) maxPages() int           { return orDefault(f.MaxPages, 16) }
func (f *Finder) timeout() time.Duration  { return orDefault(f.Timeout, 2*time.Minute) }

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}
