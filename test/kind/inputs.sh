# shellcheck shell=bash
# Sourced by test/kind/run.sh when the kubeadm cluster harness's lab
# (/var/tmp/crivet-cluster) does not have what the kind node image needs:
# builds it into $LAB the way test/cluster/run.sh does (Kubernetes from the
# module proxy, etcd, CoreDNS, crictl, sigtool, one-layer OCI image
# layouts). A reduced copy of that harness's build steps, to be shared with
# it once both are on main.

K8S_BINS="kubeadm kubectl kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy"
STAGING_VERSION=v0.34.12

kubeadm_const() { # name: a version kubeadm $K8S_VERSION deploys
	[ -d "$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION" ] || (cd /tmp && go mod download "k8s.io/kubernetes@$K8S_VERSION")
	sed -n "s/^[[:space:]]*$1 = \"\(.*\)\"/\1/p" "$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/cmd/kubeadm/app/constants/constants.go"
}

# k8s.io/kubernetes at $K8S_VERSION from a throwaway module, each staging
# module pinned to its published $STAGING_VERSION; CGO off.
build_k8s() {
	local b missing= d=$LAB/kbuild gomod pkgs=
	for b in $K8S_BINS; do [ -x "$LAB/bin/$b" ] || missing=1; done
	[ -z "$missing" ] && return
	log "building $K8S_BINS $K8S_VERSION (20-40 minutes on 2 cores, once)"
	mkdir -p "$d"
	gomod=$(cd "$d" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | jq -r .GoMod) || return 1
	{
		printf 'module kbuild\n\ngo 1.25.0\n\ngodebug default=go1.24\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
		sed -n "s#^\t\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 $STAGING_VERSION#p" "$gomod"
		printf ')\n'
	} >"$d/go.mod"
	{
		printf '//go:build tools\n\npackage kbuild\n\nimport (\n'
		for b in $K8S_BINS; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$b"; pkgs="$pkgs k8s.io/kubernetes/cmd/$b"; done
		printf ')\n'
	} >"$d/tools.go"
	# shellcheck disable=SC2086
	(cd "$d" && nice -n 10 go mod tidy && CGO_ENABLED=0 nice -n 10 go build -tags tools \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34 -X k8s.io/component-base/version.gitTreeState=clean" \
		-o "$LAB/bin/" $pkgs) >"$LAB/logs/k8s-build.log" 2>&1 || { log "see $LAB/logs/k8s-build.log"; return 1; }
}

build_etcd_coredns() {
	local etcd coredns d=$LAB/ebuild
	etcd=$(kubeadm_const DefaultEtcdVersion)
	coredns=$(kubeadm_const CoreDNSVersion)
	if [ ! -x "$LAB/bin/etcd" ]; then
		log "building etcd ${etcd%-*}"
		mkdir -p "$d"
		printf 'module ebuild\n\ngo 1.25.0\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' "${etcd%-*}" >"$d/go.mod"
		printf '//go:build tools\n\npackage ebuild\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$d/tools.go"
		(cd "$d" && GOFLAGS=-mod=mod nice -n 10 go mod tidy && CGO_ENABLED=0 nice -n 10 go build -ldflags "-s -w" -o "$LAB/bin/etcd" go.etcd.io/etcd/server/v3) \
			>"$LAB/logs/etcd-build.log" 2>&1 || return 1
	fi
	if [ ! -x "$LAB/bin/coredns" ]; then
		log "building CoreDNS $coredns"
		(cd /tmp && CGO_ENABLED=0 GOBIN=$LAB/bin nice -n 10 go install -ldflags "-s -w" "github.com/coredns/coredns@$coredns") \
			>"$LAB/logs/coredns-build.log" 2>&1 || return 1
	fi
}

build_tools() {
	[ -x "$LAB/bin/crictl" ] || { [ -x "$REPO/bin/crictl" ] && cp "$REPO/bin/crictl" "$LAB/bin/"; } ||
		GOBIN=$LAB/bin go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0 || return 1
	[ -x "$LAB/bin/sigtool" ] && return
	# sigtool keygen DIR PASS | sign KEY PASS REGISTRIES_D REF...: sigstore
	# signing with go.podman.io/image/v5, the library crivet verifies with.
	local d=$LAB/sigtool v
	mkdir -p "$d"
	cat >"$d/main.go" <<'EOF'
package main

import (
	"context"
	"io"
	"os"
	"path/filepath"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/signature/signer"
	"go.podman.io/image/v5/signature/sigstore"
	"go.podman.io/image/v5/types"
)

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func main() {
	switch os.Args[1] {
	case "keygen":
		kp, err := sigstore.GenerateKeyPair([]byte(os.Args[3]))
		must(err)
		must(os.WriteFile(filepath.Join(os.Args[2], "cosign.key"), kp.PrivateKey, 0o600))
		must(os.WriteFile(filepath.Join(os.Args[2], "cosign.pub"), kp.PublicKey, 0o644))
	case "sign":
		key, pass, regd := os.Args[2], []byte(os.Args[3]), os.Args[4]
		tmp, err := os.MkdirTemp("", "sigtool")
		must(err)
		defer os.RemoveAll(tmp)
		conf := filepath.Join(tmp, "registries.conf")
		must(os.WriteFile(conf, []byte("unqualified-search-registries = []\n"), 0o644))
		sc := &types.SystemContext{
			DockerInsecureSkipTLSVerify: types.OptionalBoolTrue, RegistriesDirPath: regd,
			SystemRegistriesConfPath: conf, SystemRegistriesConfDirPath: filepath.Join(tmp, "registries.conf.d"),
			AuthFilePath: filepath.Join(tmp, "auth.json"), BlobInfoCacheDir: tmp,
		}
		s, err := sigstore.NewSigner(sigstore.WithPrivateKeyFile(key, pass))
		must(err)
		defer s.Close()
		pc, err := signature.NewPolicyContext(&signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}})
		must(err)
		defer pc.Destroy()
		for _, ref := range os.Args[5:] {
			r, err := docker.ParseReference("//" + ref)
			must(err)
			_, err = copy.Image(context.Background(), pc, r, r, &copy.Options{
				Signers: []*signer.Signer{s}, SourceCtx: sc, DestinationCtx: sc, ReportWriter: io.Discard, PreserveDigests: true,
			})
			must(err)
		}
	default:
		panic("usage: sigtool keygen DIR PASS | sign KEY PASS REGISTRIES_D REF...")
	}
}
EOF
	v=$(cd "$REPO" && go list -m -f '{{.Version}}' go.podman.io/image/v5) || return 1
	printf 'module sigtool\n\ngo 1.25.0\n\nrequire go.podman.io/image/v5 %s\n' "$v" >"$d/go.mod"
	cp "$REPO/go.sum" "$d/go.sum"
	(cd "$d" && GOFLAGS=-mod=mod go mod tidy && go build -tags containers_image_openpgp -o "$LAB/bin/sigtool" .) >"$LAB/logs/sigtool-build.log" 2>&1
}

