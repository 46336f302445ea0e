package image

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/crivet/crivet/test/fixtures"
)

// keylessBundleReq is a sigstoreBundle requirement for a keyless identity
// under trustedRoot; extra is more JSON fields (",\"timestamps\":1").
func keylessBundleReq(trustedRoot, subject, issuer, extra string) string {
	return fmt.Sprintf(`{"type":"sigstoreBundle","trustedRootPath":%q,"subject":%q,"issuer":%q%s}`, trustedRoot, subject, issuer, extra)
}

// Keyless cosign v3 bundles, pulled from a real registry and re-checked
// offline at create: a CI workflow's URI SAN with the Fulcio source
// repository, a person's email SAN with its issuer, a Rekor v2 entry, an
// RFC 3161 timestamp; and each refusal the requirement's matchers and
// thresholds make, at pull and at create.
func TestKeylessSigstoreBundlesAtPullAndCreate(t *testing.T) {
	e := bundleEnv(t, true)
	ca := fixtures.NewBundleCA(t)
	root := ca.TrustedRootPath
	workflow := keylessBundleReq(root, fixtures.ReleaseWorkflow, fixtures.GitHubIssuer,
		fmt.Sprintf(`,"sourceRepositoryURI":%q`, fixtures.ReleaseRepoURI))
	email := keylessBundleReq(root, fixtures.DeveloperEmail, fixtures.GoogleIssuer, "")
	e.setNamespace("ci", anyDocker(workflow))
	e.setNamespace("ci-regexp", anyDocker(fmt.Sprintf(`{"type":"sigstoreBundle","trustedRootPath":%q,"subjectRegExp":%q,"issuerRegExp":%q}`,
		root, `^https://github\.com/org/repo/\.github/workflows/[a-z]+\.yml@refs/tags/v[0-9]+$`, `^https://token\.actions\.githubusercontent\.com$`)))
	e.setNamespace("ci-main", anyDocker(fmt.Sprintf(`{"type":"sigstoreBundle","trustedRootPath":%q,"subjectRegExp":%q,"issuer":%q}`,
		root, `^https://github\.com/org/repo/\.github/workflows/release\.yml@refs/heads/main$`, fixtures.GitHubIssuer)))
	e.setNamespace("fork", anyDocker(keylessBundleReq(root, fixtures.ReleaseWorkflow, fixtures.GitHubIssuer,
		`,"sourceRepositoryURI":"https://github.com/org/fork"`)))
	e.setNamespace("people", anyDocker(email))
	e.setNamespace("people-gitlab", anyDocker(keylessBundleReq(root, fixtures.DeveloperEmail, "https://gitlab.com", "")))
	e.setNamespace("other-root", anyDocker(keylessBundleReq(ca.OtherRootPath, fixtures.ReleaseWorkflow, fixtures.GitHubIssuer, "")))
	// The VirtualSigstore's Fulcio, which makes the Rekor v2 bundles,
	// embeds no SCTs.
	e.setNamespace("rekor-v2", anyDocker(keylessBundleReq(root, fixtures.DeveloperEmail, fixtures.GoogleIssuer, `,"certificateTransparency":0`)))
	e.setNamespace("rekor-v2-explicit", anyDocker(keylessBundleReq(root, fixtures.DeveloperEmail, fixtures.GoogleIssuer,
		`,"certificateTransparency":0,"transparencyLog":1,"timestamps":1`)))
	e.setNamespace("timestamp-only", anyDocker(keylessBundleReq(root, fixtures.ReleaseWorkflow, fixtures.GitHubIssuer, `,"transparencyLog":0,"timestamps":1`)))
	e.setNamespace("two-timestamps", anyDocker(keylessBundleReq(root, fixtures.ReleaseWorkflow, fixtures.GitHubIssuer, `,"timestamps":2`)))

	push := func(repo string) fixtures.Image { return fixtures.PushImage(t, e.ref(repo), 1024) }
	ciImage := push("team/ci:1")
	ca.Sign(t, ciImage.DigestRef(), fixtures.WorkflowIdentity, fixtures.BundleEvidence{TLog: true})
	personImage := push("team/person:1")
	ca.Sign(t, personImage.DigestRef(), fixtures.DeveloperIdentity, fixtures.BundleEvidence{TLog: true})
	v2Image := push("team/rekor-v2:1")
	ca.SignRekorV2(t, v2Image.DigestRef(), fixtures.DeveloperEmail, fixtures.GoogleIssuer)
	tsImage := push("team/timestamped:1")
	ca.Sign(t, tsImage.DigestRef(), fixtures.WorkflowIdentity, fixtures.BundleEvidence{Timestamp: true})

	admitted := []struct {
		img fixtures.Image
		ns  string
	}{
		{ciImage, "ci"}, {ciImage, "ci-regexp"}, {personImage, "people"},
		{v2Image, "rekor-v2"}, {v2Image, "rekor-v2-explicit"}, {tsImage, "timestamp-only"},
	}
	refused := []struct {
		what string
		img  fixtures.Image
		ns   string
		want string
	}{
		{"another workflow ref (regexp that does not match)", ciImage, "ci-main", "keyless_claims"},
		{"another source repository", ciImage, "fork", "keyless_claims"},
		{"another identity: the workflow's bundle under a person's requirement", ciImage, "people", "keyless_claims"},
		{"another issuer", personImage, "people-gitlab", "keyless_claims"},
		{"a trusted root without the CA", ciImage, "other-root", "untrusted_key"},
		{"no log entry where one is required", tsImage, "ci", "missing_evidence"},
		{"one timestamp where two are required", ciImage, "two-timestamps", "missing_evidence"},
	}
	images := map[string]*Image{}
	for _, c := range admitted {
		images[c.img.Ref] = e.mustPull(c.img.Ref, c.ns)
	}
	for _, c := range refused {
		_, err := e.pull(c.img.Ref, c.ns)
		wantRejected(t, err, "pull: "+c.what, c.want)
	}

	e.reg.Stop() // the create-time check is offline
	e.svc.trust.ForgetAdmissions()
	for _, c := range admitted {
		if _, err := e.admit(images[c.img.Ref], c.img.Ref, c.ns); err != nil {
			t.Errorf("create of %s in %s: %v", c.img.Ref, c.ns, err)
		}
	}
	// Pulled under one namespace's identity, reused in another whose
	// identity differs: the stored bundle is verified again, and refused.
	for _, c := range refused {
		_, err := e.admit(images[c.img.Ref], c.img.Ref, c.ns)
		wantRejected(t, err, "create: "+c.what, c.want)
	}
}

