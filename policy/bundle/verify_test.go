package bundle

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
)

func keylessReq(f *fixture) *Requirement {
	return &Requirement{Type: RequirementType, TrustedRootPath: f.trustedRoot, Subject: workflow, Issuer: ghIssuer}
}

func admit(t *testing.T, req *Requirement, b []byte, d digest.Digest, also ...digest.Digest) Result {
	t.Helper()
	if err := req.Validate(); err != nil {
		t.Fatalf("requirement: %v", err)
	}
	res, err := Verify(context.Background(), req, b, d, also)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if res.PredicateType != CosignSignPredicateType || res.MediaType != bundleV03 {
		t.Errorf("result kind %q %q", res.PredicateType, res.MediaType)
	}
	return res
}

func refuse(t *testing.T, req *Requirement, b []byte, d digest.Digest, wantReason string, also ...digest.Digest) {
	t.Helper()
	res, err := Verify(context.Background(), req, b, d, also)
	if err == nil {
		t.Fatalf("Verify admitted: %+v", res)
	}
	var rej *Rejection
	if !errors.As(err, &rej) {
		t.Fatalf("error %v is not a *Rejection", err)
	}
	if got := ReasonOf(err); got != wantReason {
		t.Fatalf("reason %q, want %q: %v", got, wantReason, err)
	}
}

func TestKeyBasedAdmitted(t *testing.T) {
	f := newFixture(t)
	kp, keyPath := f.newKey("release.pub")
	d := randomDigest(t)
	b := f.keyBundle(kp, statementFor(t, d, CosignSignPredicateType), evidence{})

	res := admit(t, &Requirement{Type: RequirementType, KeyPath: keyPath}, b, d)
	if res.Identity.Key != keyPath || res.Identity.SAN != "" || res.Subject != d || res.ViaAlsoAccept {
		t.Errorf("result %+v", res)
	}
	if len(res.TransparencyLog) != 0 || len(res.Timestamps) != 0 {
		t.Errorf("evidence reported that was not required: %+v", res)
	}
}

func TestKeyBasedSeveralKeys(t *testing.T) {
	f := newFixture(t)
	_, otherPath := f.newKey("other.pub")
	kp, keyPath := f.newKey("release.pub")
	d := randomDigest(t)
	b := f.keyBundle(kp, statementFor(t, d, CosignSignPredicateType), evidence{})

	res := admit(t, &Requirement{Type: RequirementType, KeyPaths: []string{otherPath, keyPath}}, b, d)
	if res.Identity.Key != keyPath {
		t.Errorf("signer %q, want %q", res.Identity.Key, keyPath)
	}

	// The same two keys in one file, and as keyData.
	other, err := os.ReadFile(otherPath)
	must(t, err)
	mine, err := os.ReadFile(keyPath)
	must(t, err)
	both := append(append([]byte{}, other...), mine...)
	res = admit(t, &Requirement{Type: RequirementType, KeyPath: f.write("both.pub", both)}, b, d)
	if !strings.HasSuffix(res.Identity.Key, "both.pub#1") {
		t.Errorf("signer %q, want the second key of both.pub", res.Identity.Key)
	}
	res = admit(t, &Requirement{Type: RequirementType, KeyData: base64.StdEncoding.EncodeToString(mine)}, b, d)
	if res.Identity.Key != "keyData" {
		t.Errorf("signer %q, want keyData", res.Identity.Key)
	}
}

