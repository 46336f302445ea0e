// Package image is crivet's image store: it pulls images through
// go.podman.io/image/v5 after the signature policy admitted them, keeps
// them in a containers/storage store under the daemon's root (layers shared
// between images, signatures kept with the image), and records for every
// image who pulled it, by which reference and under which policy.
package image

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/crivet/crivet/audit"
	"github.com/crivet/crivet/image/trust"
	"github.com/crivet/crivet/internal/keyed"
	"github.com/crivet/crivet/policy"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
	storagetypes "go.podman.io/storage/types"
	"golang.org/x/sync/singleflight"
)

// Config says where the store lives and how registries are reached.
type Config struct {
	// Root holds persistent data (<Root>/storage, <Root>/tmp, <Root>/cache).
	Root string
	// RunRoot holds state that does not survive a reboot.
	RunRoot string
	// Driver is the containers/storage graph driver ("overlay", "vfs").
	Driver string
	// RegistriesConf is a registries.conf(5) file; its drop-in directory
	// is RegistriesConf + ".d".
	RegistriesConf string
	// RegistriesD is the registries.d(5) directory (sigstore attachments, lookaside).
	RegistriesD string
	// AuthFile is an optional containers-auth.json(5) used when a pull carries no credentials.
	AuthFile string
	// Policies decides which images may be pulled.
	Policies *policy.Store
	// Audit receives one record per signature decision; nil discards.
	Audit  *audit.Log
	Logger *slog.Logger
	// Observer is told of decisions, admission-cache look-ups and pulls
	// (metrics); nil observes nothing.
	Observer Observer

	// PullProgressTimeout fails a pull when the registry sends no byte
	// for that long while manifests, signatures or blobs are due
	// (unpacking into the store does not count). 0 disables it; the
	// daemon's default is DefaultPullProgressTimeout.
	PullProgressTimeout time.Duration
	// MaxImageSize refuses images whose declared layers, or whose layers
	// once uncompressed, exceed this many bytes. 0 = unlimited.
	MaxImageSize int64
	// MaxLayers refuses images with more layers. 0 = unlimited.
	MaxLayers int

	// Shared opens a store a running daemon may be using (crivet image
	// import/export): what the daemon's pulls have in flight (their
	// temporary files, layers not yet owned by an image) is left alone,
	// and so are its mounts at Close. The daemon's next start cleans what
	// an interrupted shared user left.
	Shared bool
}

// Service is the only owner of the image store.
type Service struct {
	cfg   Config
	store storage.Store
	log   *slog.Logger
	obs   Observer

	pulls singleflight.Group
	// flights are the shared contexts of the pulls in pulls, cancelled
	// when every caller waiting for one has gone.
	flightMu sync.Mutex
	flights  map[string]*flight
	// locks serialises the write phase of a pull with removals of the
	// same image, so a removal never interleaves with a half-written record.
	locks keyed.Mutex
	// recLocks extends locks across processes sharing the store
	// (lockImage takes both).
	recLocks *recordLocks

	recMu   sync.Mutex
	records map[string]cachedRecord // by storage image ID; a cache of what is on disk

	// trust makes every signature decision (image/trust).
	trust *trust.Verifier
	usage usageCache
}

