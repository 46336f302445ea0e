#!/usr/bin/env bash
# Builds a kind node image whose container runtime is crivet, offline:
# a Debian bookworm root filesystem (debootstrap from the apt mirror) with
# systemd, runc, the CNI plugins, crivet, crictl, kubeadm/kubelet/kubectl
# and the control-plane images already in crivet's store, imported into
# docker as $KIND_NODE_IMAGE. See README.md beside this file. As root:
#
#   contrib/kind/build-node-image.sh          # or: make kind-image
#
# Inputs (environment):
#   LAB            work directory (default /var/tmp/crivet-kind)
#   K8S_BIN        kubeadm, kubelet, kubectl and the control-plane binaries
#                  (default $LAB/bin, filled from /var/tmp/crivet-cluster/bin
#                  or built by test/kind/run.sh)
#   CP_IMAGES_FROM where the control-plane images come from: a registry
#                  (host:port, repositories <name>:<tag> at its root) or a
#                  directory of <name>.dir image layouts; default: the lab
#                  layouts $LAB/images, then 127.0.0.1:5002
#   LAB_REGISTRY   a plain-HTTP registry the nodes may pull from (optional)
#   STRICT_KEY     a sigstore public key: namespace "strict" then admits only
#                  images of $LAB_REGISTRY signed with it (optional)
#   RUNC           a runc >= 1.2 for crivet's default handler (default: the
#                  repository's bin/runc, `make runc`, v1.5.x); Debian's
#                  1.1.5 stays as the "runc-debian" handler. Without one,
#                  Debian's runc is the default and user namespaces are off
#   KIND_NODE_IMAGE  the image name (default crivet/kind-node:v1.37.2)
#   DOCKER_HOST    the docker daemon to import into
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAB=${LAB:-/var/tmp/crivet-kind}
K8S_VERSION=${K8S_VERSION:-v1.37.2}
KIND_VERSION=${KIND_VERSION:-v0.33.0}
K8S_BIN=${K8S_BIN:-$LAB/bin}
IMAGE=${KIND_NODE_IMAGE:-crivet/kind-node:$K8S_VERSION}
SUITE=bookworm
SEED=${CRIVET_SYSTEMD_ROOTFS:-/var/lib/machines/crivet-systemd} # a head start, copied, never changed
MIRROR=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p; s/^deb \(http[^ ]*\) .*/\1/p' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1 || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
TAGS="containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"
# What a kind node needs besides systemd (kind's base image list, minus
# containerd's helpers), plus runc and the CNI plugins from Debian.
PKGS="systemd systemd-sysv dbus runc containernetworking-plugins conntrack iptables iproute2 ethtool util-linux mount kmod libseccomp2 bash ca-certificates procps jq"

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
for c in debootstrap skopeo jq go docker; do command -v $c >/dev/null || die "$c missing"; done
KIND_SRC=$(go env GOMODCACHE)/sigs.k8s.io/kind@$KIND_VERSION
if [ ! -d "$KIND_SRC/images/base/files" ]; then
	(cd /tmp && go mod download "sigs.k8s.io/kind@$KIND_VERSION") || die "go mod download sigs.k8s.io/kind@$KIND_VERSION"
fi
KIND_FILES=$KIND_SRC/images/base/files
for b in kubeadm kubelet kubectl; do [ -x "$K8S_BIN/$b" ] || die "$K8S_BIN/$b missing (test/kind/run.sh image builds it)"; done
t0=$(date +%s)
mkdir -p "$LAB/logs"

