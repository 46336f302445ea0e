package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crivet/crivet/test/fixtures"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// An operator's allow-list: everything rejected except the pause image
// (exempt, unsigned) and a team's signed images. A CRI request that names
// an unsigned image of another repository by the exempt name, or by its
// ID, or mounts it as an image volume under the exempt name, must not run
// it: the checked reference must name the very image that runs.
func TestLyingUserSpecifiedImageCannotBorrowAnExemption(t *testing.T) {
	n := newNode(t)
	key := fixtures.NewSigstoreKey(t)
	pause := fixtures.PushBusybox(t, n.reg.Ref("infra/pause:3"), fixtures.BusyboxConfig{Cmd: []string{"sleep", "3600"}})
	evil := fixtures.PushBusybox(t, n.reg.Ref("team/evil:1"), fixtures.BusyboxConfig{Cmd: []string{"sleep", "3600"}, Files: map[string]string{"/evil": "yes"}})
	n.setGlobal(fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{%q:[{"type":"insecureAcceptAnything"}],%q:[{"type":"sigstoreSigned","keyPath":%q,"signedIdentity":{"type":"matchRepository"}}]}}}`,
		n.reg.Addr+"/infra/pause", n.reg.Addr+"/team", key.PublicKeyPath))
	n.setNamespace("loose", `{"default":[{"type":"insecureAcceptAnything"}]}`)
	n.start()
	rc, ic := n.clients()
	for _, ref := range []string{pause.Ref, evil.Ref} {
		if _, err := ic.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref},
			SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Namespace: "loose"}}}); err != nil {
			t.Fatal(err)
		}
	}
	n.reg.Stop()

	podID := firstLine(n.mustCrictl("runp", n.podJSON("p", "prod", nil)))
	create := func(name, image, user string, mounts []*runtimeapi.Mount) (string, error) {
		resp, err := rc.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID,
			Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: name}, Mounts: mounts,
				Image: &runtimeapi.ImageSpec{Image: image, UserSpecifiedImage: user}, Linux: &runtimeapi.LinuxContainerConfig{}}})
		return resp.GetContainerId(), err
	}
	bundles := func() int { ents, _ := os.ReadDir(filepath.Join(n.dir, "run", "bundles")); return len(ents) }
	hexID := strings.TrimPrefix(evil.ConfigDigest, "sha256:")
	volume := func(user string) []*runtimeapi.Mount {
		return []*runtimeapi.Mount{{ContainerPath: "/vol", Readonly: true, Image: &runtimeapi.ImageSpec{Image: evil.ConfigDigest, UserSpecifiedImage: user}}}
	}
	for _, tc := range []struct {
		name, image, user string
		mounts            []*runtimeapi.Mount
		want              string
	}{
		{"exempt name", evil.ConfigDigest, pause.Ref, nil, "names image " + pause.ConfigDigest + ", not the image being created (" + evil.ConfigDigest + ")"},
		{"exempt repository with the image's digest", evil.ConfigDigest, n.reg.Ref("infra/pause@" + evil.ManifestDigest), nil, "does not name the image being created"},
		{"image ID as the name (a pod with image: sha256:<id>)", evil.ConfigDigest, evil.ConfigDigest, nil, "A signature was required, but no signature exists"},
		{"bare image ID", evil.ConfigDigest, hexID, nil, "A signature was required, but no signature exists"},
		{"short image ID", evil.ConfigDigest, "sha256:" + hexID[:12], nil, "A signature was required, but no signature exists"},
		{"image volume under the exempt name", pause.ConfigDigest, pause.Ref, volume(pause.Ref), "names image " + pause.ConfigDigest},
		{"image volume by ID", pause.ConfigDigest, pause.Ref, volume(evil.ConfigDigest), "A signature was required, but no signature exists"},
	} {
		before := bundles()
		_, err := create(strings.ReplaceAll(tc.name, " ", "-"), tc.image, tc.user, tc.mounts)
		st, _ := status.FromError(err)
		if err == nil || st.Code() != codes.Unknown || !strings.HasPrefix(st.Message(), "SignatureValidationFailed: ") || !strings.Contains(st.Message(), tc.want) {
			t.Fatalf("%s: create: %v; want Unknown SignatureValidationFailed containing %q", tc.name, err, tc.want)
		}
		if bundles() != before {
			t.Fatalf("%s: a refused create left a bundle", tc.name)
		}
	}
	if out := strings.TrimSpace(n.mustCrictl("ps", "-a", "-q")); out != "" {
		t.Fatalf("refused creates left containers: %q", out)
	}
	// The exempt image itself runs, by name or by ID.
	for i, user := range []string{pause.Ref, pause.ConfigDigest} {
		if _, err := create(fmt.Sprintf("pause-%d", i), pause.ConfigDigest, user, nil); err != nil {
			t.Fatalf("exempt image as %q: %v", user, err)
		}
	}
	n.mustCrictl("stopp", podID)
	n.mustCrictl("rmp", podID)
	assertNothingLeft(t, n)
}