func TestKeyBasedRefused(t *testing.T) {
	f := newFixture(t)
	kp, keyPath := f.newKey("release.pub")
	_, otherPath := f.newKey("other.pub")
	d := randomDigest(t)
	b := f.keyBundle(kp, statementFor(t, d, CosignSignPredicateType), evidence{})
	keyReq := &Requirement{Type: RequirementType, KeyPath: keyPath}

	t.Run("another key", func(t *testing.T) {
		refuse(t, &Requirement{Type: RequirementType, KeyPath: otherPath}, b, d, ReasonUntrustedKey)
	})
	t.Run("key rotated away", func(t *testing.T) {
		// Verify reads the key file each time: replacing it takes effect.
		rotated := f.write("rotated.pub", nil)
		must(t, os.WriteFile(rotated, mustRead(t, keyPath), 0o600))
		req := &Requirement{Type: RequirementType, KeyPath: rotated}
		admit(t, req, b, d)
		must(t, os.WriteFile(rotated, mustRead(t, otherPath), 0o600))
		refuse(t, req, b, d, ReasonUntrustedKey)
	})
	t.Run("keyless requirement", func(t *testing.T) {
		refuse(t, keylessReq(f), b, d, ReasonUntrustedKey)
	})
	t.Run("keyless bundle for a key requirement", func(t *testing.T) {
		kb := f.keylessBundle(workflowID, statementFor(t, d, CosignSignPredicateType), evidence{TLog: true})
		refuse(t, keyReq, kb, d, ReasonUntrustedKey)
	})
	t.Run("another digest", func(t *testing.T) {
		refuse(t, keyReq, b, randomDigest(t), ReasonDigestMismatch)
	})
	t.Run("attestation", func(t *testing.T) {
		att := f.keyBundle(kp, statementFor(t, d, attestType), evidence{})
		refuse(t, keyReq, att, d, ReasonNotASignature)
	})
	t.Run("tampered payload", func(t *testing.T) {
		// Same digest, another predicate: the signature no longer covers it.
		refuse(t, keyReq, tamperPayload(t, b), d, ReasonUntrustedKey)
	})
	t.Run("unreadable key", func(t *testing.T) {
		refuse(t, &Requirement{Type: RequirementType, KeyPath: f.dir + "/missing.pub"}, b, d, ReasonKeyUnreadable)
		refuse(t, &Requirement{Type: RequirementType, KeyPath: f.write("junk.pub", []byte("not a key"))}, b, d, ReasonKeyUnreadable)
		refuse(t, &Requirement{Type: RequirementType, KeyPath: f.dir}, b, d, ReasonKeyUnreadable)
		fifo := f.dir + "/fifo.pub"
		must(t, syscall.Mkfifo(fifo, 0o600))
		refuse(t, &Requirement{Type: RequirementType, KeyPath: fifo}, b, d, ReasonKeyUnreadable)
	})
	t.Run("timestamps required but absent", func(t *testing.T) {
		req := &Requirement{Type: RequirementType, KeyPath: keyPath, TrustedRootPath: f.trustedRoot, Timestamps: intp(1)}
		refuse(t, req, b, d, ReasonMissingEvidence)
	})
}

func TestKeyBasedTimestampEvidence(t *testing.T) {
	f := newFixture(t)
	kp, keyPath := f.newKey("release.pub")
	d := randomDigest(t)
	b := f.keyBundle(kp, statementFor(t, d, CosignSignPredicateType), evidence{Timestamp: true})
	res := admit(t, &Requirement{Type: RequirementType, KeyPath: keyPath, TrustedRootPath: f.trustedRoot, Timestamps: intp(1)}, b, d)
	if len(res.Timestamps) != 1 {
		t.Errorf("timestamps %v, want one", res.Timestamps)
	}
}

