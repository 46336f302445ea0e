package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crivet/crivet/image"
	"github.com/crivet/crivet/policy"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// appImage is an image the fake store holds.
var appImage = &image.Image{ID: "sha256:app", RepoTags: []string{"reg/app:1"}}

func pull(t *testing.T, f *fixture, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	return call(t, f.s, func(ctx context.Context) (*runtimeapi.PullImageResponse, error) { return f.s.PullImage(ctx, req) })
}

func TestPullImageWithAnEmptyReferenceIsInvalidArgumentAndPullsNothing(t *testing.T) {
	for _, req := range []*runtimeapi.PullImageRequest{{}, {Image: &runtimeapi.ImageSpec{}}} {
		f := newFixture(t)
		_, err := pull(t, f, req)
		wantCode(t, err, codes.InvalidArgument)
		wantCalls(t, "images", f.img.got())
	}
}

// Pull-time policy is the namespace of the pod the image is pulled for.
func TestPullImagePassesTheNamespaceAndCredentials(t *testing.T) {
	f := newFixture(t)
	resp, err := pull(t, f, &runtimeapi.PullImageRequest{
		Image:         &runtimeapi.ImageSpec{Image: "reg/app:1"},
		Auth:          &runtimeapi.AuthConfig{Username: "u", Password: "p", IdentityToken: "it", RegistryToken: "rt", Auth: "YTpi"},
		SandboxConfig: podConfig("web", "team-a", nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ImageRef != "sha256:pulled-reg/app:1" {
		t.Fatalf("image ref %q, want the pulled image's ID", resp.ImageRef)
	}
	pr := f.img.pulled[0]
	want := image.Auth{Username: "u", Password: "p", Auth: "YTpi", IdentityToken: "it", RegistryToken: "rt"}
	if pr.Ref != "reg/app:1" || pr.Namespace != "team-a" || pr.Auth == nil || *pr.Auth != want {
		t.Fatalf("pull request %+v auth %+v", pr, pr.Auth)
	}
	// Without a pod or credentials.
	if _, err := pull(t, f, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "reg/b:1"}}); err != nil {
		t.Fatal(err)
	}
	if pr := f.img.pulled[1]; pr.Namespace != "" || pr.Auth != nil {
		t.Fatalf("pull without pod or auth: %+v", pr)
	}
}

func TestPullImageFailuresHaveTheShapeKubeletMatches(t *testing.T) {
	for _, c := range []struct {
		name   string
		err    error
		code   codes.Code
		prefix string
	}{
		{"policy rejection", fmt.Errorf("pull reg/x: %w", &policy.Rejection{Reason: errors.New("A signature was required")}), codes.Unknown, "SignatureValidationFailed: Source image rejected: "},
		{"policy refusal", fmt.Errorf("%w: no signature", policy.ErrRefused), codes.Unknown, "SignatureValidationFailed: "},
		{"registry down", fmt.Errorf("pull reg/x: %w: dial tcp", image.ErrRegistryUnavailable), codes.Unknown, "RegistryUnavailable: "},
		{"bad reference", fmt.Errorf("pull: %w", image.ErrInvalidReference), codes.InvalidArgument, "pull: "},
		{"deadline", fmt.Errorf("pull: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "pull: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.img.pullErr = c.err
			_, err := pull(t, f, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "reg/x:1"}})
			wantCode(t, err, c.code)
			if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, c.prefix) {
				t.Fatalf("message %q does not start with %q", msg, c.prefix)
			}
		})
	}
}

func imageStatus(t *testing.T, f *fixture, ref string, verbose bool) (*runtimeapi.ImageStatusResponse, error) {
	return call(t, f.s, func(ctx context.Context) (*runtimeapi.ImageStatusResponse, error) {
		return f.s.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}, Verbose: verbose})
	})
}

// CRI: a missing image is an answer with a nil image, not an error.
func TestImageStatusOfAMissingImageIsANilImage(t *testing.T) {
	f := newFixture(t)
	f.img.add(appImage)
	resp, err := imageStatus(t, f, "reg/none:1", true)
	if err != nil {
		t.Fatalf("missing image: %v", err)
	}
	if resp.Image != nil || resp.Info != nil {
		t.Fatalf("missing image answered %v", resp)
	}
}

func TestImageStatusErrorCodes(t *testing.T) {
	f := newFixture(t)
	f.img.add(&image.Image{ID: "sha256:ab1"}, &image.Image{ID: "sha256:ab2"})
	f.img.getErr = map[string]error{"bad ref": fmt.Errorf("%w: bad ref", image.ErrInvalidReference)}
	_, err := imageStatus(t, f, "sha256:ab", false)
	wantCode(t, err, codes.InvalidArgument)
	_, err = imageStatus(t, f, "bad ref", false)
	wantCode(t, err, codes.InvalidArgument)
}