rootfs_base() {
	rm -rf "$1"
	mkdir -p "$1"/{etc,tmp,root,usr/local/bin}
	chmod 1777 "$1/tmp"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$1/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$1/etc/group"
}

# oci_image NAME ROOTFS CONFIG: a one-layer image as a dir: layout
# ($LAB/images/NAME.dir); CONFIG is the image config's "config" object.
oci_image() {
	local name=$1 root=$2 config=$3 out=$LAB/images/$1.dir diffid layer lsize cfg csize
	rm -rf "$out"
	mkdir -p "$out"
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$root" -cf "$LAB/images/$name.tar" .
	diffid=$(sha256sum <"$LAB/images/$name.tar" | cut -d' ' -f1)
	gzip -n -c "$LAB/images/$name.tar" >"$LAB/images/$name.tar.gz"
	layer=$(sha256sum <"$LAB/images/$name.tar.gz" | cut -d' ' -f1)
	lsize=$(stat -c %s "$LAB/images/$name.tar.gz")
	mv "$LAB/images/$name.tar.gz" "$out/$layer"
	rm -f "$LAB/images/$name.tar"
	jq -cn --arg d "sha256:$diffid" --argjson c "$config" '{architecture: "amd64", os: "linux",
		config: ({Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]} + $c),
		rootfs: {type: "layers", diff_ids: [$d]}}' >"$out/config.json"
	cfg=$(sha256sum <"$out/config.json" | cut -d' ' -f1)
	csize=$(stat -c %s "$out/config.json")
	mv "$out/config.json" "$out/$cfg"
	jq -cn --arg c "sha256:$cfg" --argjson cs "$csize" --arg l "sha256:$layer" --argjson ls "$lsize" '{schemaVersion: 2,
		mediaType: "application/vnd.oci.image.manifest.v1+json",
		config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
		layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $l, size: $ls}]}' >"$out/manifest.json"
	echo 'Directory Transport Version: 1.1' >"$out/version"
	rm -rf "$root"
}

