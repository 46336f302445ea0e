package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/crivet/crivet/internal/errclass"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/storage"
)

func (s *Service) view(img *storage.Image, rec *Record) (*Image, error) {
	size, err := s.store.ImageSize(img.ID)
	if err != nil {
		if errors.Is(err, storage.ErrImageUnknown) {
			return nil, fmt.Errorf("image %s: %w", img.ID, ErrNotFound)
		}
		return nil, fmt.Errorf("image %s: size: %w", img.ID, err)
	}
	v := &Image{ID: "sha256:" + img.ID, Size: uint64(size), User: rec.User, Record: rec}
	repos := map[string]bool{}
	for _, n := range img.Names {
		named, err := reference.ParseNormalizedNamed(n)
		if err != nil {
			continue
		}
		repos[named.Name()] = true
		if _, ok := named.(reference.NamedTagged); ok {
			v.RepoTags = append(v.RepoTags, named.String())
		}
	}
	digests := slices.Clone(img.Digests)
	if rec.IndexDigest != "" {
		digests = append(digests, rec.IndexDigest)
	}
	for i := range rec.References {
		if d := rec.References[i].IndexFor(rec); d != "" && !rec.References[i].Formerly {
			digests = append(digests, d)
		}
	}
	for repo := range repos {
		for _, d := range digests {
			v.RepoDigests = append(v.RepoDigests, repo+"@"+d.String())
		}
	}
	slices.Sort(v.RepoTags)
	slices.Sort(v.RepoDigests)
	v.RepoDigests = slices.Compact(v.RepoDigests)
	return v, nil
}

// List returns every stored image.
func (s *Service) List() ([]*Image, error) {
	imgs, err := s.store.Images()
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]*Image, 0, len(imgs))
	for i := range imgs {
		rec, err := s.recordOf(&imgs[i])
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				continue // removed while listing
			}
			return nil, err
		}
		v, err := s.view(&imgs[i], rec)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Get finds an image by ID ("sha256:<hex>" or "<hex>"), by a reference it
// is tagged or digested as, or by a reference a user pulled it by.
func (s *Service) Get(ref string) (*Image, error) {
	img, err := s.find(ref)
	if err != nil {
		return nil, err
	}
	rec, err := s.recordOf(img)
	if err != nil {
		return nil, err
	}
	return s.view(img, rec)
}

func isHexID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (s *Service) find(ref string) (*storage.Image, error) {
	f, err := s.resolve(ref)
	if err != nil {
		return nil, err
	}
	return f.Img, nil
}

// ErrAmbiguous: an ID prefix matches more than one image.
var ErrAmbiguous = errclass.New(errclass.InvalidArgument, "image ID prefix is ambiguous")

// byIDPrefix finds the one image whose ID is or starts with hex.
func (s *Service) byIDPrefix(hex string) (*storage.Image, error) {
	if isHexID(hex) {
		img, err := s.store.Image(hex)
		if err == nil && img.ID == hex {
			return img, nil
		}
		if err == nil || errors.Is(err, storage.ErrImageUnknown) || errors.Is(err, storage.ErrNotAnImage) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	imgs, err := s.store.Images()
	if err != nil {
		return nil, err
	}
	var found *storage.Image
	for i := range imgs {
		if strings.HasPrefix(imgs[i].ID, hex) {
			if found != nil {
				return nil, ErrAmbiguous
			}
			found = &imgs[i]
		}
	}
	if found == nil {
		return nil, ErrNotFound
	}
	return found, nil
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func hasRepo(img *storage.Image, repo string) bool {
	for _, n := range img.Names {
		if named, err := reference.ParseNormalizedNamed(n); err == nil && named.Name() == repo {
			return true
		}
	}
	return false
}

// Remove deletes the image ref names, with all its tags. A missing image
// is ErrNotFound; one a container still uses is ErrInUse.
func (s *Service) Remove(ref string) error {
	img, err := s.find(ref)
	if err != nil {
		return err
	}
	unlock, err := s.lockImage(img.ID)
	if err != nil {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	defer unlock()
	if _, err := s.store.DeleteImage(img.ID, true); err != nil {
		switch {
		// A concurrent removal of the same image wins the race: gone is gone.
		case errors.Is(err, storage.ErrImageUnknown), errors.Is(err, storage.ErrNotAnImage):
			return fmt.Errorf("remove image %s: %w", ref, ErrNotFound)
		case errors.Is(err, storage.ErrImageUsedByContainer):
			return fmt.Errorf("remove image %s: %w: %w", ref, ErrInUse, err)
		}
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	s.forgetRecord(img.ID)
	s.storeChanged()
	s.log.Info("image removed", "image", "sha256:"+img.ID, "names", img.Names)
	return nil
}

// RunConfig is the image's OCI config (entrypoint, env, user, ...), as
// the container spec needs it.
type RunConfig struct {
	Env, Entrypoint, Cmd         []string
	WorkingDir, User, StopSignal string
	Volumes                      []string
}

// RunConfig reads the stored image config.
func (s *Service) RunConfig(img *Image) (RunConfig, error) {
	data, err := s.store.ImageBigData(img.StorageID(), img.ID)
	if err != nil {
		return RunConfig{}, fmt.Errorf("image %s: config: %w", img.ID, err)
	}
	var c struct {
		Config struct {
			Env, Entrypoint, Cmd         []string
			WorkingDir, User, StopSignal string
			Volumes                      map[string]struct{}
		} `json:"config"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return RunConfig{}, fmt.Errorf("image %s: config: %w", img.ID, err)
	}
	out := RunConfig{Env: c.Config.Env, Entrypoint: c.Config.Entrypoint, Cmd: c.Config.Cmd,
		WorkingDir: c.Config.WorkingDir, User: c.Config.User, StopSignal: c.Config.StopSignal}
	for v := range c.Config.Volumes {
		out.Volumes = append(out.Volumes, v)
	}
	slices.Sort(out.Volumes)
	return out, nil
}
