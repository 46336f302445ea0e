package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"go.podman.io/image/v5/pkg/compression"
	"go.podman.io/image/v5/types"
	"golang.org/x/sys/unix"
)

// An archive is bounded before the library reads it: a compressed
// docker-archive is inflated here, not by the library (which inflates it
// whole into a temporary file), an oci-archive is unpacked here, and an
// OCI layout directory is copied here. Each counts what it writes (and
// what it decompresses) against max_image_size plus archiveSlack, and
// stops at that bound: a compression bomb costs at most the bound, on
// disk and in CPU. The bound is for the archive as a whole: an archive of
// several images whose sum passes max_image_size must be split.
//
// What the library then reads is only that copy, written by crivet into
// the import's own directory: directories and regular files, no link,
// nothing that blocks when opened.

// archiveSlack is what an archive may hold beyond max_image_size (which
// bounds the layers its manifests declare): manifests and index (up to
// maxManifestSize and maxIndexSize each), image configs, signatures and
// the tar framing (512-byte headers and padding per entry).
const archiveSlack = 16 << 20

// maxLayoutEntries bounds the files and directories of an unpacked or
// copied layout; an image is a few blobs per layer (max_layers defaults to
// 256), so this leaves room for many images but not for an inode bomb.
const maxLayoutEntries = 1 << 16

// maxLayoutDepth bounds the nesting of a layout: blobs/<alg>/<hex> is 3.
const maxLayoutDepth = 8

// archiveOpts is how an archive is bounded and where its reading is told.
type archiveOpts struct {
	// limit is max_image_size, 0 for none.
	limit int64
	log   *slog.Logger
}

func (s *Service) archiveOpts() archiveOpts {
	return archiveOpts{limit: s.cfg.MaxImageSize, log: s.log}
}

// budget is how many bytes an archive may unpack to; MaxInt64 when
// max_image_size is unlimited.
func (o archiveOpts) budget() int64 {
	if o.limit <= 0 {
		return math.MaxInt64
	}
	return o.limit + archiveSlack
}

// tooLarge is the limit error an archive over its budget fails with: the
// pull's, so callers and the CLI see ErrImageLimit either way.
func (o archiveOpts) tooLarge(what string) error {
	return fmt.Errorf("%s unpacks to more than %d bytes (max_image_size plus %d for manifests, configs and tar headers): %w",
		what, o.budget(), archiveSlack, tooLarge(o.limit))
}

// bound reads r up to the budget; reading past it fails with tooLarge.
func (o archiveOpts) bound(r io.Reader, what string) io.Reader {
	return &boundedReader{r: r, left: o.budget(), err: o.tooLarge(what)}
}

// boundedReader returns at most left bytes of r, then err if r has more.
type boundedReader struct {
	r    io.Reader
	left int64
	err  error
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Only a probe of one byte tells a stream that ends exactly at the
		// bound from one that goes on.
		var one [1]byte
		n, err := b.r.Read(one[:])
		if n > 0 {
			return 0, b.err
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// detectionReader is the content of the archive f as format detection
// reads it: decompressed, and bounded when that inflates it or f is not a
// regular file (reading a file as it is costs no more than the file).
func (o archiveOpts) detectionReader(f *os.File) (io.ReadCloser, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	rd, compressed, err := compression.AutoDecompress(f)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadArchive, err)
	}
	if !compressed && fi.Mode().IsRegular() {
		return rd, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{o.bound(rd, "archive"), rd}, nil
}

// dockerArchiveTar is the tar file the library is to read for the
// docker-archive at path, and what to call once it is done with it.
//
// An uncompressed regular file is read in place, nothing is written: the
// library gets /proc/self/fd/N of the file checked here, so that each of
// its reopenings reads that file even if path is replaced meanwhile (by a
// compressed file, or a FIFO that would block it). Anything else is
// inflated into work, at most the budget.
func dockerArchiveTar(path, work string, opts archiveOpts) (string, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return "", nil, err
	}
	// The library's own detection, so that what it takes for
	// uncompressed is what is left to it.
	rd, compressed, err := compression.AutoDecompress(f)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrBadArchive, err)
	}
	defer rd.Close()
	if !compressed && fi.Mode().IsRegular() {
		pinned := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
		if _, err := os.Stat(pinned); err != nil {
			// No /proc: the path, with the window that leaves (the
			// library still cannot inflate it, see openDockerArchive).
			return path, func() {}, nil
		}
		keep = true
		return pinned, func() { f.Close() }, nil
	}
	out := filepath.Join(work, "docker-archive.tar")
	w, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", nil, err
	}
	n, err := io.Copy(w, opts.bound(rd, "docker-archive"))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// Import removes work too; the bound's worth of bytes need not
		// wait for that.
		_ = os.Remove(out)
		if !errors.Is(err, ErrImageLimit) {
			err = fmt.Errorf("%w: decompressing: %w", ErrBadArchive, err)
		}
		opts.log.Warn("import archive refused", "archive", path, "format", FormatDockerArchive, "inflated", n, "error", err)
		return "", nil, err
	}
	opts.log.Info("import archive inflated", "archive", path, "format", FormatDockerArchive, "bytes", n)
	return out, func() {}, nil
}

