package spec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"slices"
	"strconv"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ResolveUser computes the identity of a container's first process from
// the security context, the image's User ("user[:group]", names or IDs) and
// the image's /etc/passwd and /etc/group, read inside rootfs.
//
// Rules (CRI api.proto and Kubernetes):
//   - run_as_username, else run_as_user, else the image user, else root.
//     run_as_user replaces the whole image user, group included.
//   - run_as_group sets the primary group; it is an error without a user
//     (CRI: "the runtime MUST error").
//   - Without an explicit group the primary GID comes from /etc/passwd, or 0
//     for a numeric UID that has no entry.
//   - A name that is not in the image's files is an error; a number needs
//     no entry.
//   - AdditionalGids = primary GID, then with the Merge policy (default)
//     the /etc/group groups that list the user, then supplemental_groups.
//     The primary GID is listed so that the process never keeps groups of
//     its parent (containerd does the same since CVE-2023-25173).
func ResolveUser(rootfs, imageUser string, sc *runtimeapi.LinuxContainerSecurityContext) (specs.User, error) {
	var u specs.User
	policy := sc.GetSupplementalGroupsPolicy()
	if policy != runtimeapi.SupplementalGroupsPolicy_Merge && policy != runtimeapi.SupplementalGroupsPolicy_Strict {
		return u, fmt.Errorf("%w: supplemental_groups_policy %d", ErrInvalid, policy)
	}

	var userPart, groupPart string
	switch {
	case sc.GetRunAsUsername() != "":
		userPart = sc.GetRunAsUsername()
	case sc.GetRunAsUser() != nil:
		userPart = strconv.FormatInt(sc.GetRunAsUser().GetValue(), 10)
		if sc.GetRunAsUser().GetValue() < 0 {
			return u, fmt.Errorf("%w: run_as_user %d", ErrInvalid, sc.GetRunAsUser().GetValue())
		}
	default:
		if sc.GetRunAsGroup() != nil {
			return u, fmt.Errorf("%w: run_as_group is set without run_as_user or run_as_username", ErrInvalid)
		}
		userPart, groupPart, _ = strings.Cut(imageUser, ":")
	}
	if g := sc.GetRunAsGroup(); g != nil {
		if g.GetValue() < 0 {
			return u, fmt.Errorf("%w: run_as_group %d", ErrInvalid, g.GetValue())
		}
		groupPart = strconv.FormatInt(g.GetValue(), 10)
	}

	var username string
	if userPart == "" {
		userPart = "0"
	}
	if uid, ok := parseID(userPart); ok {
		u.UID = uid
		entries, err := readPasswd(rootfs, func(e user.User) bool { return e.Uid == int(uid) })
		if err != nil {
			return u, err
		}
		if len(entries) > 0 {
			username = entries[0].Name
			u.GID = uint32(entries[0].Gid)
		}
	} else {
		entries, err := readPasswd(rootfs, func(e user.User) bool { return e.Name == userPart })
		if err != nil {
			return u, err
		}
		if len(entries) == 0 {
			return u, fmt.Errorf("%w: user %q", ErrUserNotFound, userPart)
		}
		uid, ok := idFromInt(entries[0].Uid)
		gid, ok2 := idFromInt(entries[0].Gid)
		if !ok || !ok2 {
			return u, fmt.Errorf("%w: /etc/passwd entry for %q has an invalid uid or gid", ErrInvalid, userPart)
		}
		username, u.UID, u.GID = userPart, uid, gid
	}

	if groupPart != "" {
		if gid, ok := parseID(groupPart); ok {
			u.GID = gid
		} else {
			groups, err := readGroup(rootfs, func(g user.Group) bool { return g.Name == groupPart })
			if err != nil {
				return u, err
			}
			if len(groups) == 0 {
				return u, fmt.Errorf("%w: group %q", ErrUserNotFound, groupPart)
			}
			gid, ok := idFromInt(groups[0].Gid)
			if !ok {
				return u, fmt.Errorf("%w: /etc/group entry for %q has an invalid gid", ErrInvalid, groupPart)
			}
			u.GID = gid
		}
	}

	gids := []uint32{u.GID}
	if policy == runtimeapi.SupplementalGroupsPolicy_Merge && username != "" {
		groups, err := readGroup(rootfs, func(g user.Group) bool { return slices.Contains(g.List, username) })
		if err != nil {
			return u, err
		}
		for _, g := range groups {
			if gid, ok := idFromInt(g.Gid); ok {
				gids = append(gids, gid)
			}
		}
	}
	for _, g := range sc.GetSupplementalGroups() {
		gid, ok := idFromInt64(g)
		if !ok {
			return u, fmt.Errorf("%w: supplemental group %d", ErrInvalid, g)
		}
		gids = append(gids, gid)
	}
	u.AdditionalGids = dedup(gids)
	return u, nil
}

func dedup(ids []uint32) []uint32 {
	out := ids[:0:0]
	for _, id := range ids {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// parseID accepts a decimal ID in the range the kernel takes; 2^32-1 is
// (uid_t)-1, "no change", and never a real ID.
func parseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == math.MaxUint32 {
		return 0, false
	}
	return uint32(n), true
}

func idFromInt(n int) (uint32, bool) { return idFromInt64(int64(n)) }

func idFromInt64(n int64) (uint32, bool) {
	if n < 0 || n >= math.MaxUint32 {
		return 0, false
	}
	return uint32(n), true
}

func readPasswd(rootfs string, filter func(user.User) bool) ([]user.User, error) {
	var out []user.User
	err := withImageFile(rootfs, "/etc/passwd", func(r io.Reader) (err error) {
		out, err = user.ParsePasswdFilter(r, filter)
		return err
	})
	return out, err
}

func readGroup(rootfs string, filter func(user.Group) bool) ([]user.Group, error) {
	var out []user.Group
	err := withImageFile(rootfs, "/etc/group", func(r io.Reader) (err error) {
		out, err = user.ParseGroupFilter(r, filter)
		return err
	})
	return out, err
}

// maxAccountFile bounds what is read of /etc/passwd or /etc/group; the
// image is untrusted and these files are read into memory line by line.
const maxAccountFile = 16 << 20

// withImageFile opens name inside rootfs the way the container would see
// it: symlinks, absolute ones included, resolve within rootfs and can never
// reach the host's files. Only regular files are read (a FIFO planted in an
// image would block the open forever). A missing file is not an error; fn
// then sees nothing.
func withImageFile(rootfs, name string, fn func(io.Reader) error) error {
	h, err := pathrs.OpenInRoot(rootfs, name)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return fn(strings.NewReader(""))
	}
	if err != nil {
		return fmt.Errorf("open %s in image: %w", name, err)
	}
	defer h.Close()
	st, err := h.Stat()
	if err != nil {
		return fmt.Errorf("stat %s in image: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%w: %s in image is not a regular file", ErrInvalid, name)
	}
	f, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open %s in image: %w", name, err)
	}
	defer f.Close()
	return fn(io.LimitReader(f, maxAccountFile))
}
