package bundle

import (
	"os"
	"strings"
	"testing"
)

func TestParseRequirement(t *testing.T) {
	valid := []struct {
		name, json   string
		keyBased     bool
		tlog, stamps int
	}{
		{"key path", `{"type":"sigstoreBundle","keyPath":"/etc/k.pub"}`, true, 0, 0},
		{"key paths", `{"type":"sigstoreBundle","keyPaths":["/etc/a.pub","/etc/b.pub"]}`, true, 0, 0},
		{"key data", `{"type":"sigstoreBundle","keyData":"LS0tLS1CRUdJTg=="}`, true, 0, 0},
		{"key with log evidence", `{"type":"sigstoreBundle","keyPath":"/etc/k.pub","trustedRootPath":"/etc/tr.json","transparencyLog":1}`, true, 1, 0},
		{"keyless", `{"type":"sigstoreBundle","trustedRootPath":"/etc/tr.json","subject":"dev@example.com","issuer":"https://accounts.google.com"}`, false, 1, 0},
		{"keyless private deployment without CT", `{"type":"sigstoreBundle","trustedRootPath":"/etc/tr.json","subject":"a@b.c","issuer":"https://i",
			"certificateTransparency":0}`, false, 1, 0},
		{"keyless with regexps and extensions", `{"type":"sigstoreBundle","trustedRootPath":"/etc/tr.json",
			"subjectRegExp":"^https://github\\.com/org/repo/.*$","issuerRegExp":"^https://token\\.actions\\.githubusercontent\\.com$",
			"sourceRepositoryURI":"https://github.com/org/repo","sourceRepositoryRef":"refs/tags/v1",
			"buildSignerURI":"https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1"}`, false, 1, 0},
		{"keyless with timestamps only", `{"type":"sigstoreBundle","trustedRootPath":"/etc/tr.json","subject":"a@b.c","issuer":"https://i",
			"transparencyLog":0,"timestamps":1}`, false, 0, 1},
	}
	for _, c := range valid {
		t.Run(c.name, func(t *testing.T) {
			r, err := ParseRequirement([]byte(c.json))
			if err != nil {
				t.Fatal(err)
			}
			wantCT := 1
			if c.keyBased || strings.Contains(c.json, `"certificateTransparency":0`) {
				wantCT = 0
			}
			if r.CertificateTransparencyThreshold() != wantCT {
				t.Errorf("certificateTransparency %d, want %d", r.CertificateTransparencyThreshold(), wantCT)
			}
			if r.KeyBased() != c.keyBased || r.TransparencyLogThreshold() != c.tlog || r.TimestampThreshold() != c.stamps {
				t.Errorf("keyBased %v tlog %d timestamps %d", r.KeyBased(), r.TransparencyLogThreshold(), r.TimestampThreshold())
			}
		})
	}

	const keyless = `"type":"sigstoreBundle","trustedRootPath":"/etc/tr.json","issuer":"https://i"`
	invalid := []struct{ name, json, want string }{
		{"unknown field", `{"type":"sigstoreBundle","keyPath":"/k","subjectRegex":"x"}`, "unknown field"},
		{"field twice", `{"type":"sigstoreBundle","trustedRootPath":"/t","subject":"a","issuer":"https://i","subject":"b"}`, `"subject" given twice`},
		{"field in another case", `{"type":"sigstoreBundle","trustedRootPath":"/t","subject":"a","issuer":"https://i","SubjectRegexp":"x"}`, "case-sensitive"},
		{"not an object", `["sigstoreBundle"]`, "not a JSON object"},
		{"null", `null`, "type is"},
		{"trailing data", `{"type":"sigstoreBundle","keyPath":"/k"} {}`, "trailing data"},
		{"wrong type", `{"type":"sigstoreSigned","keyPath":"/k"}`, `want "sigstoreBundle"`},
		{"no type", `{"keyPath":"/k"}`, "type is"},
		{"keyless without trusted root", `{"type":"sigstoreBundle","subject":"a@b.c","issuer":"https://i"}`, "without trustedRootPath"},
		{"subject and regexp", `{` + keyless + `,"subject":"a@b.c","subjectRegExp":"^a$"}`, "subject and subjectRegExp are exclusive"},
		{"issuer and regexp", `{"type":"sigstoreBundle","trustedRootPath":"/t","subject":"a","issuer":"https://i","issuerRegExp":"^x$"}`, "issuer and issuerRegExp are exclusive"},
		{"invalid regexp", `{` + keyless + `,"subjectRegExp":"^(a$"}`, "subjectRegExp"},
		{"no subject", `{` + keyless + `}`, "without subject or subjectRegExp"},
		{"no issuer", `{"type":"sigstoreBundle","trustedRootPath":"/t","subject":"a"}`, "without issuer"},
		{"keyless without evidence", `{` + keyless + `,"subject":"a","transparencyLog":0}`, "transparencyLog ≥ 1 or timestamps ≥ 1"},
		{"certificate transparency for keys", `{"type":"sigstoreBundle","keyPath":"/k","certificateTransparency":1}`, "not to keys"},
		{"negative certificate transparency", `{` + keyless + `,"subject":"a","certificateTransparency":-1}`, "must be 0 or more"},
		{"negative threshold", `{"type":"sigstoreBundle","keyPath":"/k","timestamps":-1}`, "must be 0 or more"},
		{"key and identity", `{"type":"sigstoreBundle","keyPath":"/k","subject":"a"}`, "apply to keyless"},
		{"two key sources", `{"type":"sigstoreBundle","keyPath":"/k","keyData":"eA=="}`, "exclusive"},
		{"empty key paths", `{"type":"sigstoreBundle","keyPaths":[]}`, "keyPaths is empty"},
		{"relative key path", `{"type":"sigstoreBundle","keyPath":"k.pub"}`, "not absolute"},
		{"relative trusted root", `{"type":"sigstoreBundle","trustedRootPath":"tr.json","subject":"a","issuer":"https://i"}`, "not absolute"},
		{"key data not base64", `{"type":"sigstoreBundle","keyData":"%%%"}`, "not base64"},
		{"key evidence without trusted root", `{"type":"sigstoreBundle","keyPath":"/k","transparencyLog":1}`, "needs trustedRootPath"},
		{"oversize", `{"type":"sigstoreBundle","keyData":"` + strings.Repeat("A", maxRequirementSize) + `"}`, "more than"},
	}
	for _, c := range invalid {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRequirement([]byte(c.json))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestLint(t *testing.T) {
	base := func(subjectRE, issuerRE string) *Requirement {
		r := &Requirement{Type: RequirementType, TrustedRootPath: "/t", SubjectRegExp: subjectRE, IssuerRegExp: issuerRE}
		if issuerRE == "" {
			r.Issuer = "https://accounts.google.com"
		}
		return r
	}
	cases := []struct {
		name string
		req  *Requirement
		want []string // substrings, one per warning
	}{
		{"anchored", base(`^dev@example\.com$`, ""), nil},
		{"match everything", base(`.*`, ""), []string{"matches any value"}},
		{"match everything anchored", base(`^.*$`, ""), []string{"matches any value"}},
		{"unanchored", base(`@example\.com`, ""), []string{"not anchored"}},
		{"unanchored issuer", base(`^a@b\.c$`, `accounts\.google\.com`), []string{"issuerRegExp", "not anchored"}},
		{"github without repository", &Requirement{Type: RequirementType, TrustedRootPath: "/t", Issuer: ghIssuer,
			SubjectRegExp: `^https://github\.com/org/.*$`}, []string{"another repository"}},
		{"unused trusted root", &Requirement{Type: RequirementType, KeyPath: "/k", TrustedRootPath: "/t"}, []string{"trustedRootPath is unused"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.req.Validate(); err != nil {
				t.Fatal(err)
			}
			got := c.req.Lint()
			joined := strings.Join(got, "\n")
			if len(c.want) == 0 && len(got) != 0 {
				t.Fatalf("warnings %q", got)
			}
			for _, w := range c.want {
				if !strings.Contains(joined, w) {
					t.Errorf("warnings %q lack %q", got, w)
				}
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	f := newFixture(t)
	_, keyPath := f.newKey("k.pub")
	rootPath := f.write("tr.json", mustRead(t, f.trustedRoot))
	keyless := &Requirement{Type: RequirementType, TrustedRootPath: rootPath, Subject: workflow, Issuer: ghIssuer}
	key := &Requirement{Type: RequirementType, KeyPath: keyPath}

	fp := keyless.Fingerprint()
	if again := keyless.Fingerprint(); again != fp {
		t.Fatalf("fingerprint not stable: %s then %s", fp, again)
	}
	p, err := Prepare(keyless)
	must(t, err)
	if p.Fingerprint() != fp {
		t.Errorf("Prepared fingerprint %s, requirement's %s", p.Fingerprint(), fp)
	}

	// The default threshold written out is the same requirement.
	explicit := *keyless
	explicit.TransparencyLog, explicit.Timestamps, explicit.CertificateTransparency = intp(1), intp(0), intp(1)
	if explicit.Fingerprint() != fp {
		t.Error("explicit default thresholds change the fingerprint")
	}
	// Any matcher changes it.
	other := *keyless
	other.Subject = devEmail
	if other.Fingerprint() == fp {
		t.Error("another subject, same fingerprint")
	}

	// A rotated trusted root changes it; the Prepared keeps describing
	// what it loaded.
	must(t, os.WriteFile(rootPath, mustRead(t, f.otherRoot), 0o600))
	rotated := keyless.Fingerprint()
	if rotated == fp {
		t.Error("rotated trusted root, same fingerprint")
	}
	if p.Fingerprint() != fp {
		t.Error("Prepared fingerprint followed the file")
	}
	// So does its removal, and its return.
	must(t, os.Remove(rootPath))
	if gone := keyless.Fingerprint(); gone == rotated || gone == fp {
		t.Error("removed trusted root not seen")
	}
	must(t, os.WriteFile(rootPath, mustRead(t, f.trustedRoot), 0o600))
	if keyless.Fingerprint() != fp {
		t.Error("restored trusted root, fingerprint differs")
	}

	// Keys too.
	kfp := key.Fingerprint()
	_, otherKey := f.newKey("other.pub")
	must(t, os.WriteFile(keyPath, mustRead(t, otherKey), 0o600))
	if key.Fingerprint() == kfp {
		t.Error("replaced key, same fingerprint")
	}
}