// noInflation is sys for the library's docker-archive reader, which
// inflates a compressed archive whole into BigFilesTemporaryDir before
// any limit applies: that directory does not exist, so should the file
// it is given be compressed after all (changed after dockerArchiveTar
// looked), the reader fails instead.
func noInflation(sys *types.SystemContext, work string) *types.SystemContext {
	c := *sys
	c.BigFilesTemporaryDir = filepath.Join(work, "no-inflation-by-the-library")
	return &c
}

// unpackOCIArchive unpacks the oci-archive at path (compressed or not)
// into dir, which must not exist, as a layoutCopy.
func unpackOCIArchive(path, dir string, opts archiveOpts) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	rd, _, err := compression.AutoDecompress(f)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadArchive, err)
	}
	defer rd.Close()
	c, err := newLayoutCopy(dir, opts)
	if err != nil {
		return err
	}
	defer c.close()
	// The stream is bounded too: entries whose data is skipped, not
	// written (a directory with a size), still cost decompression.
	tr := tar.NewReader(opts.bound(rd, FormatOCIArchive))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if !errors.Is(err, ErrImageLimit) {
				err = fmt.Errorf("%w: not a tar archive: %w", ErrBadArchive, err)
			}
			return c.refused(path, err)
		}
		if err := c.tarEntry(h, tr); err != nil {
			return c.refused(path, err)
		}
	}
	opts.log.Info("import archive unpacked", "archive", path, "format", FormatOCIArchive, "bytes", c.written, "entries", c.entries)
	return nil
}

// copyLayoutDir copies the OCI layout directory src into dir, which must
// not exist, as a layoutCopy. src is read beneath itself: no symbolic link
// is followed (each step is opened O_NOFOLLOW from its parent's
// descriptor), and only directories and regular files are opened at all.
func copyLayoutDir(src, dir string, opts archiveOpts) error {
	fd, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadArchive, src, err)
	}
	c, err := newLayoutCopy(dir, opts)
	if err != nil {
		unix.Close(fd)
		return err
	}
	defer c.close()
	if err := c.copyDir(os.NewFile(uintptr(fd), src), "", 0); err != nil {
		return c.refused(src, err)
	}
	opts.log.Info("import layout copied", "layout", src, "bytes", c.written, "entries", c.entries)
	return nil
}

// layoutCopy writes an OCI layout beneath its directory: directories and
// regular files (and hard links between those it wrote) only, names that
// stay beneath it, within the budget.
type layoutCopy struct {
	opts    archiveOpts
	root    *os.Root
	written int64
	entries int
	files   map[string]bool
}

func newLayoutCopy(dir string, opts archiveOpts) (*layoutCopy, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &layoutCopy{opts: opts, root: root, files: map[string]bool{}}, nil
}

func (c *layoutCopy) close() { c.root.Close() }

// refused logs why the archive at src was not copied and returns err.
func (c *layoutCopy) refused(src string, err error) error {
	c.opts.log.Warn("import archive refused", "archive", src, "written", c.written, "entries", c.entries, "error", err)
	return err
}

// entryError is an archive entry refused: it names the entry.
func entryError(name, why string) error {
	return fmt.Errorf("%w: entry %q: %s", ErrBadArchive, name, why)
}

// openError is entryError for a failed open, keeping the errno, so that a
// caller can tell a missing entry (os.ErrNotExist) from a refused one.
func openError(name string, err error) error {
	return fmt.Errorf("%w: entry %q: %w", ErrBadArchive, name, err)
}

