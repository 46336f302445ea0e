package image

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crivet/crivet/test/fixtures"
)

func TestTooManyLayersRefusedBeforeFetch(t *testing.T) {
	e := newEnv(t)
	reopen(e, func(c *Config) { c.MaxLayers = 10 }, nil)
	many := fixtures.PushImage(t, e.ref("layers/many:1"), 16, fixtures.WithLayerCount(20))
	before := storeState(t, e)
	_, err, _ := pullWithin(e, many.Ref, time.Minute)
	if !errors.Is(err, ErrImageLimit) || err.Error() != "pull "+many.Ref+": image has 20 layers, more than max_layers (10)" {
		t.Fatalf("pull of 20 layers with max_layers 10: %v", err)
	}
	if after := storeState(t, e); after != before {
		t.Fatalf("refused pull changed the store:\n%s\n%s", before, after)
	}
	ten := fixtures.PushImage(t, e.ref("layers/ten:1"), 16, fixtures.WithLayerCount(10))
	if _, err, _ := pullWithin(e, ten.Ref, time.Minute); err != nil {
		t.Fatalf("pull of exactly max_layers layers: %v", err)
	}
}

func TestDeclaredSizeOverLimitRefusedBeforeFetch(t *testing.T) {
	e := newEnv(t)
	reopen(e, func(c *Config) { c.MaxImageSize = 16 << 20 }, nil)
	big := fixtures.PushImage(t, e.ref("size/big:1"), 20<<20) // random: does not compress
	before := storeState(t, e)
	_, err, _ := pullWithin(e, big.Ref, time.Minute)
	if !errors.Is(err, ErrImageLimit) || err.Error() != "pull "+big.Ref+": image exceeds max_image_size (16777216 bytes)" {
		t.Fatalf("pull of a 20 MiB image with a 16 MiB limit: %v", err)
	}
	if after := storeState(t, e); after != before {
		t.Fatalf("refused pull changed the store:\n%s\n%s", before, after)
	}
}

// A layer of ~2 MiB of gzip that inflates to 64 MiB, under a 16 MiB
// limit: refused while it is being fetched, before it is unpacked, and
// nothing stays.
func TestGzipBombStoppedBeforeUnpack(t *testing.T) {
	e := newEnv(t)
	const limit = 16 << 20
	reopen(e, func(c *Config) { c.MaxImageSize = limit }, nil)
	base := fixtures.PushLayers(t, e.ref("bomb/base:1"), fixtures.BombTar(t, 1<<20))
	bomb := fixtures.PushLayers(t, e.ref("bomb/app:1"), fixtures.BombTar(t, 1<<20), fixtures.BombTar(t, 64<<20))
	_ = base
	before := storeState(t, e)
	startUsage := diskUsage(e.root)

	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if u := diskUsage(e.root) - startUsage; u > peak.Load() {
				peak.Store(u)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	_, err, _ := pullWithin(e, bomb.Ref, time.Minute)
	close(stop)
	wg.Wait()
	if !errors.Is(err, ErrImageLimit) || !strings.HasSuffix(err.Error(), "image exceeds max_image_size (16777216 bytes)") || !strings.HasPrefix(err.Error(), "pull "+bomb.Ref+": ") {
		t.Fatalf("pull of a gzip bomb: %v", err)
	}
	if p := peak.Load(); p > limit+8<<20 {
		t.Errorf("the bomb put %d MiB on disk before it was stopped (limit %d MiB)", p>>20, limit>>20)
	}
	if after := storeState(t, e); after != before {
		t.Fatalf("refused pull left data:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// The small image still fits.
	if _, err, _ := pullWithin(e, base.Ref, time.Minute); err != nil {
		t.Fatalf("pull under the limit: %v", err)
	}
}