copy_with_libs() { # root file...
	local root=$1 f l
	shift
	for f in "$@"; do
		for l in "$f" $(ldd "$f" 2>/dev/null | grep -oE '/[^ ]+'); do
			[ -e "$root$l" ] && continue
			mkdir -p "$root$(dirname "$l")" && cp -L "$l" "$root$l" || return 1
		done
	done
}

build_images() {
	local r=$LAB/images/rootfs b a
	mkdir -p "$LAB/images"
	file -L /bin/busybox | grep -q 'statically linked' || { log "/bin/busybox is not static (apt-get install busybox-static)"; return 1; }
	for b in kube-apiserver kube-controller-manager kube-scheduler; do
		[ -s "$LAB/images/$b.dir/manifest.json" ] && continue
		rootfs_base "$r" && cp "$LAB/bin/$b" "$r/usr/local/bin/" && oci_image "$b" "$r" '{}'
	done
	if [ ! -s "$LAB/images/etcd.dir/manifest.json" ]; then
		rootfs_base "$r" && cp "$LAB/bin/etcd" "$r/usr/local/bin/" && mkdir -p "$r/var/lib/etcd" && oci_image etcd "$r" '{}'
	fi
	if [ ! -s "$LAB/images/coredns.dir/manifest.json" ]; then
		rootfs_base "$r" && cp "$LAB/bin/coredns" "$r/coredns" && oci_image coredns "$r" '{"Entrypoint": ["/coredns"], "ExposedPorts": {"53/tcp": {}, "53/udp": {}}}'
	fi
	if [ ! -s "$LAB/images/pause.dir/manifest.json" ]; then
		(cd "$REPO" && CGO_ENABLED=0 go build -o "$LAB/bin/crivet-pause" ./cmd/crivet-pause) || return 1
		rootfs_base "$r" && cp "$LAB/bin/crivet-pause" "$r/pause" && oci_image pause "$r" '{"Entrypoint": ["/pause"]}'
	fi
	# kube-proxy (iptables mode) carries the host's iptables-nft, its
	# libraries and the xtables modules it loads.
	if [ ! -s "$LAB/images/kube-proxy.dir/manifest.json" ]; then
		rootfs_base "$r" && cp "$LAB/bin/kube-proxy" "$r/usr/local/bin/" &&
			copy_with_libs "$r" /usr/sbin/xtables-nft-multi /usr/lib/x86_64-linux-gnu/xtables/*.so || return 1
		mkdir -p "$r/run"
		for a in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do ln -sf xtables-nft-multi "$r/usr/sbin/$a"; done
		oci_image kube-proxy "$r" '{}'
	fi
	for b in busybox unsigned; do
		[ -s "$LAB/images/$b.dir/manifest.json" ] && continue
		rootfs_base "$r"
		mkdir -p "$r/bin"
		cp /bin/busybox "$r/bin/busybox"
		for a in $(/bin/busybox --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
		echo "lab-$b" >"$r/etc/image-name"
		oci_image "$b" "$r" '{"Cmd": ["sh"]}'
	done
}

build_inputs() {
	build_k8s && build_etcd_coredns && build_tools && build_images
}