// A multi-arch image: the node pulls its platform's manifest from the
// index. A bundle whose subject is that manifest admits it, and so does
// one whose subject is the index it was chosen from (cosign signs the
// digest it is given; signing the index is common); a bundle for the
// index's other platform does not. Both are kept and re-checked offline.
func TestSigstoreBundleOfIndexOrPlatformManifest(t *testing.T) {
	for _, withAPI := range []bool{true, false} {
		t.Run(fmt.Sprintf("referrersAPI=%v", withAPI), func(t *testing.T) {
			e := bundleEnv(t, withAPI)
			ca := fixtures.NewBundleCA(t)
			e.setNamespace("ci", anyDocker(keylessBundleReq(ca.TrustedRootPath, fixtures.ReleaseWorkflow, fixtures.GitHubIssuer, "")))
			e.setNamespace("other", anyDocker(keylessBundleReq(ca.TrustedRootPath, fixtures.DeveloperEmail, fixtures.GoogleIssuer, "")))
			ev := fixtures.BundleEvidence{TLog: true}

			indexRef := e.ref("team/by-index:1")
			indexDigest, _ := fixtures.PushIndex(t, indexRef, "linux/amd64", "linux/arm64")
			ca.Sign(t, e.ref("team/by-index@"+indexDigest), fixtures.WorkflowIdentity, ev)

			manifestRef := e.ref("team/by-manifest:1")
			_, per := fixtures.PushIndex(t, manifestRef, "linux/amd64", "linux/arm64")
			ca.Sign(t, per["linux/amd64"].DigestRef(), fixtures.WorkflowIdentity, ev)

			otherRef := e.ref("team/other-platform:1")
			_, otherPer := fixtures.PushIndex(t, otherRef, "linux/amd64", "linux/arm64")
			ca.Sign(t, otherPer["linux/arm64"].DigestRef(), fixtures.WorkflowIdentity, ev)

			byIndex := e.mustPull(indexRef, "ci")
			if byIndex.Record.IndexDigest.String() != indexDigest {
				t.Fatalf("record %+v, want index %s", byIndex.Record, indexDigest)
			}
			byManifest := e.mustPull(manifestRef, "ci")
			_, err := e.pull(otherRef, "ci")
			wantRejected(t, err, "only the other platform signed", "no sigstore bundle exists")

			kept := e.svc.keptBundles(byIndex.StorageID())
			if len(kept) != 1 || kept[0].Subject.String() != indexDigest || kept[0].Manifest != byIndex.Record.ManifestDigest {
				t.Fatalf("kept bundles of the index-signed image: %+v", kept)
			}

			e.reg.Stop()
			e.svc.trust.ForgetAdmissions()
			for _, c := range []struct {
				img *Image
				ref string
			}{{byIndex, indexRef}, {byManifest, manifestRef}} {
				if _, err := e.admit(c.img, c.ref, "ci"); err != nil {
					t.Errorf("create of %s: %v", c.ref, err)
				}
				_, err := e.admit(c.img, c.ref, "other")
				wantRejected(t, err, "create of "+c.ref+" under another identity", "keyless_claims")
			}
		})
	}
}