// cleanEntryName is name as a path beneath the layout, "." for the layout
// itself. Absolute names and names with a ".." step are refused outright,
// not cleaned into something else.
func cleanEntryName(name string) (string, error) {
	if path.IsAbs(name) {
		return "", entryError(name, "absolute path")
	}
	if slices.Contains(strings.Split(name, "/"), "..") {
		return "", entryError(name, `path with a ".." step`)
	}
	clean := path.Clean(name)
	if strings.Count(clean, "/") >= maxLayoutDepth {
		return "", entryError(name, fmt.Sprintf("nested deeper than %d", maxLayoutDepth))
	}
	return clean, nil
}

func (c *layoutCopy) count(name string) error {
	c.entries++
	if c.entries > maxLayoutEntries {
		return entryError(name, fmt.Sprintf("more than %d entries", maxLayoutEntries))
	}
	return nil
}

func (c *layoutCopy) tarEntry(h *tar.Header, r io.Reader) error {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil // pax defaults for the entries that follow, not a file
	}
	name, err := cleanEntryName(h.Name)
	if err != nil {
		return err
	}
	if err := c.count(h.Name); err != nil {
		return err
	}
	switch h.Typeflag {
	case tar.TypeDir:
		return c.mkdir(name)
	case tar.TypeReg:
		return c.file(name, h.Name, r, h.Size)
	case tar.TypeLink:
		target, err := cleanEntryName(h.Linkname)
		if err != nil || !c.files[target] {
			return entryError(h.Name, fmt.Sprintf("hard link to %q, not a file written before it", h.Linkname))
		}
		if err := c.parent(name); err != nil {
			return entryError(h.Name, err.Error())
		}
		if err := c.root.Link(target, name); err != nil {
			return entryError(h.Name, err.Error())
		}
		c.files[name] = true
		return nil
	case tar.TypeSymlink:
		return c.symlink(name, h.Name, h.Linkname)
	}
	return entryError(h.Name, fmt.Sprintf("%s: an image layout holds only files and directories", tarTypeName(h.Typeflag)))
}

// symlink decides on a symbolic link at name to target: it is never
// created nor followed. One where the layout keeps what is read of it
// (oci-layout, index.json, blobs/), or one leading outside the layout, is
// refused; any other is left out, as the legacy directories of a `docker
// save` that also writes a layout (Docker 25+) may hold links to blobs.
func (c *layoutCopy) symlink(name, entry, target string) error {
	resolved := path.Join(path.Dir(name), target)
	switch {
	case layoutPath(name):
		return entryError(entry, fmt.Sprintf("symbolic link to %q: an image layout holds only files and directories, and is read without following links", target))
	case path.IsAbs(target) || resolved == ".." || strings.HasPrefix(resolved, "../"):
		return entryError(entry, fmt.Sprintf("symbolic link to %q, outside the layout", target))
	}
	c.opts.log.Debug("import layout: link left out", "entry", entry, "target", target)
	return nil
}

// layoutPath reports whether name is where an OCI layout keeps what is
// read of it.
func layoutPath(name string) bool {
	return name == "oci-layout" || name == "index.json" || name == "blobs" || strings.HasPrefix(name, "blobs/")
}

func tarTypeName(t byte) string {
	switch t {
	case tar.TypeFifo:
		return "named pipe (FIFO)"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeGNUSparse:
		return "sparse file"
	}
	return fmt.Sprintf("tar entry type %q", t)
}

func (c *layoutCopy) mkdir(name string) error {
	if name == "." {
		return nil
	}
	if err := c.root.MkdirAll(name, 0o700); err != nil {
		return entryError(name, err.Error())
	}
	return nil
}

func (c *layoutCopy) parent(name string) error {
	if dir := path.Dir(name); dir != "." {
		return c.root.MkdirAll(dir, 0o700)
	}
	return nil
}

// file writes name from r, which holds size bytes (a tar entry's, or the
// size a file had when opened: r may hold more, which is counted too).
func (c *layoutCopy) file(name, entry string, r io.Reader, size int64) error {
	left := c.opts.budget() - c.written
	if size > left {
		return c.opts.tooLarge(fmt.Sprintf("layout (at %q)", entry))
	}
	if name == "." {
		return entryError(entry, "a file named as the layout itself")
	}
	if err := c.parent(name); err != nil {
		return entryError(entry, err.Error())
	}
	f, err := c.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return entryError(entry, err.Error())
	}
	// Counted as read, not as declared: a sparse entry reads back its
	// holes as zeros, a file being appended to grows. This file may take
	// only what the entries before it left of the budget.
	n, err := io.Copy(f, &boundedReader{r: r, left: left, err: c.opts.tooLarge(fmt.Sprintf("layout (at %q)", entry))})
	c.written += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if errors.Is(err, ErrImageLimit) {
			return err
		}
		return entryError(entry, err.Error())
	}
	c.files[name] = true
	return nil
}

