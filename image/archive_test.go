package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crivet/crivet/test/fixtures"
	"golang.org/x/sys/unix"
)

// tarEntry is one entry for writeTar: body is read for a regular file.
type tarEntry struct {
	h    *tar.Header
	body io.Reader
}

// readTar is every entry of the tar at path, bodies in memory.
func readTar(t *testing.T, path string) []tarEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []tarEntry
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{h, bytes.NewReader(data)})
	}
}

// writeTar writes entries to path as a tar, gzip-compressed when gz.
func writeTar(t *testing.T, path string, gz bool, entries []tarEntry) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var w io.Writer = f
	var zw *gzip.Writer
	if gz {
		zw, _ = gzip.NewWriterLevel(f, gzip.BestCompression)
		w = zw
	}
	tw := tar.NewWriter(w)
	for _, e := range entries {
		if err := tw.WriteHeader(e.h); err != nil {
			t.Fatal(err)
		}
		if e.h.Typeflag == tar.TypeReg {
			if _, err := io.CopyN(tw, e.body, e.h.Size); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// zeroEntry is a regular file of size zero bytes: what a bomb is made of.
func zeroEntry(name string, size int64) tarEntry {
	return tarEntry{&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644}, zeros{}}
}

// importNoHang imports and fails the test if the import has not returned
// after a long while: a safety net for a regression that blocks (on a
// FIFO, say), not a measure of anything.
func importNoHang(t *testing.T, e *env, path, format string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := e.importFile(path, format, "")
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(3 * time.Minute):
		t.Fatalf("import of %s did not return", path)
		return nil
	}
}

func tmpEntries(t *testing.T, e *env) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.root, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range ents {
		names = append(names, d.Name())
	}
	return names
}

// A gzip docker-archive that inflates far past max_image_size is refused
// with the pull's limit error, having written at most the limit plus the
// stated slack, and leaves nothing: no image, nothing under tmp/. The
// same archive without the padding, compressed, still imports.
func TestImportCompressedDockerArchiveBombRefused(t *testing.T) {
	e := newEnv(t)
	src := fixtures.PushImage(t, e.ref("app/bomb:1"), 1024)
	plain := filepath.Join(e.dir, "plain.tar")
	fixtures.SaveDockerArchive(t, src.Ref, plain, "example.com/bomb:1")
	entries := readTar(t, plain)
	bomb := filepath.Join(e.dir, "bomb.tar.gz")
	// The padding first, as a layer would come before manifest.json in
	// `docker save` output: detection has to read through it.
	const inflated = 64 << 20
	writeTar(t, bomb, true, append([]tarEntry{zeroEntry("padding", inflated)}, readTar(t, plain)...))
	if fi, err := os.Stat(bomb); err != nil || fi.Size() > 1<<20 {
		t.Fatalf("bomb archive: %v %v", fi.Size(), err)
	}
	small := filepath.Join(e.dir, "small.tar.gz")
	writeTar(t, small, true, entries)
	e.reg.Stop()

	e.svc.cfg.MaxImageSize = 1 << 20
	budget := e.svc.archiveOpts().budget()
	if budget >= inflated {
		t.Fatalf("budget %d does not make %d a bomb", budget, inflated)
	}
	before := storeState(t, e)
	for _, format := range []string{"", FormatDockerArchive} {
		err := importNoHang(t, e, bomb, format)
		if !errors.Is(err, ErrImageLimit) || !strings.Contains(err.Error(), "image exceeds max_image_size (1048576 bytes)") {
			t.Fatalf("format %q: gzip bomb: %v", format, err)
		}
		if after := storeState(t, e); after != before {
			t.Fatalf("format %q: refused bomb changed the store:\n%s\n---\n%s", format, before, after)
		}
		if left := tmpEntries(t, e); len(left) != 0 {
			t.Fatalf("format %q: left under tmp/: %v", format, left)
		}
	}
	// With the format given, detection does not stop it: the inflation
	// into the import's directory does, at the budget.
	refused := e.decisions.find("import archive refused")
	if len(refused) != 1 {
		t.Fatalf("refusals logged: %v", refused)
	}
	if n, err := strconv.ParseInt(refused[0]["inflated"], 10, 64); err != nil || n > budget {
		t.Fatalf("inflated %s bytes before the refusal, budget %d", refused[0]["inflated"], budget)
	}

	imgs, err := e.importFile(small, "", "")
	if err != nil || len(imgs) != 1 || imgs[0].ID != src.ConfigDigest {
		t.Fatalf("compressed archive within the limit: %v %v", imgs, err)
	}
	if left := tmpEntries(t, e); len(left) != 0 {
		t.Fatalf("left under tmp/ after an import: %v", left)
	}
}