// The admission cache's fingerprint covers the trusted root a keyless
// requirement names: a root rotated to one without the signing CA is
// honoured at the next create, offline.
func TestSigstoreBundleTrustedRootRotationHonouredAtCreate(t *testing.T) {
	e := newEnv(t)
	ca := fixtures.NewBundleCA(t)
	root := ca.Write(t, "node_root.json", mustReadFile(t, ca.TrustedRootPath))
	e.setNamespace("ci", anyDocker(keylessBundleReq(root, fixtures.ReleaseWorkflow, fixtures.GitHubIssuer, "")))
	signed := fixtures.PushImage(t, e.ref("team/app:1"), 1024)
	ca.Sign(t, signed.DigestRef(), fixtures.WorkflowIdentity, fixtures.BundleEvidence{TLog: true})
	img := e.mustPull(signed.Ref, "ci")
	e.reg.Stop()
	if _, err := e.admit(img, signed.Ref, "ci"); err != nil {
		t.Fatal(err)
	}
	if a, err := e.admit(img, signed.Ref, "ci"); err != nil || !a.Cached {
		t.Fatalf("second create: %+v, %v; want a cached admission", a, err)
	}
	writeFile(t, root, string(mustReadFile(t, ca.OtherRootPath)))
	_, err := e.admit(img, signed.Ref, "ci")
	wantRejected(t, err, "create after the trusted root dropped the CA", "untrusted_key")
	// And back: the original root admits again.
	writeFile(t, root, string(mustReadFile(t, ca.TrustedRootPath)))
	if _, err := e.admit(img, signed.Ref, "ci"); err != nil {
		t.Fatalf("create after the root was restored: %v", err)
	}
}

// A registry listing 10,000 bundle referrers of an image (the only real
// bundle last), through the referrers API and through the tag schema: the
// pull looks at the first 64, fetches no more, and refuses the image for
// want of a bundle; it neither hangs nor reads the rest.
func TestSigstoreBundleTenThousandReferrersStayBounded(t *testing.T) {
	for _, withAPI := range []bool{true, false} {
		t.Run(fmt.Sprintf("referrersAPI=%v", withAPI), func(t *testing.T) {
			e := bundleEnv(t, withAPI)
			key := fixtures.NewBundleKey(t)
			e.setNamespace("strict", anyDocker(bundleReq(key.PublicKeyPath)))
			img := fixtures.PushImage(t, e.ref("team/crowded:1"), 1024)
			if withAPI {
				// The API lists referrers in the order they came: the
				// real one last.
				fixtures.CrowdReferrers(t, e.reg, img.DigestRef(), 9999)
				key.Sign(t, img.DigestRef())
			} else {
				key.Sign(t, img.DigestRef())
				fixtures.CrowdReferrers(t, e.reg, img.DigestRef(), 10000)
			}

			var manifestGets atomic.Int64
			e.reg.OnRequest(func(r *http.Request) {
				if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/team/crowded/manifests/sha256:") {
					manifestGets.Add(1)
				}
			})
			_, err := e.pull(img.Ref, "strict")
			wantRejected(t, err, "10,000 referrers, the bundle past the bound", "no sigstore bundle exists")
			// 64 referrers at most, plus the image's own manifest by digest.
			if n := manifestGets.Load(); n > 64+2 {
				t.Errorf("%d manifests fetched by digest, want at most 66", n)
			}
		})
	}
}
