package main

import (
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"strings"
)

// The "realistic" images of test/bench: what a pull of an application
// image costs, as opposed to the 1 MiB single-layer bench image. Six
// layers, ~97 MiB uncompressed, shaped like a distribution image with a
// language runtime and an application on top:
//
//	1 base: busybox (+ libs) and an os-release, not shared with busybox:1.29-2
//	  (so that a cold pull fetches it)                          ~1-3 MiB
//	2 packages: 20,000 text files of 1-4 KiB in 400 directories ~49 MiB
//	3 libraries: 5 shared-object-like files of 4 MiB             20 MiB
//	4 runtime: 3 files of 4 MiB and 300 small files              ~13 MiB
//	5 application: 2 binaries of 6 MiB                           12 MiB
//	6 configuration: 20 small files
//
// bench-realistic-sibling has the same first four layers and its own
// layers 5 and 6: pulled after bench-realistic, it measures a pull with
// the shared base layers already present.
//
// Contents come from fixed-seed PCG streams (math/rand/v2 specifies the
// algorithm), so the digests are reproducible. Layers are gzipped at the
// default level, as image builders do (and 5x faster than the best level).

const (
	realisticRef = "crivet-test/bench-realistic:latest"
	siblingRef   = "crivet-test/bench-realistic-sibling:latest"
)

var words = strings.Fields(`the of and to in is for on that with as by this are from be or at an
	import def class return self None True False if else elif while for in not lambda yield
	module package version license copyright author description install require depends
	function value error result config option default path file directory buffer stream`)

// text returns n bytes of word-salad text (gzip: ~3x).
func text(r *rand.Rand, n int) []byte {
	var b strings.Builder
	b.Grow(n + 16)
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(12) == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return []byte(b.String()[:n])
}

// binary returns n bytes that compress about like machine code (~2x):
// 64-byte chunks, some random, most copied with a few changes from the
// recent past.
func binary(r *rand.Rand, n int) []byte {
	out := make([]byte, n)
	for off := 0; off < n; off += 64 {
		chunk := out[off:min(off+64, n)]
		if off < 4096 || r.IntN(10) < 4 {
			for i := range chunk {
				chunk[i] = byte(r.Uint32())
			}
			continue
		}
		src := off - 64*(1+r.IntN(min(off/64, 64)))
		copy(chunk, out[src:src+len(chunk)])
		for k := 0; k < 3; k++ {
			chunk[r.IntN(len(chunk))] = byte(r.Uint32())
		}
	}
	return out
}

func realisticImages(bb string, libs []string) []image {
	const level = gzip.DefaultCompression
	rng := func(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6372697665742d62)) }

	b := busyboxFiles(bb, libs)
	b.file("etc/os-release", 0o644, []byte("NAME=\"crivet bench base\"\nID=crivet-bench\nVERSION_ID=1\n"))
	base := b.buildLevel(level)

	r := rng(2)
	pk := newLayer()
	for i := 0; i < 20000; i++ {
		pk.file(fmt.Sprintf("usr/lib/python3/site-packages/pkg%03d/mod%02d.py", i/50, i%50), 0o644, text(r, 1024+r.IntN(3073)))
	}
	packages := pk.buildLevel(level)

	r = rng(3)
	lb := newLayer()
	for i := 0; i < 5; i++ {
		lb.file(fmt.Sprintf("usr/lib/x86_64-linux-gnu/libbench%d.so.1", i), 0o644, binary(r, 4<<20))
	}
	libraries := lb.buildLevel(level)

	r = rng(4)
	rt := newLayer()
	for i := 0; i < 3; i++ {
		rt.file(fmt.Sprintf("usr/lib/runtime/bin/tool%d", i), 0o755, binary(r, 4<<20))
	}
	for i := 0; i < 300; i++ {
		rt.file(fmt.Sprintf("usr/lib/runtime/lib/part%03d.txt", i), 0o644, text(r, 1024+r.IntN(3073)))
	}
	runtime := rt.buildLevel(level)

	app := func(seed uint64, name string) (layer, layer) {
		r := rng(seed)
		a := newLayer()
		a.file("usr/local/bin/"+name, 0o755, binary(r, 6<<20))
		a.file("usr/local/bin/"+name+"-helper", 0o755, binary(r, 6<<20))
		c := newLayer()
		c.file("etc/"+name+"/"+name+".conf", 0o644, text(r, 2048))
		for i := 0; i < 20; i++ {
			c.file(fmt.Sprintf("etc/%s/conf.d/%02d.conf", name, i), 0o644, text(r, 256+r.IntN(1024)))
		}
		return a.buildLevel(level), c.buildLevel(level)
	}
	appA, confA := app(5, "app-a")
	appB, confB := app(6, "app-b")

	cfg := func(name string) imageConfig {
		return imageConfig{Env: []string{envPath}, Cmd: []string{"/usr/local/bin/" + name}}
	}
	return []image{
		mkImage(realisticRef, cfg("app-a"), base, packages, libraries, runtime, appA, confA),
		mkImage(siblingRef, cfg("app-b"), base, packages, libraries, runtime, appB, confB),
	}
}