// An oci-archive is unpacked by crivet, bounded, keeping only directories
// and regular files beneath the layout: a FIFO, a device, a symbolic link
// (to /etc/passwd), a hard link outside, a "../" or absolute name are
// each refused, naming the entry, without hanging, and leave nothing.
// The archive they were planted in still imports as it was.
func TestImportOCIArchiveHostileEntriesRefused(t *testing.T) {
	e := newEnv(t)
	src := fixtures.PushImage(t, e.ref("app/hostile:1"), 1024, fixtures.WithOCI())
	good := filepath.Join(e.dir, "good.tar")
	fixtures.SaveOCIArchive(t, src.Ref, good, "example.com/hostile:1", false)
	e.reg.Stop()
	configBlob := "blobs/sha256/" + strings.TrimPrefix(src.ConfigDigest, "sha256:")

	// replace gives the archive's entries with the one named name
	// replaced by h (nil: h is added at the end).
	replace := func(name string, h *tar.Header) []tarEntry {
		var out []tarEntry
		found := false
		for _, ent := range readTar(t, good) {
			if filepath.Clean(ent.h.Name) == name {
				h.Name, found = ent.h.Name, true
				ent = tarEntry{h, nil}
			}
			out = append(out, ent)
		}
		if !found {
			out = append(out, tarEntry{h, strings.NewReader("escaped\n")})
		}
		return out
	}
	outside := filepath.Join(e.root, "escaped")
	cases := []struct {
		name    string
		entries []tarEntry
		gz      bool
		want    []string
		is      error
	}{
		{"fifo", replace(configBlob, &tar.Header{Typeflag: tar.TypeFifo, Mode: 0o644}), false,
			[]string{configBlob, "named pipe (FIFO)"}, ErrBadArchive},
		{"char device", replace(configBlob, &tar.Header{Typeflag: tar.TypeChar, Mode: 0o644, Devmajor: 1, Devminor: 5}), false,
			[]string{configBlob, "character device"}, ErrBadArchive},
		{"absolute symlink", replace("index.json", &tar.Header{Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd", Mode: 0o777}), false,
			[]string{`"index.json"`, `symbolic link to "/etc/passwd"`}, ErrBadArchive},
		{"escaping relative symlink", replace("none", &tar.Header{Typeflag: tar.TypeSymlink, Name: "legacy/passwd", Linkname: "../../etc/passwd", Mode: 0o777}), false,
			[]string{`"legacy/passwd"`, `symbolic link to "../../etc/passwd", outside the layout`}, ErrBadArchive},
		{"absolute symlink outside blobs", replace("none", &tar.Header{Typeflag: tar.TypeSymlink, Name: "legacy/passwd", Linkname: "/etc/passwd", Mode: 0o777}), false,
			[]string{`"legacy/passwd"`, `symbolic link to "/etc/passwd", outside the layout`}, ErrBadArchive},
		{"hard link outside", replace(configBlob, &tar.Header{Typeflag: tar.TypeLink, Linkname: "/etc/passwd", Mode: 0o644}), false,
			[]string{configBlob, `hard link to "/etc/passwd"`}, ErrBadArchive},
		{"dot-dot name", replace("none", &tar.Header{Typeflag: tar.TypeReg, Name: "../../escaped", Size: 8, Mode: 0o644}), false,
			[]string{`"../../escaped"`, `".." step`}, ErrBadArchive},
		{"absolute name", replace("none", &tar.Header{Typeflag: tar.TypeReg, Name: outside, Size: 8, Mode: 0o644}), false,
			[]string{strconv.Quote(outside), "absolute path"}, ErrBadArchive},
		// Detection would refuse it already (tested with docker-archive):
		// the format given, the unpacking must.
		{"gzip bomb", append(readTar(t, good), zeroEntry("blobs/sha256/padding", 64<<20)), true,
			[]string{"image exceeds max_image_size (1048576 bytes)"}, ErrImageLimit},
	}
	format := map[string]string{"gzip bomb": FormatOCIArchive}
	e.svc.cfg.MaxImageSize = 1 << 20
	before := storeState(t, e)
	for _, c := range cases {
		p := filepath.Join(e.dir, strings.ReplaceAll(c.name, " ", "-")+".tar")
		writeTar(t, p, c.gz, c.entries)
		err := importNoHang(t, e, p, format[c.name])
		if !errors.Is(err, c.is) {
			t.Errorf("%s: want %v, got %v", c.name, c.is, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error does not say %s: %v", c.name, w, err)
			}
		}
	}
	if after := storeState(t, e); after != before {
		t.Fatalf("refused archives changed the store:\n%s\n---\n%s", before, after)
	}
	budget := e.svc.archiveOpts().budget()
	bombs := 0
	for _, r := range e.decisions.find("import archive refused") {
		if n, err := strconv.ParseInt(r["written"], 10, 64); err != nil || n > budget {
			t.Errorf("wrote %s bytes before the refusal, budget %d", r["written"], budget)
		}
		if strings.Contains(r["error"], "max_image_size") {
			bombs++
		}
	}
	if bombs != 1 {
		t.Errorf("the bomb was not refused by the unpacking (%d refusals for size logged)", bombs)
	}
	for _, p := range []string{outside, filepath.Join(e.root, "tmp", "escaped"), filepath.Join(e.dir, "escaped")} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s written: %v", p, err)
		}
	}

	// The archive itself, and rewritten entry for entry (what the cases
	// above were made from), imports; so does one with a link elsewhere
	// than where the layout keeps its files, to one of its blobs (as in
	// the legacy directories of Docker 25's `docker save`): left out.
	same := filepath.Join(e.dir, "same.tar.gz")
	writeTar(t, same, true, readTar(t, good))
	legacy := filepath.Join(e.dir, "legacy.tar")
	writeTar(t, legacy, false, append(readTar(t, good),
		tarEntry{&tar.Header{Typeflag: tar.TypeDir, Name: "legacy/", Mode: 0o755}, nil},
		tarEntry{&tar.Header{Typeflag: tar.TypeSymlink, Name: "legacy/config.json", Linkname: "../" + configBlob, Mode: 0o777}, nil}))
	for _, p := range []string{good, same, legacy} {
		imgs, err := e.importFile(p, "", "")
		if err != nil || len(imgs) != 1 || imgs[0].ID != src.ConfigDigest {
			t.Fatalf("%s: %v %v", p, imgs, err)
		}
	}
}