// Open opens (or creates) the store, cleaning what an interrupted pull left.
func Open(cfg Config) (*Service, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{cfg.Root, cfg.RunRoot} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	// Temporary pull data lives under our root, not /var/tmp, so a crash
	// mid-pull leaves it where the next start can find and remove it.
	tmp := filepath.Join(cfg.Root, "tmp")
	if !cfg.Shared {
		if err := os.RemoveAll(tmp); err != nil {
			return nil, fmt.Errorf("image store: clean %s: %w", tmp, err)
		}
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	if !cfg.Shared {
		cleanDriverCheckMounts(filepath.Join(cfg.Root, "storage"))
	}
	store, err := storage.GetStore(cfg.storeOptions())
	if err != nil {
		return nil, fmt.Errorf("open image store in %s (driver %s): %w", cfg.Root, cfg.Driver, err)
	}
	s := newService(cfg, store)
	if cfg.Shared {
		return s, nil
	}
	if err := s.removeOrphanLayers(); err != nil {
		_, _ = store.Shutdown(true)
		return nil, err
	}
	// kubelet's first connection asks for ImageFsInfo: have it measured.
	s.usage.mu.Lock()
	s.startMeasuring()
	s.usage.mu.Unlock()
	return s, nil
}

// memoryOnlyBlobInfoCache is a path under a character device, which no
// MkdirAll can create: go.podman.io/image then falls back to its
// memory-only blob-info cache (pkg/blobinfocache.DefaultCache).
var memoryOnlyBlobInfoCache = filepath.Join(os.DevNull, "crivet-memory-only-blob-info-cache")

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Driver == "" {
		cfg.Driver = "overlay"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Policies == nil {
		return cfg, errors.New("image service: no policy store")
	}
	return cfg, nil
}

func (cfg Config) storeOptions() storagetypes.StoreOptions {
	return storagetypes.StoreOptions{
		GraphRoot:       filepath.Join(cfg.Root, "storage"),
		RunRoot:         filepath.Join(cfg.RunRoot, "storage"),
		GraphDriverName: cfg.Driver,
	}
}

// newService: store is nil for a Checker that checks pulls only.
func newService(cfg Config, store storage.Store) *Service {
	s := &Service{cfg: cfg, store: store, log: cfg.Logger, obs: cfg.Observer, records: map[string]cachedRecord{},
		recLocks: newRecordLocks(cfg.Root)}
	if s.obs == nil {
		s.obs = nopObserver{}
	}
	s.trust = newVerifier(s)
	return s
}

// Storage exposes the underlying store to the runtime side (container
// root filesystems are created from the same layers).
func (s *Service) Storage() storage.Store { return s.store }

// Close unmounts what the store mounted and releases it. A shared user
// mounted nothing, and the driver's clean-up would undo the daemon's
// mount of its home.
func (s *Service) Close() error {
	defer s.recLocks.close()
	if s.cfg.Shared {
		return nil
	}
	s.usage.mu.Lock()
	done := s.usage.done
	measuring := s.usage.measuring
	s.usage.mu.Unlock()
	if measuring {
		<-done // it reads the store's layer list
	}
	_, err := s.store.Shutdown(false)
	return err
}

// removeOrphanLayers deletes layers no image or container uses. containers/
// storage already drops layers still flagged incomplete; a pull killed
// after some layers were committed but before its image was created leaves
// complete but unowned layers, which only this start-up sweep can find.
// It runs before the service accepts calls, so no pull is in flight.
func (s *Service) removeOrphanLayers() error {
	layers, err := s.store.Layers()
	if err != nil {
		return fmt.Errorf("list layers: %w", err)
	}
	byID := make(map[string]storage.Layer, len(layers))
	for _, l := range layers {
		byID[l.ID] = l
	}
	used := map[string]bool{}
	markChain := func(id string) {
		for id != "" && !used[id] {
			used[id] = true
			id = byID[id].Parent
		}
	}
	images, err := s.store.Images()
	if err != nil {
		return fmt.Errorf("list images: %w", err)
	}
	for _, img := range images {
		markChain(img.TopLayer)
		for _, m := range img.MappedTopLayers {
			markChain(m)
		}
	}
	containers, err := s.store.Containers()
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	for _, c := range containers {
		markChain(c.LayerID)
	}
	// Delete children before parents: repeat until nothing more goes.
	for {
		removed := 0
		children := map[string]int{}
		for id, l := range byID {
			if !used[id] && l.Parent != "" {
				children[l.Parent]++
			}
		}
		for id := range byID {
			if used[id] || children[id] > 0 {
				continue
			}
			if err := s.store.DeleteLayer(id); err != nil {
				return fmt.Errorf("remove orphan layer %s: %w", id, err)
			}
			s.log.Info("removed layer left by an interrupted pull", "layer", id)
			delete(byID, id)
			removed++
		}
		if removed == 0 {
			return nil
		}
	}
}

// systemContext is the library context of one operation.
func (s *Service) systemContext() *types.SystemContext {
	mode := types.ShortNameModePermissive
	return &types.SystemContext{
		SystemRegistriesConfPath:    s.cfg.RegistriesConf,
		SystemRegistriesConfDirPath: s.cfg.RegistriesConf + ".d",
		RegistriesDirPath:           s.cfg.RegistriesD,
		AuthFilePath:                s.cfg.AuthFile,
		BigFilesTemporaryDir:        filepath.Join(s.cfg.Root, "tmp"),
		// The blob-info cache only accelerates: it maps compressed to
		// uncompressed digests and remembers where blobs were seen. The
		// store itself finds layers by either digest, which is what lets a
		// pull reuse stored layers; the SQLite file costs ~20 syncs and
		// 4-5 ms per pull. A directory that cannot exist makes the library
		// use its memory-only cache for the copy.
		BlobInfoCacheDir: memoryOnlyBlobInfoCache,
		// Short names that need a prompt cannot get one in a daemon.
		ShortNameMode: &mode,
	}
}
