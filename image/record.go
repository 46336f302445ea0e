package image

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/crivet/crivet/image/record"
	"github.com/opencontainers/go-digest"
	"go.podman.io/storage"
)

// recordKey is the big-data item of a storage image that holds its Record.
// Keeping the record inside the image makes it vanish atomically with it.
const recordKey = "crivet-record"

// The record's types live in image/record, which the trust decisions
// (image/trust) read too; these names keep the package's API.
type (
	Record       = record.Record
	Reference    = record.Reference
	ImportSource = record.ImportSource
	Decision     = record.Decision
	Image        = record.Image
)

// cachedRecord is a record with the digest of the item it was read from.
type cachedRecord struct {
	digest digest.Digest
	rec    *Record
}

// record returns the image's record (a copy), reading it from disk only
// when its item changed: another process (crivet image import) may write
// records into the store this daemon serves.
func (s *Service) record(id string) (*Record, error) {
	img, err := s.store.Image(id)
	if err != nil {
		if errors.Is(err, storage.ErrImageUnknown) || errors.Is(err, storage.ErrNotAnImage) {
			return nil, fmt.Errorf("image %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("image %s: %w", id, err)
	}
	return s.recordOf(img)
}

// recordOf is record for an image already looked up. An image without a
// record item (stored by another tool) gets an empty record.
func (s *Service) recordOf(img *storage.Image) (*Record, error) {
	id, d := img.ID, img.BigDataDigests[recordKey]
	s.recMu.Lock()
	c, ok := s.records[id]
	s.recMu.Unlock()
	if ok && c.digest == d {
		return c.rec.Clone(), nil
	}
	r := &Record{}
	if d != "" {
		data, err := s.store.ImageBigData(id, recordKey)
		switch {
		case err == nil:
			if err := json.Unmarshal(data, r); err != nil {
				return nil, fmt.Errorf("image %s: corrupt record: %w", id, err)
			}
			r.Migrate()
			// The item read may be newer than img; its own digest keys it.
			d = digest.FromBytes(data)
		case errors.Is(err, storage.ErrImageUnknown):
			return nil, fmt.Errorf("image %s: %w", id, ErrNotFound)
		default:
			return nil, fmt.Errorf("image %s: read record: %w", id, err)
		}
	}
	s.recMu.Lock()
	s.records[id] = cachedRecord{digest: d, rec: r}
	s.recMu.Unlock()
	return r.Clone(), nil
}

// saveRecord writes the record into the image (storage writes big data
// atomically) and then the cache. Callers hold the image's lock.
func (s *Service) saveRecord(id string, r *Record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := s.store.SetImageBigData(id, recordKey, data, nil); err != nil {
		return fmt.Errorf("image %s: save record: %w", id, err)
	}
	s.recMu.Lock()
	s.records[id] = cachedRecord{digest: digest.FromBytes(data), rec: r.Clone()}
	s.recMu.Unlock()
	return nil
}

func (s *Service) forgetRecord(id string) {
	s.recMu.Lock()
	delete(s.records, id)
	s.recMu.Unlock()
}