// An OCI layout directory given as is (transport "oci") is read beneath
// itself without following links: a link or FIFO in it is refused, naming
// it, without hanging; the layout without them imports.
func TestImportOCILayoutDirectoryReadWithoutLinks(t *testing.T) {
	e := newEnv(t)
	src := fixtures.PushImage(t, e.ref("app/dir:1"), 1024, fixtures.WithOCI())
	archive := filepath.Join(e.dir, "dir.tar")
	fixtures.SaveOCIArchive(t, src.Ref, archive, "example.com/dir:1", false)
	e.reg.Stop()
	configBlob := "blobs/sha256/" + strings.TrimPrefix(src.ConfigDigest, "sha256:")
	// layout unpacks the archive into a new directory and lets plant
	// change it.
	n := 0
	layout := func(plant func(dir string) error) string {
		n++
		dir := filepath.Join(e.dir, "layout"+strconv.Itoa(n))
		for _, ent := range readTar(t, archive) {
			p := filepath.Join(dir, ent.h.Name)
			if ent.h.Typeflag == tar.TypeDir {
				if err := os.MkdirAll(p, 0o755); err != nil {
					t.Fatal(err)
				}
				continue
			}
			data, _ := io.ReadAll(ent.body)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if plant != nil {
			if err := plant(dir); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	swap := func(name string, make func(p string) error) func(string) error {
		return func(dir string) error {
			p := filepath.Join(dir, name)
			if err := os.Remove(p); err != nil {
				return err
			}
			return make(p)
		}
	}
	passwd := swap("index.json", func(p string) error { return os.Symlink("/etc/passwd", p) })
	fifo := swap(configBlob, func(p string) error { return unix.Mkfifo(p, 0o644) })
	// A link that stays inside the layout is refused too: nothing in a
	// layout is read through a link.
	inside := swap(configBlob, func(p string) error { return os.Symlink("../../oci-layout", p) })
	blobsDir := func(dir string) error {
		other := layout(nil)
		if err := os.RemoveAll(filepath.Join(dir, "blobs")); err != nil {
			return err
		}
		return os.Symlink(filepath.Join(other, "blobs"), filepath.Join(dir, "blobs"))
	}
	legacyLink := func(target string) func(string) error {
		return func(dir string) error {
			if err := os.Mkdir(filepath.Join(dir, "legacy"), 0o755); err != nil {
				return err
			}
			return os.Symlink(target, filepath.Join(dir, "legacy", "link"))
		}
	}
	before := storeState(t, e)
	for _, c := range []struct {
		name  string
		plant func(string) error
		want  []string
	}{
		{"legacy link outside", legacyLink("../../../etc/passwd"), []string{`"legacy/link"`, "outside the layout"}},
		{"index.json to /etc/passwd", passwd, []string{`"index.json"`, `symbolic link to "/etc/passwd"`}},
		{"fifo blob", fifo, []string{configBlob, "named pipe (FIFO)"}},
		{"link inside", inside, []string{configBlob, "symbolic link"}},
		{"blobs directory a link", blobsDir, []string{`"blobs"`, "symbolic link"}},
	} {
		err := importNoHang(t, e, layout(c.plant), FormatOCILayout)
		if !errors.Is(err, ErrBadArchive) {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error does not say %s: %v", c.name, w, err)
			}
		}
	}
	if after := storeState(t, e); after != before {
		t.Fatalf("refused layouts changed the store:\n%s\n---\n%s", before, after)
	}
	imgs, err := e.importFile(layout(nil), "", "")
	if err != nil || len(imgs) != 1 || imgs[0].ID != src.ConfigDigest {
		t.Fatalf("plain layout: %v %v", imgs, err)
	}
	// A link to a blob outside where the layout keeps its files is left
	// out, not followed.
	imgs, err = e.importFile(layout(legacyLink("../"+configBlob)), "", "")
	if err != nil || len(imgs) != 1 || imgs[0].ID != src.ConfigDigest {
		t.Fatalf("layout with a legacy link: %v %v", imgs, err)
	}
}

// openBeneath, with openat2 and stepwise alike, opens regular files
// beneath its directory and nothing through a link, nor a FIFO.
func TestOpenBeneathFollowsNoLink(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a", "b"), "content")
	if err := os.Symlink("b", filepath.Join(dir, "a", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(dir, "dirlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "passwd")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	stepwise := func(dir, rel string) (*os.File, error) {
		dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		defer unix.Close(dfd)
		return openStepwise(dfd, rel)
	}
	for name, open := range map[string]func(string, string) (*os.File, error){"openat2": openBeneath, "stepwise": stepwise} {
		f, err := open(dir, "a/b")
		if err != nil {
			t.Fatalf("%s: a/b: %v", name, err)
		}
		data, _ := io.ReadAll(f)
		f.Close()
		if string(data) != "content" {
			t.Fatalf("%s: a/b read %q", name, data)
		}
		for _, rel := range []string{"a/link", "dirlink/b", "passwd", "fifo", "a", "../" + filepath.Base(dir) + "/a/b"} {
			if name == "stepwise" && strings.HasPrefix(rel, "..") {
				continue // openBeneath refuses it before either
			}
			if f, err := open(dir, rel); err == nil {
				f.Close()
				t.Errorf("%s: %s opened", name, rel)
			}
		}
	}
}

// An export is created 0666 less the umask: a private umask keeps the
// archive private, the usual one makes it readable, as for any file a
// command writes.
func TestExportHonoursUmask(t *testing.T) {
	e := newEnv(t)
	src := fixtures.PushImage(t, e.ref("app/private:1"), 1024)
	e.mustPull(src.Ref, "")
	for i, umask := range []int{0o077, 0o022, 0o027} {
		path := filepath.Join(e.dir, "export"+strconv.Itoa(i)+".tar")
		old := syscall.Umask(umask)
		_, err := e.svc.Export(t.Context(), ExportRequest{Image: src.Ref, Path: path})
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if want := os.FileMode(0o666 &^ umask); fi.Mode().Perm() != want {
			t.Errorf("umask %#o: export mode %v, want %v", umask, fi.Mode().Perm(), want)
		}
	}
}

// A docker-archive read in place is read through the file that was
// checked: replacing its path afterwards (by a FIFO here) changes nothing
// for the library. And the library is never left to inflate one itself:
// given a compressed archive regardless, it fails without writing.
func TestDockerArchiveReadInPlaceIsPinned(t *testing.T) {
	e := newEnv(t)
	src := fixtures.PushImage(t, e.ref("app/pinned:1"), 1024)
	archive := filepath.Join(e.dir, "pinned.tar")
	fixtures.SaveDockerArchive(t, src.Ref, archive, "example.com/pinned:1")
	compressed := filepath.Join(e.dir, "pinned.tar.gz")
	writeTar(t, compressed, true, readTar(t, archive))
	e.reg.Stop()
	sys := e.svc.systemContext()
	opts := e.svc.archiveOpts()

	work := t.TempDir()
	tarPath, release, err := dockerArchiveTar(archive, work, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if tarPath == archive || !strings.HasPrefix(tarPath, "/proc/self/fd/") {
		t.Fatalf("read in place from %s, not the checked file", tarPath)
	}
	if err := os.Remove(archive); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(archive, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		a, err := openDockerArchive(noInflation(sys, work), archive, tarPath, "")
		if err != nil {
			done <- err
			return
		}
		defer a.close()
		is, err := a.entries[0].src.NewImageSource(t.Context(), sys)
		if err != nil {
			done <- err
			return
		}
		defer is.Close()
		_, _, err = is.GetManifest(t.Context(), nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("reading the pinned archive: %v", err)
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("reading the pinned archive did not return") // safety net
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Fatalf("reading in place wrote %v", ents)
	}

	if _, err := openDockerArchive(noInflation(sys, work), compressed, compressed, ""); err == nil {
		t.Fatal("the library was let inflate a compressed archive")
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Fatalf("a refused inflation wrote %v", ents)
	}
}