# ---------------------------------------------------------------- base
# $LAB/base: Debian with $PKGS, made once (debootstrap, or a copy of the
# systemd test's root filesystem plus apt-get in a chroot).
BASE=$LAB/base
in_chroot() { # root command...
	local r=$1 rc=0
	shift
	mount -t proc proc "$r/proc"
	mount --bind /dev "$r/dev"
	chroot "$r" "$@" || rc=$?
	umount "$r/dev" "$r/proc"
	return $rc
}
if [ ! -e "$BASE/.complete" ]; then
	rm -rf "$BASE"
	if [ -x "$SEED/usr/sbin/runc" ] && [ -x "$SEED/lib/systemd/systemd" ]; then
		log "base: copy of $SEED"
		cp -a "$SEED" "$BASE"
	else
		log "base: debootstrap $SUITE from $MIRROR"
		debootstrap --variant=minbase --include="${PKGS// /,}" "$SUITE" "$BASE" "$MIRROR" >"$LAB/logs/debootstrap.log" 2>&1 ||
			die "debootstrap failed, see $LAB/logs/debootstrap.log"
	fi
	log "base: apt-get install $PKGS"
	cp /etc/resolv.conf "$BASE/etc/resolv.conf"
	printf '#!/bin/sh\nexit 101\n' >"$BASE/usr/sbin/policy-rc.d" # no daemon starts in the chroot
	chmod 755 "$BASE/usr/sbin/policy-rc.d"
	# shellcheck disable=SC2086
	in_chroot "$BASE" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PKGS && apt-get clean" \
		>"$LAB/logs/apt.log" 2>&1 || die "apt-get in $BASE failed, see $LAB/logs/apt.log"
	rm -f "$BASE/usr/sbin/policy-rc.d"
	rm -rf "$BASE"/var/lib/apt/lists/* "$BASE"/var/cache/apt/*.bin
	touch "$BASE/.complete"
fi

# ---------------------------------------------------------------- node
R=$LAB/rootfs
rm -rf "$R"
cp -a "$BASE" "$R"
rm -f "$R/.complete"
log "node: kind's node files ($KIND_FILES), crivet, Kubernetes $K8S_VERSION"

# kind's systemd-in-a-container layout (its base image's Dockerfile): no
# unit from the distribution starts by default; kind's entrypoint prepares
# cgroups, mounts and DNS, then execs systemd.
install -m 0755 "$KIND_FILES/usr/local/bin/entrypoint" "$R/usr/local/bin/entrypoint"
mkdir -p "$R/kind/bin" "$R/etc/systemd/system/kubelet.service.d" "$R/etc/kubernetes/manifests" "$R/etc/sysctl.d" "$R/etc/default"
install -m 0755 "$KIND_FILES"/kind/bin/* "$R/kind/bin/"
install -m 0644 "$KIND_FILES"/etc/sysctl.d/* "$R/etc/sysctl.d/"
for f in kubelet.service kubelet.slice undo-mount-hacks.service; do install -m 0644 "$KIND_FILES/etc/systemd/system/$f" "$R/etc/systemd/system/"; done
install -m 0644 "$KIND_FILES"/etc/systemd/system/kubelet.service.d/* "$R/etc/systemd/system/kubelet.service.d/"
# kubelet reports crivet's cgroup as the runtime's
echo 'KUBELET_EXTRA_ARGS=--runtime-cgroups=/system.slice/crivet.service' >"$R/etc/default/kubelet"
find "$R/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
rm -f "$R"/lib/systemd/system/multi-user.target.wants/* "$R"/etc/systemd/system/*.wants/* \
	"$R"/lib/systemd/system/local-fs.target.wants/* "$R"/lib/systemd/system/sockets.target.wants/*udev* \
	"$R"/lib/systemd/system/sockets.target.wants/*initctl* "$R"/lib/systemd/system/basic.target.wants/*
grep -q '^ReadKMsg=no' "$R/etc/systemd/journald.conf" || echo "ReadKMsg=no" >>"$R/etc/systemd/journald.conf"
ln -sf /lib/systemd/systemd "$R/sbin/init"
echo "$K8S_VERSION" >"$R/kind/version"
: >"$R/etc/machine-id"
echo kind-node >"$R/etc/hostname"

# Kubernetes: kind's kubelet unit runs /usr/bin/kubelet.
for b in kubeadm kubelet kubectl; do install -m 0755 "$K8S_BIN/$b" "$R/usr/bin/$b"; done

# crivet, built from this tree.
# shellcheck source=test/lib/build.sh
. "$REPO/test/lib/build.sh" # crivet_version: the Makefile's release + the commit
v=$(crivet_version)
(cd "$REPO" &&
	go build -tags "$TAGS" -ldflags "-X main.version=$v" -o "$R/usr/local/bin/crivet" ./cmd/crivet &&
	CGO_ENABLED=0 go build -o "$R/usr/local/bin/crivet-pause" ./cmd/crivet-pause &&
	CGO_ENABLED=0 go build -o "$R/usr/local/bin/crivet-monitor" ./cmd/crivet-monitor) || die "crivet build failed"
if [ -x "$K8S_BIN/crictl" ]; then install -m 0755 "$K8S_BIN/crictl" "$R/usr/local/bin/crictl"; else
	GOBIN=$R/usr/local/bin go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0 || die "crictl install failed"
fi
# A current runc (id-mapped mounts: user namespaces, recursive read-only
# mounts) as the default handler; Debian's as a second RuntimeClass
# handler, so both the default and a named handler are exercised.
RUNC=${RUNC:-$REPO/bin/runc}
if [ -x "$RUNC" ]; then
	install -m 0755 "$RUNC" "$R/usr/local/sbin/runc"
	runtime=/usr/local/sbin/runc
	log "node: default handler $("$RUNC" --version | head -1); runc-debian: $(chroot "$R" /usr/sbin/runc --version | head -1)"
else
	runtime=/usr/sbin/runc
	log "node: no runc >= 1.2 ($RUNC): Debian's runc is the default handler, no user namespaces"
fi
install -m 0644 "$REPO/contrib/systemd/crivet.service" "$R/etc/systemd/system/crivet.service"
mkdir -p "$R/etc/crivet/policies.d" "$R/etc/crivet/keys" "$R/etc/crivet/crivet.toml.d" "$R/etc/containers/registries.d" "$R/etc/cni/net.d" "$R/var/log/crivet"
cat >"$R/etc/crivet/crivet.toml" <<'EOF'
# crivet in a kind node: systemd is PID 1 and kubelet's cgroupDriver is
# systemd (contrib/kind/kind-config.yaml), so crivet's is too.
cgroup_manager = "systemd"
audit_log = "/var/log/crivet/audit.jsonl"
EOF
cat >>"$R/etc/crivet/crivet.toml" <<EOF
runtime = "$runtime"

# RuntimeClass handler runc-debian: Debian's runc, its state apart.
[runtimes.runc-debian]
runtime_path = "/usr/sbin/runc"
EOF
printf 'runtime-endpoint: unix:///run/crivet/crivet.sock\nimage-endpoint: unix:///run/crivet/crivet.sock\ntimeout: 60\n' >"$R/etc/crictl.yaml"
printf 'unqualified-search-registries = ["docker.io"]\n' >"$R/etc/containers/registries.conf"
printf 'default-docker:\n  use-sigstore-attachments: true\n' >"$R/etc/containers/registries.d/default.yaml"
# The global policy: registries as kind does (anything), the control-plane
# images this build imported (docker-archive), nothing else (a
# docker-daemon, dir or OCI file reference is refused).
cat >"$R/etc/containers/policy.json" <<'EOF'
{
  "default": [{"type": "reject"}],
  "transports": {
    "docker": {"": [{"type": "insecureAcceptAnything"}]},
    "docker-archive": {"": [{"type": "insecureAcceptAnything"}]}
  }
}
EOF
if [ -n "${LAB_REGISTRY:-}" ]; then
	mkdir -p "$R/etc/containers/registries.conf.d"
	printf '[[registry]]\nprefix = "%s"\nlocation = "%s"\ninsecure = true\n' "$LAB_REGISTRY" "$LAB_REGISTRY" >"$R/etc/containers/registries.conf.d/50-lab.conf"
fi
if [ -n "${STRICT_KEY:-}" ]; then
	[ -n "${LAB_REGISTRY:-}" ] || die "STRICT_KEY needs LAB_REGISTRY"
	install -m 0644 "$STRICT_KEY" "$R/etc/crivet/keys/strict.pub"
	cat >"$R/etc/crivet/policies.d/strict.json" <<EOF
{
  "default": [{"type": "reject"}],
  "transports": {
    "docker": {
      "$LAB_REGISTRY": [{"type": "sigstoreSigned", "keyPath": "/etc/crivet/keys/strict.pub", "signedIdentity": {"type": "matchRepository"}}]
    }
  }
}
EOF
fi
in_chroot "$R" systemctl enable crivet.service kubelet.service undo-mount-hacks.service >/dev/null 2>&1 || die "systemctl enable"
in_chroot "$R" systemctl mask systemd-binfmt.service >/dev/null 2>&1 || true

# ---------------------------------------------------------------- images
# The control-plane images under the names kubeadm asks for (its default
# imageRepository, registry.k8s.io, as in kind's own node images), as
# docker-archives imported into the node's store with `crivet image import`.
A=$LAB/archives
mkdir -p "$A"
SRC=${CP_IMAGES_FROM:-}
if [ -z "$SRC" ]; then
	if [ -d "$LAB/images/kube-apiserver.dir" ]; then SRC=$LAB/images; else SRC=127.0.0.1:5002; fi
fi
archives=
for ref in $("$K8S_BIN/kubeadm" config images list --kubernetes-version "$K8S_VERSION"); do
	name=${ref##*/}        # kube-apiserver:v1.34.12, coredns:v1.12.1
	short=${name%%:*}
	out=$A/$short.tar
	rm -f "$out"
	if [ -d "$SRC" ]; then from=dir:$SRC/$short.dir; else from=docker://$SRC/$name; fi
	skopeo copy -q --src-tls-verify=false "$from" "docker-archive:$out:$ref" >/dev/null || die "skopeo copy $from -> $ref"
	archives="$archives $out"