func TestImageStatusReportsTheImage(t *testing.T) {
	for _, c := range []struct {
		user     string
		uid      *int64
		username string
	}{
		{"", nil, ""},
		{"1000", ptr(int64(1000)), ""},
		{"0:0", ptr(int64(0)), ""},
		{"www-data", nil, "www-data"},
		{"www-data:1004", nil, "www-data"},
	} {
		t.Run("user "+c.user, func(t *testing.T) {
			f := newFixture(t)
			f.img.add(&image.Image{ID: "sha256:app", RepoTags: []string{"reg/app:1"}, RepoDigests: []string{"reg/app@sha256:m"}, Size: 1234, User: c.user, Record: &image.Record{}})
			resp, err := imageStatus(t, f, "reg/app:1", false)
			if err != nil {
				t.Fatal(err)
			}
			img := resp.Image
			if img.Id != "sha256:app" || img.Spec.GetImage() != "sha256:app" || img.Size != 1234 ||
				!slices.Equal(img.RepoTags, []string{"reg/app:1"}) || !slices.Equal(img.RepoDigests, []string{"reg/app@sha256:m"}) {
				t.Fatalf("image %v", img)
			}
			if (img.Uid == nil) != (c.uid == nil) || (c.uid != nil && img.Uid.Value != *c.uid) || img.Username != c.username {
				t.Fatalf("user %q reported as uid %v username %q", c.user, img.Uid, img.Username)
			}
			if resp.Info != nil {
				t.Fatal("non-verbose status has info")
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestVerboseImageStatusHasTheRecord(t *testing.T) {
	f := newFixture(t)
	f.img.add(&image.Image{ID: "sha256:app", Record: &image.Record{}})
	resp, err := imageStatus(t, f, "sha256:app", true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.Info["info"], "{") {
		t.Fatalf("verbose info %q", resp.Info)
	}
}

func TestListImagesFilterByImage(t *testing.T) {
	for _, c := range []struct {
		name string
		ref  string
		want []string
		code codes.Code
	}{
		{"no filter", "", []string{"sha256:a1", "sha256:a2", "sha256:b1"}, codes.OK},
		{"by tag", "reg/b:1", []string{"sha256:b1"}, codes.OK},
		{"by ID prefix", "sha256:b", []string{"sha256:b1"}, codes.OK},
		{"missing image is an empty list", "reg/none:1", nil, codes.OK},
		{"ambiguous prefix is InvalidArgument", "sha256:a", nil, codes.InvalidArgument},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.img.add(&image.Image{ID: "sha256:a1", RepoTags: []string{"reg/a:1"}}, &image.Image{ID: "sha256:a2"}, &image.Image{ID: "sha256:b1", RepoTags: []string{"reg/b:1"}})
			var filter *runtimeapi.ImageFilter
			if c.ref != "" {
				filter = &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: c.ref}}
			}
			resp, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.ListImagesResponse, error) {
				return f.s.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: filter})
			})
			wantCode(t, err, c.code)
			if got := ids(resp.GetImages(), (*runtimeapi.Image).GetId); !slices.Equal(got, c.want) {
				t.Fatalf("listed %q, want %q", got, c.want)
			}
		})
	}
}

func TestStreamImagesSendsEverythingInBoundedBatches(t *testing.T) {
	for _, n := range []int{0, 1, 100, 250, 2500} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := newFixture(t)
			for i := range n {
				f.img.add(&image.Image{ID: fmt.Sprintf("sha256:%05d", i)})
			}
			stream := newStream[runtimeapi.StreamImagesResponse](context.Background())
			if err := callStream(t, f.s, stream, func() error { return f.s.StreamImages(&runtimeapi.StreamImagesRequest{}, stream) }); err != nil {
				t.Fatal(err)
			}
			var sizes []int
			var all []string
			for _, m := range stream.messages() {
				sizes = append(sizes, len(m.Images))
				for _, img := range m.Images {
					all = append(all, img.Id)
				}
			}
			checkBatches(t, sizes, all, n)
		})
	}
}

func TestStreamImagesFilterErrorHasItsCode(t *testing.T) {
	f := newFixture(t)
	f.img.add(&image.Image{ID: "sha256:a1"}, &image.Image{ID: "sha256:a2"})
	stream := newStream[runtimeapi.StreamImagesResponse](context.Background())
	err := callStream(t, f.s, stream, func() error {
		return f.s.StreamImages(&runtimeapi.StreamImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "sha256:a"}}}, stream)
	})
	wantCode(t, err, codes.InvalidArgument)
	if len(stream.messages()) != 0 {
		t.Fatal("sent a batch before failing")
	}
}

func TestRemoveImage(t *testing.T) {
	for _, c := range []struct {
		name string
		ref  string
		err  error
		code codes.Code
	}{
		{"present", "reg/app:1", nil, codes.OK},
		{"missing succeeds", "reg/none:1", nil, codes.OK},
		{"in use is FailedPrecondition", "reg/app:1", fmt.Errorf("remove: %w by c1", image.ErrInUse), codes.FailedPrecondition},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.img.add(appImage)
			f.img.removeErr = c.err
			_, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.RemoveImageResponse, error) {
				return f.s.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: c.ref}})
			})
			wantCode(t, err, c.code)
			wantCalls(t, "images", f.img.got(), "Remove "+c.ref)
		})
	}
}

func TestImageFsInfoMapsUsageForImagesAndContainers(t *testing.T) {
	f := newFixture(t)
	ts := time.Unix(1_700_000_000, 5)
	f.img.usage = image.Usage{Mountpoint: "/var/lib/crivet/storage", UsedBytes: 7 << 30, InodesUsed: 12345, Timestamp: ts}
	resp, err := call(t, f.s, func(ctx context.Context) (*runtimeapi.ImageFsInfoResponse, error) {
		return f.s.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.ImageFilesystems) != 1 || len(resp.ContainerFilesystems) != 1 {
		t.Fatalf("filesystems %v", resp)
	}
	for _, fs := range []*runtimeapi.FilesystemUsage{resp.ImageFilesystems[0], resp.ContainerFilesystems[0]} {
		if fs.FsId.GetMountpoint() != "/var/lib/crivet/storage" || fs.UsedBytes.GetValue() != 7<<30 || fs.InodesUsed.GetValue() != 12345 || fs.Timestamp != ts.UnixNano() {
			t.Fatalf("usage %v", fs)
		}
	}
	f.img.usageErr = errors.New("walk: permission denied")
	_, err = call(t, f.s, func(ctx context.Context) (*runtimeapi.ImageFsInfoResponse, error) {
		return f.s.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	})
	wantCode(t, err, codes.Unknown)
}