func TestKeylessAdmitted(t *testing.T) {
	f := newFixture(t)
	d := randomDigest(t)
	stmt := statementFor(t, d, CosignSignPredicateType)
	withLog := f.keylessBundle(workflowID, stmt, evidence{TLog: true})

	t.Run("exact URI SAN with log evidence", func(t *testing.T) {
		res := admit(t, keylessReq(f), withLog, d)
		id := res.Identity
		if id.SAN != workflow || id.Issuer != ghIssuer || id.SourceRepositoryURI != repoURI || id.BuildSignerURI != workflow || id.Key != "" {
			t.Errorf("identity %+v", id)
		}
		if len(res.TransparencyLog) != 1 {
			t.Fatalf("log entries %+v, want one", res.TransparencyLog)
		}
		e := res.TransparencyLog[0]
		if e.Kind != "dsse/0.0.1" || e.RekorV2 || e.IntegratedTime.IsZero() {
			t.Errorf("log entry %+v", e)
		}
	})
	t.Run("regexp and extensions", func(t *testing.T) {
		req := &Requirement{Type: RequirementType, TrustedRootPath: f.trustedRoot,
			SubjectRegExp:       `^https://github\.com/org/repo/\.github/workflows/release\.yml@refs/tags/v[0-9]+$`,
			IssuerRegExp:        `^https://token\.actions\.githubusercontent\.com$`,
			SourceRepositoryURI: repoURI, SourceRepositoryRef: "refs/tags/v1", BuildSignerURI: workflow}
		if w := req.Lint(); len(w) != 0 {
			t.Errorf("lint: %v", w)
		}
		admit(t, req, withLog, d)
	})
	t.Run("email SAN with timestamp evidence only", func(t *testing.T) {
		b := f.keylessBundle(identity{SAN: devEmail, Issuer: googleIss}, stmt, evidence{Timestamp: true})
		req := &Requirement{Type: RequirementType, TrustedRootPath: f.trustedRoot, Subject: devEmail, Issuer: googleIss,
			TransparencyLog: intp(0), Timestamps: intp(1)}
		res := admit(t, req, b, d)
		if res.Identity.SAN != devEmail || len(res.Timestamps) != 1 || len(res.TransparencyLog) != 0 {
			t.Errorf("result %+v", res)
		}
	})
	t.Run("no SCT, certificate transparency not required", func(t *testing.T) {
		b := f.keylessBundle(workflowID, stmt, evidence{TLog: true, NoSCT: true})
		req := keylessReq(f)
		req.CertificateTransparency = intp(0)
		admit(t, req, b, d)
	})
	t.Run("log and timestamp evidence", func(t *testing.T) {
		b := f.keylessBundle(workflowID, stmt, evidence{TLog: true, Timestamp: true})
		req := keylessReq(f)
		req.Timestamps = intp(1)
		res := admit(t, req, b, d)
		if len(res.Timestamps) != 1 || len(res.TransparencyLog) != 1 {
			t.Errorf("result %+v", res)
		}
	})
	t.Run("Rekor v2 entry and timestamp, default thresholds", func(t *testing.T) {
		// The certificate is checked at the timestamp's time: the entry
		// has no integrated time.
		b := f.rekorV2Bundle(devEmail, googleIss, stmt)
		// The VirtualSigstore's Fulcio embeds no SCTs.
		req := &Requirement{Type: RequirementType, TrustedRootPath: f.trustedRoot, Subject: devEmail, Issuer: googleIss,
			CertificateTransparency: intp(0)}
		res := admit(t, req, b, d)
		if len(res.TransparencyLog) != 1 || len(res.Timestamps) != 1 {
			t.Errorf("result %+v", res)
		}
	})
	t.Run("Rekor v2 entry and timestamp", func(t *testing.T) {
		b := f.rekorV2Bundle(devEmail, googleIss, stmt)
		req := &Requirement{Type: RequirementType, TrustedRootPath: f.trustedRoot, Subject: devEmail, Issuer: googleIss,
			Timestamps: intp(1), CertificateTransparency: intp(0)}
		res := admit(t, req, b, d)
		if len(res.TransparencyLog) != 1 || !res.TransparencyLog[0].RekorV2 || res.TransparencyLog[0].Kind != "hashedrekord/0.0.2" ||
			!res.TransparencyLog[0].IntegratedTime.IsZero() {
			t.Errorf("log entries %+v", res.TransparencyLog)
		}
	})
}

