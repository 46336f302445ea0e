// Command mkimages builds, offline and reproducibly, every container image
// that critest v1.37.0 (validation and -benchmark) needs, from a busybox
// binary (Debian's busybox-static by default) and two small static Go
// programs (pause, nnp). It writes them as an OCI image layout and, with
// -registry, pushes them as Docker schema 2 manifests to a plain-http
// registry (docker distribution), skipping blobs and manifests that are
// already there.
//
// Reproducibility: tar entries are sorted, owned by fixed ids, stamped with
// a fixed mtime; gzip headers carry no name or time; JSON is marshalled from
// structs. The same inputs (busybox, Go toolchain) give the same digests.
//
// Registry paths are the reference path of critest's image names (the name
// without its registry host), so a runtime that rewrites gcr.io,
// registry.k8s.io and k8s.gcr.io to the local registry finds them.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

const (
	mediaManifestV2 = "application/vnd.docker.distribution.manifest.v2+json"
	mediaConfigV2   = "application/vnd.docker.container.image.v1+json"
	mediaLayerV2    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mediaOCIIndex   = "application/vnd.oci.image.index.v1+json"
	envPath         = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	createdBy       = "crivet test/conformance mkimages"
)

var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// ------------------------------------------------------------------ layers --

type entry struct {
	name     string // relative, no leading "./"; directories without trailing "/"
	typ      byte
	mode     int64
	uid, gid int
	data     []byte
	link     string
}

type layerBuilder struct{ entries map[string]*entry }

func newLayer() *layerBuilder { return &layerBuilder{entries: map[string]*entry{}} }

func (l *layerBuilder) parents(name string) {
	for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := l.entries[d]; !ok {
			l.entries[d] = &entry{name: d, typ: tar.TypeDir, mode: 0o755}
		}
	}
}

func (l *layerBuilder) dir(name string, mode int64) *entry {
	l.parents(name)
	e := &entry{name: name, typ: tar.TypeDir, mode: mode}
	l.entries[name] = e
	return e
}

func (l *layerBuilder) file(name string, mode int64, data []byte) *entry {
	l.parents(name)
	e := &entry{name: name, typ: tar.TypeReg, mode: mode, data: data}
	l.entries[name] = e
	return e
}