// copyDir copies the directory d (rel beneath the source layout) and
// closes it.
func (c *layoutCopy) copyDir(d *os.File, rel string, depth int) error {
	defer d.Close()
	if depth >= maxLayoutDepth {
		return entryError(rel, fmt.Sprintf("nested deeper than %d", maxLayoutDepth))
	}
	ents, err := d.ReadDir(-1)
	if err != nil {
		return entryError(rel, err.Error())
	}
	slices.SortFunc(ents, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	dirfd := int(d.Fd())
	for _, ent := range ents {
		name := path.Join(rel, ent.Name())
		if err := c.count(name); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, ent.Name(), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return entryError(name, err.Error())
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			fd, err := unix.Openat(dirfd, ent.Name(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return entryError(name, err.Error())
			}
			if err := c.mkdir(name); err != nil {
				unix.Close(fd)
				return err
			}
			if err := c.copyDir(os.NewFile(uintptr(fd), name), name, depth+1); err != nil {
				return err
			}
		case unix.S_IFREG:
			f, err := openRegularAt(dirfd, ent.Name(), name)
			if err != nil {
				return err
			}
			fi, err := f.Stat()
			if err == nil {
				err = c.file(name, name, f, fi.Size())
			}
			f.Close()
			if err != nil {
				return err
			}
		case unix.S_IFLNK:
			var buf [unix.PathMax]byte
			n, err := unix.Readlinkat(dirfd, ent.Name(), buf[:])
			if err != nil {
				return entryError(name, err.Error())
			}
			if err := c.symlink(name, name, string(buf[:n])); err != nil {
				return err
			}
		default:
			return entryError(name, fmt.Sprintf("%s: an image layout holds only files and directories", fileTypeName(st.Mode)))
		}
	}
	return nil
}

func fileTypeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "named pipe (FIFO)"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("file of type %#o", mode&unix.S_IFMT)
}

// openRegularAt opens name in dirfd if it is a regular file, without
// following a link and without blocking (a FIFO swapped in after a stat
// would otherwise wait for a writer); entry names it in errors.
func openRegularAt(dirfd int, name, entry string) (*os.File, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openError(entry, err)
	}
	return regularFile(fd, entry)
}

// regularFile is fd as an *os.File if it is a regular file, in blocking
// mode again; else fd is closed and the error names entry.
func regularFile(fd int, entry string) (*os.File, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, entryError(entry, err.Error())
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, entryError(entry, fmt.Sprintf("%s, not a regular file", fileTypeName(st.Mode)))
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, entryError(entry, err.Error())
	}
	return os.NewFile(uintptr(fd), entry), nil
}

// openBeneath opens the regular file rel beneath dir without following
// any symbolic link (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS; on a
// kernel without openat2, one O_NOFOLLOW step at a time).
func openBeneath(dir, rel string) (*os.File, error) {
	rel, err := cleanEntryName(rel)
	if err != nil {
		return nil, err
	}
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat2(dfd, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		// No openat2 (before Linux 5.6), or a seccomp filter refusing it.
		return openStepwise(dfd, rel)
	}
	if err != nil {
		return nil, openError(rel, err)
	}
	return regularFile(fd, rel)
}

// openStepwise is openBeneath one path step at a time: rel is clean and
// has no ".." step, and no step is a link.
func openStepwise(dfd int, rel string) (*os.File, error) {
	steps := strings.Split(rel, "/")
	cur := dfd
	for i, step := range steps[:len(steps)-1] {
		fd, err := unix.Openat(cur, step, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if cur != dfd {
			unix.Close(cur)
		}
		if err != nil {
			return nil, openError(path.Join(steps[:i+1]...), err)
		}
		cur = fd
	}
	if cur != dfd {
		defer unix.Close(cur)
	}
	return openRegularAt(cur, steps[len(steps)-1], rel)
}

// readBeneath reads the file rel beneath dir, as openBeneath opens it, up
// to limit bytes.
func readBeneath(dir, rel string, limit int64) ([]byte, error) {
	f, err := openBeneath(dir, rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", rel, limit)
	}
	return data, nil
}