func TestKeylessRefused(t *testing.T) {
	f := newFixture(t)
	d := randomDigest(t)
	stmt := statementFor(t, d, CosignSignPredicateType)
	b := f.keylessBundle(workflowID, stmt, evidence{TLog: true})

	with := func(change func(*Requirement)) *Requirement {
		r := keylessReq(f)
		change(r)
		return r
	}
	cases := []struct {
		name   string
		req    *Requirement
		bundle []byte
		digest digest.Digest
		reason string
	}{
		{"another subject", with(func(r *Requirement) {
			r.Subject = "https://github.com/org/other/.github/workflows/release.yml@refs/tags/v1"
		}), b, d, ReasonKeylessClaims},
		{"another issuer", with(func(r *Requirement) { r.Issuer = googleIss }), b, d, ReasonKeylessClaims},
		{"regexp that does not match", with(func(r *Requirement) {
			r.Subject, r.SubjectRegExp = "", `^https://github\.com/org/repo/\.github/workflows/release\.yml@refs/heads/main$`
		}), b, d, ReasonKeylessClaims},
		{"another source repository", with(func(r *Requirement) { r.SourceRepositoryURI = "https://github.com/org/fork" }), b, d, ReasonKeylessClaims},
		{"another build signer", with(func(r *Requirement) {
			r.BuildSignerURI = "https://github.com/org/repo/.github/workflows/x.yml@refs/tags/v1"
		}), b, d, ReasonKeylessClaims},
		{"attestation", keylessReq(f), f.keylessBundle(workflowID, statementFor(t, d, attestType), evidence{TLog: true}), d, ReasonNotASignature},
		{"bundle for another digest", keylessReq(f), f.keylessBundle(workflowID, statementFor(t, randomDigest(t), CosignSignPredicateType), evidence{TLog: true}), d, ReasonDigestMismatch},
		{"log required but absent", keylessReq(f), f.keylessBundle(workflowID, stmt, evidence{Timestamp: true}), d, ReasonMissingEvidence},
		{"two timestamps required, one present", with(func(r *Requirement) { r.Timestamps = intp(2) }), f.keylessBundle(workflowID, stmt, evidence{TLog: true, Timestamp: true}), d, ReasonMissingEvidence},
		{"Rekor v2 without timestamps required", &Requirement{Type: RequirementType, TrustedRootPath: f.trustedRoot, Subject: devEmail, Issuer: googleIss,
			CertificateTransparency: intp(0)},
			stripTimestamps(t, f.rekorV2Bundle(devEmail, googleIss, stmt)), d, ReasonMissingEvidence},
		{"certificate without SCT", keylessReq(f), f.keylessBundle(workflowID, stmt, evidence{TLog: true, NoSCT: true}), d, ReasonMissingEvidence},
		{"SCT from an unknown CT log", keylessReq(f), f.keylessBundle(workflowID, stmt, evidence{TLog: true, StraySCT: true}), d, ReasonMissingEvidence},
		{"trusted root without the CA", with(func(r *Requirement) { r.TrustedRootPath = f.otherRoot }), b, d, ReasonUntrustedKey},
		{"tampered payload", keylessReq(f), tamperPayload(t, b), d, ReasonInvalidSignature},
		{"truncated", keylessReq(f), b[:len(b)/2], d, ReasonInvalidSignature},
		{"not JSON", keylessReq(f), []byte("\x00\x01garbage"), d, ReasonInvalidSignature},
		{"unknown bundle field", keylessReq(f), addField(t, b), d, ReasonInvalidSignature},
		{"oversize", keylessReq(f), append(bytes.Repeat([]byte(" "), MaxBundleSize), b...), d, ReasonInvalidSignature},
		{"empty", keylessReq(f), nil, d, ReasonNoSignature},
		{"unreadable trusted root", with(func(r *Requirement) { r.TrustedRootPath = f.write("bad_root.json", []byte("{}")) }), b, d, ReasonKeyUnreadable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { refuse(t, c.req, c.bundle, c.digest, c.reason) })
	}
}

func TestAlsoAccept(t *testing.T) {
	f := newFixture(t)
	index, manifest := randomDigest(t), randomDigest(t)
	b := f.keylessBundle(workflowID, statementFor(t, index, CosignSignPredicateType), evidence{TLog: true})

	res := admit(t, keylessReq(f), b, manifest, index)
	if res.Subject != index || !res.ViaAlsoAccept {
		t.Errorf("result %+v, want admitted via the index digest", res)
	}
	refuse(t, keylessReq(f), b, manifest, ReasonDigestMismatch, randomDigest(t))
	refuse(t, keylessReq(f), b, manifest, ReasonDigestMismatch)

	// A signature of the manifest itself is reported as such.
	mb := f.keylessBundle(workflowID, statementFor(t, manifest, CosignSignPredicateType), evidence{TLog: true})
	if res := admit(t, keylessReq(f), mb, manifest, index); res.Subject != manifest || res.ViaAlsoAccept {
		t.Errorf("result %+v", res)
	}
}

