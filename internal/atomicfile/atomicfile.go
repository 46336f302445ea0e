// Package atomicfile replaces files so that a reader, or a crash of the
// writer, sees the old content or the new, never a torn file.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data (mode perm) through a temporary file in
// the same directory and a rename. durable adds the fsyncs that only
// matter if the machine itself goes down: records that must survive a
// power loss want them; files on a tmpfs or rewritten on a hot path do not.
func Write(path string, data []byte, perm os.FileMode, durable bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if durable {
		d, err := os.Open(dir)
		if err != nil {
			return fmt.Errorf("write %s: sync dir: %w", path, err)
		}
		defer d.Close()
		if err := d.Sync(); err != nil {
			return fmt.Errorf("write %s: sync dir: %w", path, err)
		}
	}
	return nil
}
