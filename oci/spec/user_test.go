package spec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// imageRoot writes an image root filesystem with the accounts critest's
// images have: root, www-data (33) and default-user (1000), a member of
// group-defined-in-image (50000).
func imageRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	write(t, root, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\ndefault-user:x:1000:1000::/home/default-user:/bin/sh\n")
	write(t, root, "etc/group", "root:x:0:\nwww-data:x:33:\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\nusers:x:100:www-data,default-user\n")
	return root
}

func write(t *testing.T, root, name, content string) {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func i64(v int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: v} }

func TestResolveUserFollowsKubernetesRules(t *testing.T) {
	root := imageRoot(t)
	strict := runtimeapi.SupplementalGroupsPolicy_Strict
	tests := []struct {
		name      string
		imageUser string
		sc        *runtimeapi.LinuxContainerSecurityContext
		uid, gid  uint32
		gids      []uint32
		err       error
	}{
		{name: "no user anywhere is root", uid: 0, gid: 0, gids: []uint32{0}},
		{name: "image user by name", imageUser: "www-data", uid: 33, gid: 33, gids: []uint32{33, 100}},
		{name: "image uid:gid without entries", imageUser: "1003:1004", uid: 1003, gid: 1004, gids: []uint32{1004}},
		{name: "image name:gid", imageUser: "www-data:1004", uid: 33, gid: 1004, gids: []uint32{1004, 100}},
		{name: "image name:group name", imageUser: "www-data:users", uid: 33, gid: 100, gids: []uint32{100}},
		{name: "image uid with entry takes passwd gid", imageUser: "1000", uid: 1000, gid: 1000, gids: []uint32{1000, 50000, 100}},
		{name: "run_as_user replaces image user and group", imageUser: "1003:1004", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(33)}, uid: 33, gid: 33, gids: []uint32{33, 100}},
		{name: "run_as_user unknown uid has gid 0", imageUser: "www-data", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(4242)}, uid: 4242, gid: 0, gids: []uint32{0}},
		{name: "run_as_group", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000), RunAsGroup: i64(2000)}, uid: 1000, gid: 2000, gids: []uint32{2000, 50000, 100}},
		{name: "run_as_username", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "www-data"}, uid: 33, gid: 33, gids: []uint32{33, 100}},
		{name: "merge: critest predefined group", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000), SupplementalGroups: []int64{1234}}, uid: 1000, gid: 1000, gids: []uint32{1000, 50000, 100, 1234}},
		{name: "strict: only the given groups", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000), SupplementalGroups: []int64{1234}, SupplementalGroupsPolicy: strict}, uid: 1000, gid: 1000, gids: []uint32{1000, 1234}},
		{name: "supplemental groups of root", sc: &runtimeapi.LinuxContainerSecurityContext{SupplementalGroups: []int64{1234, 5678, 1234}}, uid: 0, gid: 0, gids: []uint32{0, 1234, 5678}},
		{name: "run_as_group without user", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsGroup: i64(1002)}, err: ErrInvalid},
		{name: "unknown run_as_username", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "nobody-here"}, err: ErrUserNotFound},
		{name: "unknown image user name", imageUser: "ghost", err: ErrUserNotFound},
		{name: "unknown image group name", imageUser: "1000:ghosts", err: ErrUserNotFound},
		{name: "negative run_as_user", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(-1)}, err: ErrInvalid},
		{name: "negative supplemental group", sc: &runtimeapi.LinuxContainerSecurityContext{SupplementalGroups: []int64{-5}}, err: ErrInvalid},
		{name: "unknown policy", sc: &runtimeapi.LinuxContainerSecurityContext{SupplementalGroupsPolicy: 7}, err: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ResolveUser(root, tc.imageUser, tc.sc)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.UID != tc.uid || u.GID != tc.gid || !slices.Equal(u.AdditionalGids, tc.gids) {
				t.Fatalf("got %d:%d %v, want %d:%d %v", u.UID, u.GID, u.AdditionalGids, tc.uid, tc.gid, tc.gids)
			}
		})
	}
}

func TestResolveUserReadsOnlyInsideRootfs(t *testing.T) {
	// An image whose /etc/passwd is a symlink to the host's must be read as
	// the container sees it: the absolute target resolves inside rootfs.
	root := t.TempDir()
	write(t, root, "real/passwd", "app:x:777:778::/:/bin/sh\n")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/real/passwd", filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../etc/passwd", filepath.Join(root, "etc/group")); err != nil {
		t.Fatal(err)
	}
	u, err := ResolveUser(root, "app", nil)
	if err != nil {
		t.Fatal(err)
	}
	if u.UID != 777 || u.GID != 778 {
		t.Fatalf("got %d:%d", u.UID, u.GID)
	}
	// The host's /etc/group has "root"; the escaping symlink must not find it.
	if _, err := ResolveUser(root, "0:root", nil); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("group lookup escaped the rootfs: err = %v", err)
	}
	// The host's /etc/passwd has "root"; a rootfs without one must not.
	if _, err := ResolveUser(t.TempDir(), "root", nil); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("user lookup without /etc/passwd: err = %v", err)
	}
}

func TestResolveUserRefusesNonRegularAccountFile(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A FIFO would block the open forever if it were opened for reading.
	if err := syscall.Mkfifo(filepath.Join(root, "etc/passwd"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ResolveUser(root, "app", nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
}
