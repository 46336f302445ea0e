package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crivet/crivet/oci/checkpoint"
	"github.com/crivet/crivet/policy"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func writeArchive(t *testing.T, name, id string) string {
	t.Helper()
	dir := t.TempDir()
	images := filepath.Join(dir, "images")
	os.Mkdir(images, 0o700)
	os.WriteFile(filepath.Join(images, "inventory.img"), []byte("x"), 0o600)
	path := filepath.Join(dir, "ckpt.tar")
	if err := checkpoint.Write(path, checkpoint.Contents{
		Config: checkpoint.Config{Name: "web", RootfsImageName: name, RootfsImageRef: id, CheckpointedAt: time.Now()},
		Spec:   &specs.Spec{}, Images: images,
	}); err != nil {
		t.Fatal(err)
	}
	return path
}

// A create naming a checkpoint archive is admitted as a create of the
// image the archive records, under the stored pod's namespace, and the
// lifecycle is asked to restore from that archive.
func TestCreateFromCheckpointAdmitsTheRecordedImage(t *testing.T) {
	f := createFixture(t)
	archive := writeArchive(t, "reg/app:1", "sha256:app")
	req := createReq("web")
	req.Config.Image = &runtimeapi.ImageSpec{Image: archive, UserSpecifiedImage: archive}
	if _, err := create(t, f, req); err != nil {
		t.Fatal(err)
	}
	if len(f.img.admitted) != 1 {
		t.Fatalf("admissions: %+v", f.img.admitted)
	}
	a := f.img.admitted[0]
	if a.Image.ID != "sha256:app" || a.UserRef != "reg/app:1" || a.Namespace != "team-a" {
		t.Errorf("admitted %s as %q in %q, want sha256:app as reg/app:1 in team-a", a.Image.ID, a.UserRef, a.Namespace)
	}
	if len(f.lc.created) != 1 || f.lc.created[0].Restore == nil || f.lc.created[0].Restore.Path != archive {
		t.Fatalf("lifecycle requests: %+v", f.lc.created)
	}
	if got := f.lc.created[0].Config.GetImage().GetImage(); got != "reg/app:1" {
		t.Errorf("restored container's image %q, want reg/app:1", got)
	}
}

// A refusal of the recorded image is the refusal of the restore, in the
// one shape kubelet knows; a node image that is not the checkpoint's is
// FailedPrecondition; neither reaches the lifecycle.
func TestCreateFromCheckpointRefusals(t *testing.T) {
	f := createFixture(t)
	f.img.admitErr = map[string]error{"sha256:app": &policy.Rejection{Reason: context.Canceled}}
	req := createReq("web")
	req.Config.Image = &runtimeapi.ImageSpec{Image: writeArchive(t, "reg/app:1", "sha256:app")}
	_, err := create(t, f, req)
	wantCode(t, err, codes.Unknown)
	if err == nil || !strings.HasPrefix(err.Error(), "SignatureValidationFailed") {
		t.Errorf("refused restore: %v", err)
	}
	f.img.admitErr = nil
	req.Config.Image = &runtimeapi.ImageSpec{Image: writeArchive(t, "reg/app:1", "sha256:other")}
	_, err = create(t, f, req)
	wantCode(t, err, codes.FailedPrecondition)
	if len(f.lc.created) != 0 {
		t.Errorf("lifecycle asked to create: %+v", f.lc.created)
	}
}

func TestCheckpointContainerNeedsALocation(t *testing.T) {
	f := createFixture(t)
	_, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.CheckpointContainerResponse, error) {
		return f.s.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: "c1"})
	})
	wantCode(t, err, codes.InvalidArgument)
	wantCalls(t, "lifecycle", f.lc.got())
}