func TestVerifyArguments(t *testing.T) {
	f := newFixture(t)
	d := randomDigest(t)
	b := f.keylessBundle(workflowID, statementFor(t, d, CosignSignPredicateType), evidence{TLog: true})
	if _, err := Verify(context.Background(), keylessReq(f), b, "sha256:nothex", nil); err == nil || ReasonOf(err) != ReasonOther {
		t.Errorf("bad manifest digest: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Verify(ctx, keylessReq(f), b, d, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	if _, err := Verify(context.Background(), &Requirement{Type: RequirementType}, b, d, nil); ReasonOf(err) != ReasonPolicyUnreadable {
		t.Errorf("invalid requirement: %v", err)
	}
}

func TestPreparedConcurrent(t *testing.T) {
	f := newFixture(t)
	d := randomDigest(t)
	b := f.keylessBundle(workflowID, statementFor(t, d, CosignSignPredicateType), evidence{TLog: true})
	p, err := Prepare(keylessReq(f))
	must(t, err)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := p.Verify(context.Background(), b, d, nil)
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestPreparedIgnoresLaterChanges(t *testing.T) {
	f := newFixture(t)
	d := randomDigest(t)
	noLog := f.keylessBundle(workflowID, statementFor(t, d, CosignSignPredicateType), evidence{Timestamp: true})
	req := keylessReq(f)
	req.TransparencyLog = intp(1)
	p, err := Prepare(req)
	must(t, err)
	*req.TransparencyLog = 0 // the caller's pointer, not the Prepared's
	_, err = p.Verify(context.Background(), noLog, d, nil)
	if ReasonOf(err) != ReasonMissingEvidence {
		t.Fatalf("got %v, want the threshold of Prepare time", err)
	}
}

// Prepare reuses what it built while the requirement and the content of
// its files are the same, and builds again when a file changes: a key
// rotated in place is used at the next verification.
func TestPrepareReusesUntilAFileChanges(t *testing.T) {
	f := newFixture(t)
	d := randomDigest(t)
	kp, keyPath := f.newKey("release.pub")
	_, otherPath := f.newKey("other.pub")
	b := f.keyBundle(kp, statementFor(t, d, CosignSignPredicateType), evidence{})
	req := &Requirement{Type: RequirementType, KeyPath: keyPath}
	p1, err := Prepare(req)
	must(t, err)
	p2, err := Prepare(&Requirement{Type: RequirementType, KeyPath: keyPath})
	must(t, err)
	if p1 != p2 {
		t.Error("an unchanged requirement and key were prepared twice")
	}
	must(t, os.WriteFile(keyPath, mustRead(t, otherPath), 0o600))
	p3, err := Prepare(req)
	must(t, err)
	if p3 == p1 || p3.Fingerprint() == p1.Fingerprint() {
		t.Fatal("a rotated key file reused the old preparation")
	}
	if _, err := p3.Verify(context.Background(), b, d, nil); ReasonOf(err) != ReasonUntrustedKey {
		t.Fatalf("after rotation: %v, want untrusted_key", err)
	}
	if _, err := p1.Verify(context.Background(), b, d, nil); err != nil {
		t.Fatalf("the earlier preparation changed: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	return data
}

// editBundle decodes a bundle's JSON, lets edit change it, and encodes it.
func editBundle(t *testing.T, b []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	must(t, json.Unmarshal(b, &m))
	edit(m)
	out, err := json.Marshal(m)
	must(t, err)
	return out
}

// tamperPayload replaces the statement's predicate after signing, keeping
// the subject: only the signature can tell.
func tamperPayload(t *testing.T, b []byte) []byte {
	return editBundle(t, b, func(m map[string]any) {
		env := m["dsseEnvelope"].(map[string]any)
		payload, err := base64.StdEncoding.DecodeString(env["payload"].(string))
		must(t, err)
		var st map[string]any
		must(t, json.Unmarshal(payload, &st))
		st["predicate"] = map[string]any{"tampered": true}
		payload, err = json.Marshal(st)
		must(t, err)
		env["payload"] = base64.StdEncoding.EncodeToString(payload)
	})
}

func stripTimestamps(t *testing.T, b []byte) []byte {
	return editBundle(t, b, func(m map[string]any) {
		delete(m["verificationMaterial"].(map[string]any), "timestampVerificationData")
	})
}

func addField(t *testing.T, b []byte) []byte {
	return editBundle(t, b, func(m map[string]any) { m["extra"] = "field" })
}
