package image

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crivet/crivet/policy"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestSmokePull(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, _ := random.Image(1024, 1)
	ref, _ := name.ParseReference(host + "/smoke/a:1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "policy.json"), []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644)
	os.WriteFile(filepath.Join(dir, "registries.conf"), []byte("[[registry]]\nlocation=\""+host+"\"\ninsecure=true\n"), 0o644)
	svc, err := Open(Config{Root: filepath.Join(dir, "root"), RunRoot: filepath.Join(dir, "run"), RegistriesConf: filepath.Join(dir, "registries.conf"), RegistriesD: filepath.Join(dir, "rd"), Policies: policy.NewStore(filepath.Join(dir, "policy.json"), "")})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	got, err := svc.Pull(context.Background(), PullRequest{Ref: host + "/smoke/a:1"})
	if err != nil {
		t.Fatal(err)
	}
	cd, _ := img.ConfigName()
	t.Logf("%+v %+v", got, got.Record)
	if got.ID != cd.String() {
		t.Fatalf("id %s want %s", got.ID, cd)
	}
}