func (l *layerBuilder) symlink(name, target string) {
	l.parents(name)
	l.entries[name] = &entry{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
}

func (l *layerBuilder) hardlink(name, target string) {
	l.parents(name)
	l.entries[name] = &entry{name: name, typ: tar.TypeLink, mode: 0o755, link: target}
}

type blob struct {
	digest string
	size   int64
	data   []byte
}

func newBlob(b []byte) blob {
	sum := sha256.Sum256(b)
	return blob{digest: "sha256:" + hex.EncodeToString(sum[:]), size: int64(len(b)), data: b}
}

type layer struct {
	gz     blob
	diffID string
}

// build writes the tar (regular entries sorted by name, then hard links
// sorted by name, so every link follows its target) and gzips it.
func (l *layerBuilder) build() layer { return l.buildLevel(gzip.BestCompression) }

func (l *layerBuilder) buildLevel(level int) layer {
	var names, links []string
	for n, e := range l.entries {
		if e.typ == tar.TypeLink {
			links = append(links, n)
		} else {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	sort.Strings(links)
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, n := range append(names, links...) {
		e := l.entries[n]
		h := &tar.Header{
			Typeflag: e.typ, Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: epoch, Linkname: e.link, Format: tar.FormatGNU,
		}
		if e.typ == tar.TypeDir {
			h.Name += "/"
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		must(tw.WriteHeader(h))
		if e.typ == tar.TypeReg {
			_, err := tw.Write(e.data)
			must(err)
		}
	}
	must(tw.Close())
	sum := sha256.Sum256(raw.Bytes())
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, level)
	must(err)
	_, err = zw.Write(raw.Bytes())
	must(err)
	must(zw.Close())
	return layer{gz: newBlob(gz.Bytes()), diffID: "sha256:" + hex.EncodeToString(sum[:])}
}

// ------------------------------------------------------------------ images --

type imageConfig struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
}

type history struct {
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
}

type configFile struct {
	Architecture string      `json:"architecture"`
	OS           string      `json:"os"`
	Created      string      `json:"created"`
	Config       imageConfig `json:"config"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []history `json:"history"`
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Size        int64             `json:"size"`
	Digest      string            `json:"digest"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type image struct {
	ref      string // registry path:tag
	manifest blob
	config   blob
	layers   []layer
}

func mkImage(ref string, cfg imageConfig, layers ...layer) image {
	var c configFile
	c.Architecture, c.OS, c.Created = "amd64", "linux", epoch.Format(time.RFC3339)
	c.Config = cfg
	c.RootFS.Type = "layers"
	for _, l := range layers {
		c.RootFS.DiffIDs = append(c.RootFS.DiffIDs, l.diffID)
		c.History = append(c.History, history{Created: c.Created, CreatedBy: createdBy})
	}
	cb, err := json.Marshal(c)
	must(err)
	config := newBlob(cb)
	m := manifest{SchemaVersion: 2, MediaType: mediaManifestV2,
		Config: descriptor{MediaType: mediaConfigV2, Size: config.size, Digest: config.digest}}
	for _, l := range layers {
		m.Layers = append(m.Layers, descriptor{MediaType: mediaLayerV2, Size: l.gz.size, Digest: l.gz.digest})
	}
	mb, err := json.MarshalIndent(m, "", "   ")
	must(err)
	return image{ref: ref, manifest: newBlob(mb), config: config, layers: layers}
}

// --------------------------------------------------------------- contents --

const pgrepScript = `#!/bin/sh
# pgrep stand-in (Debian's busybox has no pgrep applet): print the PIDs whose
# process name (/proc/PID/comm) contains PATTERN (the last argument).
for pat; do :; done
[ -n "${pat:-}" ] || { echo "usage: pgrep PATTERN" >&2; exit 2; }
rc=1
for d in /proc/[0-9]*; do
	pid=${d#/proc/}
	[ "$pid" = "$$" ] && continue
	{ read -r comm <"$d/comm"; } 2>/dev/null || continue
	[ "$comm" = pgrep ] && continue
	case "$comm" in *"$pat"*) echo "$pid"; rc=0 ;; esac
done
exit $rc
`

const ipcsScript = `#!/bin/sh
# ipcs stand-in (Debian's busybox has no ipcs applet): print the SysV IPC
# tables of the caller's IPC namespace from /proc/sysvipc.
show() { echo "------ $2 --------"; cat "/proc/sysvipc/$1" 2>/dev/null; echo; }
case "${1:--a}" in
-m) show shm "Shared Memory Segments" ;;
-q) show msg "Message Queues" ;;
-s) show sem "Semaphore Arrays" ;;
*) show shm "Shared Memory Segments"; show sem "Semaphore Arrays"; show msg "Message Queues" ;;
esac
`

const passwd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`

const group = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
`

const nginxStart = `#!/bin/sh
# nginx stand-in: busybox httpd started through /usr/sbin/nginx (a symlink to
# busybox, argv[0]=httpd), so that like a real nginx master its process name
# is "nginx", its command line contains "nginx: master process" and its pid is
# in /var/run/nginx.pid. Port: $NGINX_PORT (default 80).
port=${NGINX_PORT:-80}
root=${NGINX_ROOT:-/usr/share/nginx/html}
echo "nginx stand-in: busybox httpd serving $root on :$port" >&2
echo $$ >/var/run/nginx.pid
exec -a httpd /usr/sbin/nginx -f -vv -p "$port" -h "$root" -r "nginx: master process nginx -g daemon off;"
`

const nginxIndex = `<!DOCTYPE html>
<html><head><title>Welcome to nginx!</title></head>
<body><h1>Welcome to nginx!</h1><p>busybox httpd stand-in (crivet conformance image)</p></body></html>
`

const httpdForeground = `#!/bin/sh
# httpd stand-in: busybox httpd in the foreground on :${HTTPD_PORT:-80}.
port=${HTTPD_PORT:-80}
echo "httpd stand-in: busybox httpd serving /usr/local/apache2/htdocs on :$port" >&2
exec httpd -f -vv -p "$port" -h /usr/local/apache2/htdocs
`

func readFile(p string) []byte {
	b, err := os.ReadFile(p)
	must(err)
	return b
}

// busyboxLayer: busybox with every applet hard-linked in /bin (like the
// busybox images: a masked /bin/ls must not mask /bin/busybox), the busybox
// image's passwd/group, /tmp 1777, and pgrep/ipcs stand-ins. libs are host
// shared libraries copied in at the same path (for a dynamic busybox).
func busyboxLayer(bb string, libs []string) layer { return busyboxFiles(bb, libs).build() }

func busyboxFiles(bb string, libs []string) *layerBuilder {
	l := newLayer()
	for _, d := range []string{"bin", "dev", "etc", "home", "proc", "sys", "usr/bin", "usr/sbin",
		"usr/local/bin", "var/run", "var/spool/mail", "var/www"} {
		l.dir(d, 0o755)
	}
	l.dir("root", 0o700)
	l.dir("tmp", 0o1777)
	l.file("bin/busybox", 0o755, readFile(bb))
	out, err := exec.Command(bb, "--list").Output()
	must(err)
	applets := strings.Fields(string(out))
	if len(applets) < 100 {
		fail("%s --list printed only %d applets", bb, len(applets))
	}
	for _, a := range applets {
		if a != "busybox" && !strings.Contains(a, "/") {
			l.hardlink("bin/"+a, "bin/busybox")
		}
	}
	for name, script := range map[string]string{"pgrep": pgrepScript, "ipcs": ipcsScript} {
		if _, ok := l.entries["bin/"+name]; !ok {
			l.file("bin/"+name, 0o755, []byte(script))
		}
	}
	l.file("etc/passwd", 0o644, []byte(passwd))
	l.file("etc/group", 0o644, []byte(group))
	for _, f := range []string{"etc/hosts", "etc/hostname", "etc/resolv.conf"} {
		l.file(f, 0o644, nil)
	}
	l.symlink("etc/mtab", "/proc/mounts")
	for _, lib := range libs {
		real, err := filepath.EvalSymlinks(lib)
		must(err)
		l.file(strings.TrimPrefix(filepath.Clean(lib), "/"), 0o755, readFile(real))
	}
	if len(libs) > 0 {
		l.file("etc/nsswitch.conf", 0o644, []byte("passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"))
	}
	return l
}

func fileLayer(files ...string) layer {
	l := newLayer()
	for _, f := range files {
		l.file(f, 0o644, nil)
	}
	return l.build()
}

// incompressible returns n bytes of AES-128-CTR keystream (fixed key, zero IV).
func incompressible(n int) []byte {
	key := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	b, err := aes.NewCipher(key)
	must(err)
	out := make([]byte, n)
	cipher.NewCTR(b, make([]byte, aes.BlockSize)).XORKeyStream(out, out)
	return out
}

func buildImages(bb string, libs []string, pauseBin, nnpBin string) []image {
	base := busyboxLayer(bb, libs)

	pg := newLayer()
	pg.file("etc/passwd", 0o644, []byte(passwd+"default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n"))
	pg.file("etc/group", 0o644, []byte(group+"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"))
	h := pg.dir("home/default-user", 0o755)
	h.uid, h.gid = 1000, 1000
	predef := pg.build()

	ng := newLayer()
	ng.symlink("usr/sbin/nginx", "../../bin/busybox")
	ng.file("usr/share/nginx/html/index.html", 0o644, []byte(nginxIndex))
	ng.file("usr/local/bin/nginx-start", 0o755, []byte(nginxStart))
	ng.dir("var/run", 0o755)
	ng.dir("var/log/nginx", 0o755)
	nginx := ng.build()

	hd := newLayer()
	hd.file("usr/local/apache2/htdocs/index.html", 0o644, []byte("<html><body><h1>It works!</h1></body></html>\n"))
	hd.file("usr/local/bin/httpd-foreground", 0o755, []byte(httpdForeground))
	httpd := hd.build()

	np := newLayer()
	np.file("usr/local/bin/nnp", 0o4755, readFile(nnpBin))
	nnp := np.build()

	pa := newLayer()
	pa.file("pause", 0o755, readFile(pauseBin))
	pause := pa.build()

	bl := newLayer()
	bl.file("data.bin", 0o644, incompressible(1<<20))
	bench := bl.build()

	const C, E = "k8s-staging-cri-tools/", "e2e-test-images/"
	env := []string{envPath}
	sh := imageConfig{Env: env, Cmd: []string{"sh"}}
	user := func(u string) imageConfig { c := sh; c.User = u; return c }
	port := func(p string) map[string]struct{} { return map[string]struct{}{p + "/tcp": {}} }
	pauseCfg := imageConfig{Entrypoint: []string{"/pause"}, User: "65535:65535"}
	sandboxCfg := pauseCfg
	sandboxCfg.Labels = map[string]string{"io.crivet.test.role": "sandbox-image"}

	imgs := []image{
		mkImage(E+"busybox:1.29-2", sh, base),
		mkImage(E+"nginx:1.14-2", imageConfig{Env: append(env, "NGINX_VERSION=1.14-2-busybox-standin"),
			Cmd: []string{"/usr/local/bin/nginx-start"}, ExposedPorts: port("80")}, base, nginx),
		mkImage(C+"hostnet-nginx-amd64:latest", imageConfig{Env: append(env, "NGINX_PORT=12003"),
			Cmd: []string{"/usr/local/bin/nginx-start"}, ExposedPorts: port("12003")}, base, nginx),
		mkImage(E+"httpd:2.4.39-4", imageConfig{Env: env, Cmd: []string{"httpd-foreground"},
			WorkingDir: "/usr/local/apache2", ExposedPorts: port("80")}, base, httpd),
		mkImage(E+"nonewprivs:1.3", imageConfig{Env: env, Entrypoint: []string{"/usr/local/bin/nnp"}}, base, nnp),
		mkImage("pause:3.9", pauseCfg, pause),
		// Sandbox image of the runtimes under test: same binary as pause:3.9 but
		// another image ID, so critest's pause:3.9 removal specs never remove it.
		mkImage("crivet-test/pause:3.9", sandboxCfg, pause),
		mkImage(C+"test-image-user-uid:latest", user("1002"), base),
		mkImage(C+"test-image-user-username:latest", user("www-data"), base),
		mkImage(C+"test-image-user-uid-group:latest", user("1003:1004"), base),
		mkImage(C+"test-image-user-username-group:latest", user("www-data:1004"), base),
		mkImage(C+"test-image-predefined-group:latest", user("1000"), base, predef),
	}
	// critest pins test-image-digest@sha256:9700f9a2..., which cannot be
	// rebuilt offline; pushed anyway so that the name exists.
	for _, n := range []string{"test-image-1", "test-image-2", "test-image-3", "test-image-latest", "test-image-digest"} {
		imgs = append(imgs, mkImage(C+n+":latest", sh, base, fileLayer(n)))
	}
	same := fileLayer("same-image")
	for _, t := range []string{"1", "2", "3"} {
		imgs = append(imgs, mkImage(C+"test-image-tags:"+t, sh, base, same))
	}
	for _, t := range []string{"test", "all"} {
		imgs = append(imgs, mkImage(C+"test-image-tag:"+t, sh, base, fileLayer(t)))
	}
	imgs = append(imgs, mkImage("crivet-test/bench-1mb:latest", imageConfig{Cmd: []string{"/data.bin"}}, bench))
	return imgs
}

// -------------------------------------------------------------- OCI layout --

func writeLayout(dir string, imgs []image) {
	bdir := filepath.Join(dir, "blobs", "sha256")
	must(os.MkdirAll(bdir, 0o755))
	put := func(b blob) {
		p := filepath.Join(bdir, strings.TrimPrefix(b.digest, "sha256:"))
		if st, err := os.Stat(p); err == nil && st.Size() == b.size {
			return
		}
		must(os.WriteFile(p+".tmp", b.data, 0o644))
		must(os.Rename(p+".tmp", p))
	}
	index := struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []descriptor `json:"manifests"`
	}{SchemaVersion: 2, MediaType: mediaOCIIndex}
	for _, im := range imgs {
		for _, l := range im.layers {
			put(l.gz)
		}
		put(im.config)
		put(im.manifest)
		index.Manifests = append(index.Manifests, descriptor{MediaType: mediaManifestV2,
			Size: im.manifest.size, Digest: im.manifest.digest,
			Annotations: map[string]string{"org.opencontainers.image.ref.name": im.ref}})
	}
	must(os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644))
	ib, err := json.MarshalIndent(index, "", "  ")
	must(err)
	must(os.WriteFile(filepath.Join(dir, "index.json"), append(ib, '\n'), 0o644))
}

// -------------------------------------------------------------------- push --

type registry struct {
	base   *url.URL
	client *http.Client
	have   map[string]string // blob digest -> a repository holding it
}

func (r *registry) do(method, p string, q url.Values, body []byte, hdr map[string]string) (*http.Response, error) {
	u := r.base.ResolveReference(&url.URL{Path: p})
	if q != nil {
		u.RawQuery = q.Encode()
	}
	return r.doURL(method, u, body, hdr)
}

func (r *registry) doURL(method string, u *url.URL, body []byte, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequest(method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.ContentLength = int64(len(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func drain(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return strings.TrimSpace(string(b))
}

func (r *registry) pushBlob(repo string, b blob) error {
	resp, err := r.do(http.MethodHead, "/v2/"+repo+"/blobs/"+b.digest, nil, nil, nil)
	if err != nil {
		return err
	}
	drain(resp)
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	q := url.Values{}
	if from, ok := r.have[b.digest]; ok {
		q.Set("mount", b.digest)
		q.Set("from", from)
	}
	resp, err = r.do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/", q, nil, nil)
	if err != nil {
		return err
	}
	msg := drain(resp)
	switch resp.StatusCode {
	case http.StatusCreated: // mounted
		r.have[b.digest] = repo
		return nil
	case http.StatusAccepted:
	default:
		return fmt.Errorf("start upload of %s to %s: %s %s", b.digest, repo, resp.Status, msg)
	}
	loc, err := r.base.Parse(resp.Header.Get("Location"))
	if err != nil {
		return err
	}
	lq := loc.Query()
	lq.Set("digest", b.digest)
	loc.RawQuery = lq.Encode()
	resp, err = r.doURL(http.MethodPut, loc, b.data, map[string]string{"Content-Type": "application/octet-stream"})
	if err != nil {
		return err
	}
	msg = drain(resp)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("upload %s to %s: %s %s", b.digest, repo, resp.Status, msg)
	}
	r.have[b.digest] = repo
	return nil
}

// push uploads im unless the tag already resolves to the same manifest digest.
func (r *registry) push(im image) (pushed bool, err error) {
	repo, tag, _ := strings.Cut(im.ref, ":")
	resp, err := r.do(http.MethodHead, "/v2/"+repo+"/manifests/"+tag, nil, nil, map[string]string{"Accept": mediaManifestV2})
	if err != nil {
		return false, err
	}
	drain(resp)
	if resp.StatusCode == http.StatusOK && resp.Header.Get("Docker-Content-Digest") == im.manifest.digest {
		return false, nil
	}
	for _, l := range im.layers {
		if err := r.pushBlob(repo, l.gz); err != nil {
			return false, err
		}
	}
	if err := r.pushBlob(repo, im.config); err != nil {
		return false, err
	}
	resp, err = r.do(http.MethodPut, "/v2/"+repo+"/manifests/"+tag, nil, im.manifest.data, map[string]string{"Content-Type": mediaManifestV2})
	if err != nil {
		return false, err
	}
	msg := drain(resp)
	if resp.StatusCode != http.StatusCreated {
		return false, fmt.Errorf("put manifest %s: %s %s", im.ref, resp.Status, msg)
	}
	if d := resp.Header.Get("Docker-Content-Digest"); d != "" && d != im.manifest.digest {
		return false, fmt.Errorf("registry stored %s as %s, expected %s", im.ref, d, im.manifest.digest)
	}
	return true, nil
}

// -------------------------------------------------------------------- main --

func must(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "mkimages: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	bb := flag.String("busybox", "/usr/bin/busybox", "busybox binary for the base layer (statically linked unless -libs is given)")
	libsFlag := flag.String("libs", "", "comma-separated host shared libraries to copy into the base layer (dynamic busybox)")
	pauseBin := flag.String("pause", "", "static pause binary")
	nnpBin := flag.String("nnp", "", "static nnp binary")
	out := flag.String("out", "", "OCI layout directory to write")
	reg := flag.String("registry", "", "push to this plain-http registry (host:port); empty: do not push")
	realistic := flag.Bool("realistic", false, "also build the two ~100 MiB six-layer images of test/bench (realistic.go)")
	tsv := flag.String("tsv", "", "write a table of reference, manifest digest, image ID, compressed bytes")
	flag.Parse()
	if *pauseBin == "" || *nnpBin == "" || *out == "" {
		fail("-pause, -nnp and -out are required")
	}
	var libs []string
	if *libsFlag != "" {
		libs = strings.Split(*libsFlag, ",")
	}
	imgs := buildImages(*bb, libs, *pauseBin, *nnpBin)
	if *realistic {
		imgs = append(imgs, realisticImages(*bb, libs)...)
	}
	writeLayout(*out, imgs)

	var rows strings.Builder
	prefix := ""
	if *reg != "" {
		prefix = *reg + "/"
	}
	fmt.Fprintf(&rows, "# reference\tmanifest_digest\timage_id\tcompressed_bytes\n")
	for _, im := range imgs {
		var n int64
		for _, l := range im.layers {
			n += l.gz.size
		}
		fmt.Fprintf(&rows, "%s%s\t%s\t%s\t%d\n", prefix, im.ref, im.manifest.digest, im.config.digest, n)
	}
	if *tsv != "" {
		must(os.WriteFile(*tsv, []byte(rows.String()), 0o644))
	}
	if *reg == "" {
		fmt.Fprintf(os.Stderr, "mkimages: wrote %d images to %s (not pushed)\n", len(imgs), *out)
		return
	}
	r := &registry{base: &url.URL{Scheme: "http", Host: *reg}, client: &http.Client{Timeout: 60 * time.Second}, have: map[string]string{}}
	pushed := 0
	for _, im := range imgs {
		p, err := r.push(im)
		if err != nil {
			fail("push %s: %v", im.ref, err)
		}
		if p {
			pushed++
		}
	}
	fmt.Fprintf(os.Stderr, "mkimages: %d images in %s; pushed %d to %s, %d already there\n", len(imgs), *out, pushed, *reg, len(imgs)-pushed)
}