done
log "import into the node's store:$(echo "$archives" | sed "s#$A/##g")"
runroot=$(mktemp -d /run/crivet-kind-import.XXXXXX)
# shellcheck disable=SC2086
"$R/usr/local/bin/crivet" --config /dev/null --root "$R/var/lib/crivet" --runroot "$runroot" \
	--signature-policy "$R/etc/containers/policy.json" --signature-policy-dir "$R/etc/crivet/policies.d" \
	--registries-conf "$R/etc/containers/registries.conf" --registries-d "$R/etc/containers/registries.d" \
	image import $archives >"$LAB/logs/import.log" 2>&1 || { cat "$LAB/logs/import.log"; die "crivet image import"; }
"$R/usr/local/bin/crivet" --config /dev/null --root "$R/var/lib/crivet" --runroot "$runroot" image list 2>/dev/null | sed 's/^/  /' >&2 || true
# containers/storage leaves its driver's private bind mount behind
awk -v r="$runroot" -v s="$R/" 'index($5, r)==1 || index($5, s)==1 {print $5}' /proc/self/mountinfo | sort -r | xargs -r umount
rm -rf "$runroot"
# A device node containers/storage may make for quotas must not travel.
rm -f "$R/var/lib/crivet/storage/overlay/backingFsBlockDev"

# ---------------------------------------------------------------- import
log "docker import $IMAGE"
# docker import cannot set STOPSIGNAL: a one-step build on top does.
tar --numeric-owner --xattrs --xattrs-include='*' -C "$R" -c . |
	docker import --message "crivet kind node $K8S_VERSION (crivet $v)" - "$IMAGE-rootfs" >/dev/null || die "docker import"
printf 'FROM %s\nENV container=docker\nSTOPSIGNAL SIGRTMIN+3\nENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]\n' "$IMAGE-rootfs" |
	DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" - >/dev/null || die "docker build $IMAGE"
docker rmi "$IMAGE-rootfs" >/dev/null 2>&1 || true
log "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')) in $(($(date +%s) - t0)) s"
