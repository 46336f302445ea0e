#!/usr/bin/env bash
# A real single-node kubeadm cluster (Kubernetes v1.37.2) whose every pod
# runs on crivet, offline. See README.md beside this file. As root, Debian 12:
#
#   test/cluster/run.sh            # up, check, down
#   KEEP=1 test/cluster/run.sh     # up, check, leave it running
#   test/cluster/run.sh up|check|down
#   RUNTIME=containerd test/cluster/run.sh   # the same cluster on Debian's containerd 1.6
#
# Everything the script owns lives in $LAB (default /var/tmp/crivet-cluster);
# kubeadm's hard-coded paths (/etc/kubernetes, /var/lib/kubelet,
# /var/lib/etcd) are backed up if they exist and restored by `down`.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAB=${LAB:-/var/tmp/crivet-cluster}
RUNTIME=${RUNTIME:-$(cat "$LAB/runtime" 2>/dev/null || echo crivet)} # down follows what up started
K8S_VERSION=v1.37.2
STAGING_VERSION=v0.37.2
# runc for crivet's default handler: the one `make runc` builds (v1.5.x:
# id-mapped mounts, so user namespaces) where it is, else the one on PATH.
# Debian's /usr/bin/runc (1.1.5) is the second handler, "debian".
RUNC=${RUNC:-$REPO/bin/runc}
[ -x "$RUNC" ] || RUNC=$(command -v runc)
# cosign v3 signs the images of the "bundle" namespace (a Sigstore bundle
# as an OCI referrer, its defaults); built once where crivet's tests cache
# it (test/fixtures/cosign.go).
COSIGN_VERSION=v3.1.3
CRI_TOOLS=v1.37.0
REG=127.0.0.1:5002
NODE=crivet-node
BRIDGE=kclu0
POD_CIDR=10.245.0.0/16
NODE_POD_CIDR=10.245.0.0/24 # the first /24 the node IPAM controller hands out
SVC_CIDR=10.96.0.0/12
DNS_IP=10.96.0.10
TAGS="containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"
RUNROOT=/run/crivet-cluster
SOCK=$LAB/crivet.sock
CTRD_SOCK=$LAB/containerd/containerd.sock
HOST_PATHS="/etc/kubernetes /var/lib/kubelet /var/lib/etcd"
# kubelet, crivet and containerd use the same cgroup driver: systemd only
# where systemd is PID 1 (there is nothing to delegate to otherwise).
CGROUP_DRIVER=${CGROUP_DRIVER:-$(if [ "$(cat /proc/1/comm)" = systemd ]; then echo systemd; else echo cgroupfs; fi)}
export KUBECONFIG=/etc/kubernetes/admin.conf
export PATH=$LAB/bin:$PATH
NODE_IP=${NODE_IP:-$(ip -4 route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i+1); exit}' | xargs -r ip -4 -o addr show dev | awk '{sub("/.*", "", $4); print $4; exit}')}

case $RUNTIME in
crivet) CRI_SOCK=$SOCK ;;
containerd) CRI_SOCK=$CTRD_SOCK ;;
*) echo "RUNTIME must be crivet or containerd" >&2; exit 2 ;;
esac
CRICTL() { "$LAB/bin/crictl" --config /dev/null --runtime-endpoint "unix://$CRI_SOCK" --image-endpoint "unix://$CRI_SOCK" --timeout 60s "$@"; }
KC() { "$LAB/bin/kubectl" "$@"; }

RESULTS=$LAB/results-$RUNTIME.txt
# log, die, pass, fail, …: test/lib's libraries for crivet labs
# shellcheck source=test/lib/lab.sh
. "$REPO/test/lib/lab.sh"
# wait_for, pod and event queries, check_logs_exec, check_job, check_scale
# shellcheck source=test/lib/checks.sh
. "$REPO/test/lib/checks.sh"

[ "$(id -u)" = 0 ] || die "run as root"

# ---------------------------------------------------------------- building
# One throwaway module builds every Kubernetes binary: k8s.io/kubernetes at
# $K8S_VERSION with each staging module (the ./staging/src replaces of its
# go.mod) pinned to the published $STAGING_VERSION. CGO off: the same
# binaries go into scratch images.
K8S_BINS="kubeadm kubectl kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy"
build_k8s() {
	local b missing=
	for b in $K8S_BINS; do
		case $b in
		kubeadm) "$LAB/bin/$b" version -o short 2>/dev/null ;;
		kubectl) "$LAB/bin/$b" version --client 2>/dev/null ;;
		*) "$LAB/bin/$b" --version 2>/dev/null ;;
		esac | grep "$K8S_VERSION\$" >/dev/null || missing=1
	done
	[ -z "$missing" ] && return
	log "building $K8S_BINS $K8S_VERSION (20-40 minutes on 2 cores, once)"
	local d=$LAB/kbuild gomod pkgs= minor
	mkdir -p "$d"
	gomod=$(cd "$d" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | jq -r .GoMod) || die "go mod download k8s.io/kubernetes@$K8S_VERSION"
	# go and godebug as kubernetes' own go.mod says (1.37: go 1.26.0, go1.26)
	{
		printf 'module kbuild\n\n%s\n\n%s\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' \
			"$(grep -m1 '^go ' "$gomod")" "$(grep -m1 '^godebug ' "$gomod")" "$K8S_VERSION"
		sed -n "s#^\t\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 $STAGING_VERSION#p" "$gomod"
		printf ')\n'
	} >"$d/go.mod"
	{
		printf '//go:build tools\n\npackage kbuild\n\nimport (\n'
		for b in $K8S_BINS; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$b"; pkgs="$pkgs k8s.io/kubernetes/cmd/$b"; done
		printf ')\n'
	} >"$d/tools.go"
	minor=${K8S_VERSION#v1.}
	minor=${minor%%.*}
	# shellcheck disable=SC2086
	(cd "$d" && nice -n 10 go mod tidy && CGO_ENABLED=0 nice -n 10 go build -tags tools \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean" \
		-o "$LAB/bin/" $pkgs) >"$LAB/logs/k8s-build.log" 2>&1 || die "kubernetes build failed, see $LAB/logs/k8s-build.log"
}

# Versions kubeadm $K8S_VERSION deploys (cmd/kubeadm/app/constants).
kubeadm_const() {
	sed -n "s/^[[:space:]]*$1 = \"\(.*\)\"/\1/p" "$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/cmd/kubeadm/app/constants/constants.go"
}

# etcd: the server module has replace lines of its own (../api, ...), so it
# is built from a module of ours requiring it; CoreDNS installs directly.
build_etcd_coredns() {
	if ! "$LAB/bin/etcd" --version 2>/dev/null | grep "etcd Version: ${ETCD_VERSION%-*}$" >/dev/null; then
		log "building etcd ${ETCD_VERSION%-*}"
		local d=$LAB/ebuild
		mkdir -p "$d"
		printf 'module ebuild\n\ngo 1.25.0\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' "${ETCD_VERSION%-*}" >"$d/go.mod"
		printf '//go:build tools\n\npackage ebuild\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$d/tools.go"
		(cd "$d" && GOFLAGS=-mod=mod nice -n 10 go mod tidy && CGO_ENABLED=0 nice -n 10 go build -ldflags "-s -w" -o "$LAB/bin/etcd" go.etcd.io/etcd/server/v3) \
			>"$LAB/logs/etcd-build.log" 2>&1 || die "etcd build failed, see $LAB/logs/etcd-build.log"
	fi
	if ! "$LAB/bin/coredns" -version 2>/dev/null | grep "CoreDNS-${COREDNS_VERSION#v}$" >/dev/null; then
		log "building CoreDNS $COREDNS_VERSION"
		(cd /tmp && CGO_ENABLED=0 GOBIN=$LAB/bin nice -n 10 go install -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION") \
			>"$LAB/logs/coredns-build.log" 2>&1 || die "CoreDNS build failed, see $LAB/logs/coredns-build.log"
	fi
}

# cosign: "go install" into <GOCACHE>/../crivet-test-tools/cosign-<version>,
# under the lock crivet's test fixtures take for the same directory.
# ~13 minutes from cold caches on 2 cores, once.
COSIGN=
build_cosign() {
	[ "$RUNTIME" = crivet ] || return 0
	local dir
	dir=$(dirname "$(go env GOCACHE)")/crivet-test-tools/cosign-$COSIGN_VERSION
	COSIGN=$dir/cosign
	"$COSIGN" version 2>/dev/null | grep -q "$COSIGN_VERSION" && return
	log "building cosign $COSIGN_VERSION into $dir (about 13 minutes from cold caches)"
	mkdir -p "$dir"
	(cd "$dir" && GOBIN=$dir GOFLAGS= GOWORK=off flock "$dir/.lock" nice -n 10 go install "github.com/sigstore/cosign/v3/cmd/cosign@$COSIGN_VERSION") \
		>"$LAB/logs/cosign-build.log" 2>&1 || die "cosign build failed, see $LAB/logs/cosign-build.log"
	"$COSIGN" version 2>/dev/null | grep -q "$COSIGN_VERSION" || die "$COSIGN is not cosign $COSIGN_VERSION"
}

# cosign_run DIR ARGS...: cosign in DIR with a HOME of its own (no host
# credentials or sigstore caches) and nothing to reach off this machine.
cosign_run() {
	local dir=$1
	shift
	mkdir -p "$dir/home"
	(cd "$dir" && env -i PATH="$PATH" HOME="$dir/home" DOCKER_CONFIG="$dir/home/.docker" TUF_ROOT="$dir/home/.sigstore" \
		COSIGN_PASSWORD=cluster-pass NO_PROXY='*' "$COSIGN" "$@")
}

# cosign_sign KEYDIR REPO:TAG: a key pair, an offline signing config (no
# Fulcio, Rekor or timestamp service) and an empty trusted root (without
# one, cosign sign tries to fetch Sigstore's from its TUF repository) in
# KEYDIR, made once; then `cosign sign` with its v3 defaults: a Sigstore
# bundle stored as an OCI referrer (Debian's registry has no referrers
# API: an index tagged sha256-<digest>).
cosign_sign() {
	local k=$1 ref=$2 digest
	mkdir -p "$k"
	[ -s "$k/cosign.pub" ] || cosign_run "$k" generate-key-pair >>"$LAB/logs/cosign.log" 2>&1 || die "cosign generate-key-pair in $k, see $LAB/logs/cosign.log"
	[ -s "$k/signing-config.json" ] || cosign_run "$k" signing-config create --out "$k/signing-config.json" >>"$LAB/logs/cosign.log" 2>&1 || die "cosign signing-config create, see $LAB/logs/cosign.log"
	[ -s "$k/trusted_root.json" ] || cosign_run "$k" trusted-root create --out "$k/trusted_root.json" >>"$LAB/logs/cosign.log" 2>&1 || die "cosign trusted-root create, see $LAB/logs/cosign.log"
	digest=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$REG/$ref") || die "digest of $ref"
	cosign_run "$k" sign --key "$k/cosign.key" --signing-config "$k/signing-config.json" --trusted-root "$k/trusted_root.json" \
		--allow-insecure-registry --yes "$REG/${ref%:*}@$digest" \
		>>"$LAB/logs/cosign.log" 2>&1 || die "cosign sign $ref, see $LAB/logs/cosign.log"
}


# ---------------------------------------------------------------- images
# rootfs_base DIR: what every image has besides its program.
rootfs_base() {
	rm -rf "$1"
	mkdir -p "$1"/{etc,tmp,root,usr/local/bin}
	chmod 1777 "$1/tmp"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$1/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$1/etc/group"
}

# oci_image NAME ROOTFS CONFIG: a one-layer OCI image in a dir: layout
# ($LAB/images/NAME.dir) from ROOTFS; CONFIG is the image config's "config"
# object (JSON). Rebuilt only when ROOTFS changed.
oci_image() {
	local name=$1 root=$2 config=$3 out=$LAB/images/$1.dir sum
	sum=$( (cd "$root" && find . -printf '%p %m %l\n' | sort && find . -type f -print0 | sort -z | xargs -0 cat; echo "$config") | sha256sum | cut -d' ' -f1)
	if [ -s "$out/manifest.json" ] && [ "$(cat "$out/.source" 2>/dev/null)" = "$sum" ]; then rm -rf "$root"; return; fi
	oci_layout "$root" "$out" "$config" || die "image $name"
	echo "$sum" >"$out/.source"
	rm -rf "$root"
}

# copy_with_libs ROOT FILE...: each FILE at its path under ROOT, with the
# shared libraries ldd lists for it.
copy_with_libs() {
	local root=$1 f l
	shift
	for f in "$@"; do
		for l in "$f" $(ldd "$f" 2>/dev/null | grep -oE '/[^ ]+'); do
			[ -e "$root$l" ] && continue
			mkdir -p "$root$(dirname "$l")" && cp -L "$l" "$root$l" || die "copy $l into $root"
		done
	done
}

build_images() {
	local r=$LAB/images/rootfs b a
	mkdir -p "$LAB/images"
	for b in kube-apiserver kube-controller-manager kube-scheduler; do
		rootfs_base "$r"
		cp "$LAB/bin/$b" "$r/usr/local/bin/"
		oci_image "$b" "$r" '{}'
	done
	rootfs_base "$r"
	cp "$LAB/bin/etcd" "$r/usr/local/bin/"
	mkdir -p "$r/var/lib/etcd"
	oci_image etcd "$r" '{}'
	rootfs_base "$r"
	cp "$LAB/bin/coredns" "$r/coredns"
	oci_image coredns "$r" '{"Entrypoint": ["/coredns"], "ExposedPorts": {"53/tcp": {}, "53/udp": {}}}'
	rootfs_base "$r"
	cp "$LAB/bin/crivet-pause" "$r/pause"
	oci_image pause "$r" '{"Entrypoint": ["/pause"]}'
	# kube-proxy (iptables mode) runs the host's iptables-nft: the multi-call
	# binary, its libraries, and the xtables match/target modules it dlopens.
	rootfs_base "$r"
	cp "$LAB/bin/kube-proxy" "$r/usr/local/bin/"
	copy_with_libs "$r" /usr/sbin/xtables-nft-multi /usr/lib/x86_64-linux-gnu/xtables/*.so
	mkdir -p "$r/run"
	for a in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do ln -sf xtables-nft-multi "$r/usr/sbin/$a"; done
	oci_image kube-proxy "$r" '{}'
	# Workloads: busybox-static with every applet; "unsigned" differs by a marker.
	for b in busybox unsigned; do
		rootfs_base "$r"
		mkdir -p "$r/bin"
		cp /bin/busybox "$r/bin/busybox"
		for a in $(/bin/busybox --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
		echo "lab-$b" >"$r/etc/image-name"
		# uid 1000 belongs to group 5000 in the image: supplementalGroupsPolicy
		# Merge adds it, Strict must not
		echo 'lab:x:1000:1000:lab:/tmp:/bin/sh' >>"$r/etc/passwd"
		echo 'labgroup:x:5000:lab' >>"$r/etc/group"
		oci_image "$b" "$r" '{"Cmd": ["sh"]}'
	done
}

CP_IMAGES=
push_images() {
	local b
	for b in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do push $b "$b:$K8S_VERSION"; done
	push etcd "etcd:$ETCD_VERSION"
	push coredns "coredns:$COREDNS_VERSION"
	push pause "pause:$PAUSE_VERSION"
	CP_IMAGES=$(for b in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do echo "$REG/$b:$K8S_VERSION"; done; echo "$REG/etcd:$ETCD_VERSION $REG/coredns:$COREDNS_VERSION $REG/pause:$PAUSE_VERSION")
	push busybox lab/busybox:1.0
	push unsigned lab/unsigned:1.0
	push busybox lab/signed:1.0
	sigtool_keygen cluster-pass
	# shellcheck disable=SC2086
	sigtool_sign cluster-pass $CP_IMAGES "$REG/lab/signed:1.0"
	[ "$RUNTIME" = crivet ] || return 0
	# The same image twice, each copy signed by cosign v3 with another key:
	# namespace "bundle" trusts only bundle-a's.
	push busybox lab/v3-good:1.0
	push busybox lab/v3-other:1.0
	cosign_sign "$LAB/keys/bundle-a" lab/v3-good:1.0
	cosign_sign "$LAB/keys/bundle-b" lab/v3-other:1.0
	log "cosign $COSIGN_VERSION signed lab/v3-good:1.0 (key bundle-a) and lab/v3-other:1.0 (key bundle-b): $(curl -fs "http://$REG/v2/lab/v3-good/tags/list" | jq -c .tags)"
}

# ---------------------------------------------------------------- host state
save_host_state() {
	[ -s "$LAB/host-state" ] && return # a KEEP=1 run already recorded it
	local p
	mkdir -p "$LAB/backup"
	{
		host_sysctls vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.conf.all.route_localnet
		for p in /var/log/pods /var/log/containers /usr/libexec/kubernetes /run/xtables.lock /etc/cni /opt/cni; do [ -e "$p" ] && echo "existed $p"; done
		for p in /var/log/pods /var/log/containers; do [ -d "$p" ] && ls -A "$p" | sed "s#^#entry $p/#"; done
		for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do [ -d "$c" ] && find "$c" -type d | sed 's/^/cgroup /'; done
		host_chains
	} >"$LAB/host-state"
	# kubeadm's own paths: moved aside, put back by down.
	for p in $HOST_PATHS; do
		if [ -e "$p" ]; then
			awk -v p="$p/" 'index($5, p)==1 {found=1} END {exit !found}' /proc/self/mountinfo && die "$p has mounts: something else uses it"
			mkdir -p "$LAB/backup$(dirname "$p")"
			mv "$p" "$LAB/backup$p" && echo "backup $p" >>"$LAB/host-state"
		fi
	done
}
existed() { grep -qxF "existed $1" "$LAB/host-state"; }
# Pod UIDs of this cluster: kubelet's pod directories, kept before down
# removes /var/lib/kubelet (static pods' UIDs repeat from run to run).
record_pod_uids() { ls /var/lib/kubelet/pods 2>/dev/null >>"$LAB/pod-uids"; }
# my_cgroups: the cgroups of this cluster's pods (cgroupfs names pod<uid>,
# and everything below), deepest first. Only those: other work on this host
# makes pod cgroups of its own under the same kubepods.
my_cgroups() {
	[ -s "$LAB/pod-uids" ] || return 0
	sort -u "$LAB/pod-uids" | while read -r uid; do
		# cgroupfs: pod<uid>; systemd: kubepods-<qos>-pod<uid with _>.slice
		[ -n "$uid" ] && find /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice -depth -type d \( -path "*/pod$uid*" -o -path "*-pod${uid//-/_}.slice*" \) 2>/dev/null
	done
}
# my_chain IPT TABLE CHAIN: a chain this cluster made: KUBE-* (kubelet,
# kube-proxy) that was not there before, or a CNI-* one naming our bridge or
# pod addresses (other CNI users on this host have theirs).
my_chain() {
	local f=$LAB/host-state
	[ -s "$f" ] || f=$LAB/host-state.last
	grep -qxF "chain $1 $2 $3" "$f" 2>/dev/null && return 1
	case $3 in
	KUBE-*) return 0 ;;
	CNI-*) $1 -t $2 -S "$3" 2>/dev/null | grep -qE -- "${NODE_POD_CIDR%.*}\.|$BRIDGE" ;;
	*) return 1 ;;
	esac
}

# ---------------------------------------------------------------- config
write_config() {
	mkdir -p "$LAB"/{etc/policies,etc/registries.d,etc/net.d,keys,registry/data,crivet,cni-data,manifests}
	# Namespace "staging" rolls the strict policy out in warn mode.
	# Default handler on $RUNC; "debian" on Debian's runc with its own root.
	printf 'runtime = "%s"\n\n[signature_policy_modes]\nstaging = "warn"\n' "$RUNC" >"$LAB/etc/crivet.toml"
	[ -x /usr/bin/runc ] && debian_handler_toml >>"$LAB/etc/crivet.toml"
	write_image_config
	cni_bridge_conflist cluster "$BRIDGE" "$NODE_POD_CIDR" ", \"routes\": [{\"dst\": \"0.0.0.0/0\"}], \"dataDir\": \"$LAB/cni-data\"" >"$LAB/etc/net.d/10-cluster.conflist"
	# Signed-only namespaces: the control plane's own (kube-system, whose
	# images are all signed) and "strict".
	local ns
	for ns in kube-system strict staging; do signed_only_policy >"$LAB/etc/policies/$ns.json"; done
	# Namespace "bundle": only cosign v3 bundles by key bundle-a.
	cat >"$LAB/etc/policies/bundle.json" <<EOF
{
  "default": [{"type": "reject"}],
  "transports": {
    "docker": {
      "$REG/lab": [{"type": "sigstoreBundle", "keyPath": "$LAB/keys/bundle-a/cosign.pub"}]
    }
  }
}
EOF
	cat >"$LAB/kubeadm.yaml" <<EOF
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: $NODE_IP
  bindPort: 6443
nodeRegistration:
  name: $NODE
  criSocket: unix://$CRI_SOCK
  imagePullPolicy: IfNotPresent
  ignorePreflightErrors: [$IGNORE_PREFLIGHT]
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: $K8S_VERSION
clusterName: crivet-cluster
imageRepository: $REG
networking:
  podSubnet: $POD_CIDR
  serviceSubnet: $SVC_CIDR
  dnsDomain: cluster.local
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: $CGROUP_DRIVER
failCgroupV1: false
failSwapOn: false
clusterDNS: [$DNS_IP]
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "2%"
  imagefs.available: "2%"
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $POD_CIDR
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
	write_manifests
}

# Preflight checks that cannot hold on this host (see README.md): on a
# cgroup v1 host, kubeadm 1.35+ makes SystemVerification an error for a
# kubelet >= 1.35 (KEP-5573) and says to set failCgroupV1: false (done) and
# skip that check.
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
	IGNORE_PREFLIGHT=${IGNORE_PREFLIGHT:-}
else
	IGNORE_PREFLIGHT=${IGNORE_PREFLIGHT:-SystemVerification}
fi

# ---------------------------------------------------------------- daemons
start_crivet() { crivet_start --audit-log "$LAB/logs/audit.jsonl" --cgroup-manager "$CGROUP_DRIVER"; }

start_runtime() {
	case $RUNTIME in
	crivet) start_crivet ;;
	containerd) start_containerd ;;
	esac
	log "runtime: $(CRICTL version | awk '/RuntimeName|RuntimeVersion/{printf "%s ", $2}')on $CRI_SOCK"
}

# kubelet as kubeadm's systemd drop-in would start it: the flags kubeadm
# wrote, its config and kubeconfigs.
start_kubelet() {
	local KUBELET_KUBEADM_ARGS=
	# shellcheck disable=SC1091
	. /var/lib/kubelet/kubeadm-flags.env
	# shellcheck disable=SC2086
	setsid "$LAB/bin/kubelet" --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
		--kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml \
		$KUBELET_KUBEADM_ARGS --v=2 >>"$LAB/logs/kubelet.log" 2>&1 9>&- &
	echo $! >"$LAB/kubelet.pid"
}

# ---------------------------------------------------------------- up
# build: every binary and image layout the cluster needs, into $LAB (also
# what test/kind/run.sh takes for its node image); runs nothing.
build() {
	mkdir -p "$LAB"/{bin,logs,images}
	ETCD_VERSION=$(kubeadm_const DefaultEtcdVersion)
	COREDNS_VERSION=$(kubeadm_const CoreDNSVersion)
	PAUSE_VERSION=$(kubeadm_const PauseVersion)
	build_k8s
	build_etcd_coredns
	build_crivet
	build_crictl
	build_sigtool
	build_cosign
	build_images
}

up() {
	for c in docker-registry skopeo runc jq curl go iptables bc; do command -v $c >/dev/null || die "$c missing (make deps installs it)"; done
	[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/portmap ] || die "containernetworking-plugins missing"
	file -L /bin/busybox | grep -q 'statically linked' || die "/bin/busybox is not static (install busybox-static)"
	[ -s "$LAB/kubelet.pid" ] && kill -0 "$(cat "$LAB/kubelet.pid")" 2>/dev/null && die "a cluster is still up: $0 down"
	for p in 2379 2380 2381 6443 10248 10249 10250 10256 10257 10259; do port_free $p || die "port $p in use (another kubelet or cluster?)"; done
	log "cgroup driver $CGROUP_DRIVER for kubelet and $RUNTIME (PID 1 is $(cat /proc/1/comm)); kubelet is started by this script, not by an init system"
	mkdir -p "$LAB"/{bin,logs,images}
	: >"$RESULTS"
	for f in crivet.log kubelet.log registry.log kubeadm.log containerd.log audit.jsonl; do [ -s "$LAB/logs/$f" ] && mv "$LAB/logs/$f" "$LAB/logs/$f.old"; done

	build
	write_config
	save_host_state

	registry_start
	push_images
	echo "$RUNTIME" >"$LAB/runtime"
	start_runtime

	log "kubeadm init (node $NODE, $NODE_IP, runtime $RUNTIME)"
	T0=$(now)
	echo "$T0" >"$LAB/t0"
	setsid "$LAB/bin/kubeadm" init --config "$LAB/kubeadm.yaml" --v=1 >"$LAB/logs/kubeadm.log" 2>&1 9>&- &
	local kpid=$!
	# kubeadm's kubelet-start phase would start the kubelet service; with
	# no init system this script does it once the phase wrote its files.
	for _ in $(seq 600); do
		grep -q '^\[kubelet-start\] Starting the kubelet' "$LAB/logs/kubeadm.log" && break
		kill -0 $kpid 2>/dev/null || break
		sleep 0.2
	done
	grep -q '^\[kubelet-start\] Starting the kubelet' "$LAB/logs/kubeadm.log" || { tail -30 "$LAB/logs/kubeadm.log"; die "kubeadm did not reach kubelet-start, see $LAB/logs/kubeadm.log"; }
	start_kubelet
	log "kubelet started ($(since "$T0") s after kubeadm init)"
	(
		# node-ready clock, in the background while kubeadm goes on
		for _ in $(seq 1200); do
			if [ "$(KC get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; then
				since "$T0" >"$LAB/node-ready-$RUNTIME"
				exit 0
			fi
			sleep 0.5
		done
	) 9>&- &
	local wpid=$!
	echo $wpid >"$LAB/clock.pid"
	wait $kpid
	local rc=$?
	tail -n 25 "$LAB/logs/kubeadm.log" | sed 's/^/  kubeadm: /'
	[ $rc = 0 ] || die "kubeadm init failed ($rc), see $LAB/logs/kubeadm.log and $LAB/logs/kubelet.log"
	echo "$(since "$T0")" >"$LAB/kubeadm-done-$RUNTIME"
	pass "kubeadm init finished in $(cat "$LAB/kubeadm-done-$RUNTIME") s"
	# kubelet-finalize pointed kubelet.conf at the rotated client
	# certificate and asked the init system to restart kubelet: do it.
	if grep -q '^\[kubelet-finalize\] Updating' "$LAB/logs/kubeadm.log"; then
		stop_pid "$LAB/kubelet.pid" 30
		start_kubelet
		log "kubelet restarted after kubelet-finalize"
	fi
	KC taint node "$NODE" node-role.kubernetes.io/control-plane:NoSchedule- >/dev/null || fail "removing the control-plane taint"
	wait $wpid
	rm -f "$LAB/clock.pid"
	if [ -s "$LAB/node-ready-$RUNTIME" ]; then pass "node $NODE Ready $(cat "$LAB/node-ready-$RUNTIME") s after kubeadm init started"; else fail "node $NODE not Ready"; fi
	local rv cd
	cd=$(grep -o 'received from the CRI runtime" cgroupDriver="[a-z]*"' "$LAB/logs/kubelet.log" | tail -1 | sed 's/.*cgroupDriver="\(.*\)"/\1/')
	if [ "$cd" = "$CGROUP_DRIVER" ]; then pass "kubelet took cgroup driver $cd from the runtime's RuntimeConfig"
	elif grep -q 'Falling back to using cgroupDriver from kubelet config' "$LAB/logs/kubelet.log"; then
		note "$RUNTIME has no RuntimeConfig: kubelet uses cgroupDriver $CGROUP_DRIVER from its config"
	else fail "kubelet's cgroup driver from the runtime: '${cd:-none logged}', want $CGROUP_DRIVER"; fi
	rv=$(KC get node "$NODE" -o jsonpath='{.status.nodeInfo.containerRuntimeVersion}')
	case $rv in
	*://Unknown) gap "node shows containerRuntimeVersion $rv: kubelet parses the CRI RuntimeVersion ($(CRICTL version | awk '/RuntimeVersion/{print $2}')) as semver" ;;
	*) pass "node containerRuntimeVersion $rv" ;;
	esac
}

# ---------------------------------------------------------------- checks
write_manifests() {
	local m=$LAB/manifests
	web_manifest >"$m/web.yaml"
	{
		client_pod
		echo ---
		POD_CONTAINER=talker pod talker default "$REG/lab/busybox:1.0" '["sh", "-c", "while read line; do echo \"got:$line\"; done; sleep 3600"]' "" "    stdin: true"
	} >"$m/client.yaml"
	job_manifest "$DNS_IP" >"$m/job.yaml"
	namespaces strict loose staging >"$m/namespaces.yaml"
	sleep_pod strict-pull strict "$REG/lab/unsigned:1.0" >"$m/strict-pull.yaml"
	sleep_pod loose-pull loose "$REG/lab/unsigned:1.0" >"$m/loose-pull.yaml"
	sleep_pod strict-reuse strict "$REG/lab/unsigned:1.0" >"$m/strict-reuse.yaml"
	sleep_pod strict-signed strict "$REG/lab/signed:1.0" >"$m/strict-signed.yaml"
	sleep_pod staging-unsigned staging "$REG/lab/unsigned:1.0" >"$m/staging-unsigned.yaml"
	sleep_pod system-unsigned kube-system "$REG/lab/busybox:1.0" >"$m/system-unsigned.yaml"
	write_feature_manifests
	scale_manifest >"$m/scale.yaml"
}

# Pods that kubelet admits only where the runtime's Status advertises the
# feature (per handler: user namespaces, recursive read-only mounts; per
# runtime: supplementalGroupsPolicy), a RuntimeClass on crivet's second
# handler, and the "bundle" namespace's two cosign-signed copies.
write_feature_manifests() {
	local m=$LAB/manifests bb=$REG/lab/busybox:1.0 sleep='["sh", "-c", "exec sleep 3600"]'
	local sgp='  securityContext: {runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [4000], supplementalGroupsPolicy:'
	{
		namespaces features
		echo ---
		runtime_class debian
		echo ---
		pod userns features "$bb" '["sh", "-c", "touch /scratch/written-in-userns && exec sleep 3600"]' \
			$'  hostUsers: false\n  volumes: [{name: scratch, emptyDir: {}}]' "    volumeMounts: [{name: scratch, mountPath: /scratch}]"
		echo ---
		pod rro features "$bb" "$sleep" "  volumes: [{name: tree, hostPath: {path: $LAB/rro-tree, type: Directory}}]" \
			$'    volumeMounts:\n    - {name: tree, mountPath: /rro, readOnly: true, recursiveReadOnly: Enabled}\n    - {name: tree, mountPath: /ro, readOnly: true}'
		echo ---
		pod sgp-strict features "$bb" "$sleep" "$sgp Strict}"
		echo ---
		pod sgp-merge features "$bb" "$sleep" "$sgp Merge}"
		echo ---
		pod on-debian features "$bb" "$sleep" "  runtimeClassName: debian"
	} >"$m/features.yaml"
	{
		namespaces bundle
		echo ---
		sleep_pod v3-other bundle "$REG/lab/v3-other:1.0"
		echo ---
		sleep_pod v3-good bundle "$REG/lab/v3-good:1.0"
	} >"$m/bundle.yaml"
}

check_control_plane() {
	log "check: control plane and CoreDNS"
	if wait_for 180 coredns_ready; then
		since "$(cat "$LAB/t0")" >"$LAB/dns-ready-$RUNTIME"
		pass "CoreDNS Running and Ready ($(cat "$LAB/dns-ready-$RUNTIME") s after kubeadm init started): $(KC get pods -n kube-system -l k8s-app=kube-dns --no-headers | awk '{print $1, $3}' | tr '\n' ' ')"
	else fail "CoreDNS not Ready: $(KC get pods -n kube-system -l k8s-app=kube-dns --no-headers 2>&1 | tr '\n' ' ')"; fi
	if wait_for 120 kube_system_running; then
		pass "kube-system: every pod Running: $(KC get pods -n kube-system --no-headers | awk '{print $1}' | sed "s/-$NODE\$//" | tr '\n' ' ')"
	else fail "kube-system pods not Running: $(KC get pods -n kube-system --no-headers | grep -v ' Running ' | tr '\n' ';')"; fi
}

# Every container the API server knows of is one the runtime reports.
check_all_on_runtime() {
	local api rt missing
	api=$(KC get pods -A -o jsonpath='{range .items[*]}{range .status.containerStatuses[*]}{.containerID}{"\n"}{end}{end}' | sed -n 's#^[a-z]*://##p' | sort -u)
	rt=$(CRICTL ps -a -q --no-trunc | sort -u)
	missing=$(comm -23 <(echo "$api") <(echo "$rt"))
	local scheme
	scheme=$(KC get pods -A -o jsonpath='{range .items[*]}{range .status.containerStatuses[*]}{.containerID}{"\n"}{end}{end}' | sed -n 's#://.*##p' | sort -u | tr '\n' ' ')
	if [ -n "$api" ] && [ -z "$missing" ]; then
		pass "$1: all $(echo "$api" | wc -l) containers of $(KC get pods -A --no-headers | wc -l) pods (scheme: ${scheme% }) are in crictl ps -a on $CRI_SOCK"
	else fail "$1: containers not on $CRI_SOCK: $(echo "$missing" | tr '\n' ' ')"; fi
}

check_service() {
	log "check: Deployment web (4 replicas) behind Service web, reached from a pod through CoreDNS and kube-proxy"
	KC apply -f "$LAB/manifests/web.yaml" -f "$LAB/manifests/client.yaml" >/dev/null || { fail "apply web/client"; return; }
	if wait_for 120 deploy_ready web 4; then pass "Deployment web: 4/4 Ready"; else fail "Deployment web: $(ready_replicas web)/4 Ready"; fi
	wait_for 60 pod_ready default client || fail "client pod not Ready"
	local out names
	out=$(KC exec client -- nslookup web.default.svc.cluster.local 2>&1)
	if echo "$out" | grep -q "$(KC get svc web -o jsonpath='{.spec.clusterIP}')"; then
		pass "CoreDNS resolves web.default.svc.cluster.local to the ClusterIP from a pod: $(echo "$out" | grep -A1 'Name:.*web' | tail -1 | xargs)"
	else fail "nslookup from a pod: $(echo "$out" | tr '\n' ' ')"; fi
	# kube-proxy programs endpoints as they become ready, rate-limited: wait
	# for the EndpointSlice to list all four, then retry a few times.
	wait_for 30 sh -c "[ \$($LAB/bin/kubectl get endpointslices -l kubernetes.io/service-name=web -o json | jq '[.items[].endpoints[] | select(.conditions.ready)] | length') = 4 ]"
	for _ in 1 2 3 4 5; do
		names=$(KC exec client -- sh -c 'for i in $(seq 24); do wget -qO- http://web/index.html; done' 2>&1 | sort | uniq -c | xargs)
		[ "$(echo "$names" | grep -o ' web-' | wc -l)" -ge 2 ] && break
		sleep 2
	done
	if [ "$(echo "$names" | grep -o ' web-' | wc -l)" -ge 2 ]; then
		pass "Service web (ClusterIP, kube-proxy iptables) balanced 24 requests over pods: $names"
	else fail "Service web from a pod: $names"; fi
}

check_kubectl_streams() {
	log "check: kubectl logs / exec / port-forward / attach"
	check_logs_exec
	local out pod
	pod=$(KC get pods -l app=web -o jsonpath='{.items[0].metadata.name}')
	"$LAB/bin/kubectl" port-forward "pod/$pod" 18092:8080 >"$LAB/logs/port-forward.log" 2>&1 9>&- &
	local pf=$!
	out=
	for _ in $(seq 20); do out=$(curl -fs -m 3 http://127.0.0.1:18092/index.html) && break; sleep 0.5; done
	kill $pf 2>/dev/null
	wait $pf 2>/dev/null
	if [ "$out" = "$pod" ]; then pass "kubectl port-forward 18092 -> $pod:8080 answered '$out'"; else fail "kubectl port-forward: '$out' $(tr '\n' ' ' <"$LAB/logs/port-forward.log")"; fi
	wait_for 60 pod_ready default talker || fail "talker pod not Ready"
	local t0
	t0=$(now)
	out=$( (echo attach-line-1; sleep 2) | timeout 10 "$LAB/bin/kubectl" attach -i talker -c talker 2>&1)
	local took
	took=$(since "$t0")
	if echo "$out" | grep -q 'got:attach-line-1'; then
		pass "kubectl attach -i: stdin reached the container and its answer came back ($(echo "$out" | grep got: | head -1))"
		# containerd ends the session when the client's stdin ends (for a
		# container without stdinOnce); kubectl then returns.
		if [ "$(echo "$took > 8" | bc)" = 1 ]; then
			gap "kubectl attach -i with piped stdin did not return when stdin ended at 2 s (killed by timeout at $took s): the runtime keeps the attach session until the container exits"
		fi
	else fail "kubectl attach -i: $(echo "$out" | tr '\n' ' ')"; fi
}

# crivet restarted under a running cluster: containers (control plane
# included) outlive the daemon through their monitors, and kubelet sees the
# same containers afterwards.
check_runtime_restart() {
	[ "$RUNTIME" = crivet ] || return 0
	log "check: crivet restart with the cluster running"
	local q='[.items[] | {n: .metadata.name, c: [.status.containerStatuses[]? | .containerID, .restartCount]}] | sort_by(.n)'
	local before after
	before=$(KC get pods -A -o json | jq -c "$q")
	stop_pid "$LAB/crivet/pid" 30
	start_crivet
	sleep 20
	after=$(KC get pods -A -o json | jq -c "$q")
	if [ "$before" = "$after" ] && [ "$(KC get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; then
		pass "crivet restart: node Ready, all $(echo "$before" | jq length) pods keep their containers, no restarts"
	else fail "crivet restart: before $before after $after"; fi
}

check_signatures() {
	[ "$RUNTIME" = crivet ] || { note "signature cases skipped: namespace policies are crivet's"; return; }
	log "check: namespace strict (sigstore-signed images only)"
	KC apply -f "$LAB/manifests/namespaces.yaml" >/dev/null
	KC apply -f "$LAB/manifests/strict-pull.yaml" >/dev/null
	if wait_for 90 event_has strict strict-pull SignatureValidationFailed; then
		wait_for 30 has_reason strict strict-pull "ErrImagePull ImagePullBackOff SignatureValidationFailed"
		pass "strict/strict-pull (unsigned, not on the node): waiting reason $(waiting_reason strict strict-pull); events: $(events_of strict strict-pull | grep -E 'Failed|BackOff' | cut -c1-230 | sort -u | tr '\n' '|')"
	else fail "strict/strict-pull: reason $(waiting_reason strict strict-pull), events: $(events_of strict strict-pull | tr '\n' '|')"; fi
	if CRICTL images -q "$REG/lab/unsigned:1.0" 2>/dev/null | grep -q .; then fail "rejected image is on the node"; else pass "rejected image not stored"; fi
	log "check: the same image pulled by a pod in namespace loose, then used in strict"
	KC apply -f "$LAB/manifests/loose-pull.yaml" >/dev/null
	if wait_for 90 pod_ready loose loose-pull; then pass "loose/loose-pull Running (global policy)"; else fail "loose/loose-pull: $(waiting_reason loose loose-pull)"; fi
	KC apply -f "$LAB/manifests/strict-reuse.yaml" >/dev/null
	if wait_for 90 has_reason strict strict-reuse CreateContainerError && wait_for 30 event_has strict strict-reuse SignatureValidationFailed; then
		pass "strict/strict-reuse (image already on the node): CreateContainerError; events: $(events_of strict strict-reuse | grep -E 'Failed' | cut -c1-230 | sort -u | tr '\n' '|')"
	else fail "strict/strict-reuse: reason $(waiting_reason strict strict-reuse), events: $(events_of strict strict-reuse | tr '\n' '|')"; fi
	KC apply -f "$LAB/manifests/strict-signed.yaml" >/dev/null
	if wait_for 90 pod_ready strict strict-signed; then pass "strict/strict-signed (sigstore-signed image) Running"; else fail "strict/strict-signed: $(waiting_reason strict strict-signed) $(events_of strict strict-signed | tail -2 | tr '\n' '|')"; fi
	# staging has strict's policy in warn mode: the unsigned image runs, the
	# pod's events are those of any pod, and crivet's audit log says warned.
	KC apply -f "$LAB/manifests/staging-unsigned.yaml" >/dev/null
	local warned
	if wait_for 90 pod_ready staging staging-unsigned; then
		warned=$(jq -r 'select(.namespace=="staging" and .outcome=="warned") | .stage' "$LAB/logs/audit.jsonl" 2>/dev/null | sort -u | xargs)
		if [ "$warned" = "create" ] || [ "$warned" = "create pull" ]; then
			pass "staging (strict policy, warn mode): unsigned image Running; events: $(events_of staging staging-unsigned | awk '{print $1}' | sort -u | xargs); audit outcome warned at: $warned"
		else fail "staging: Running but audit has no warned decision (got '$warned')"; fi
		if event_has staging staging-unsigned SignatureValidationFailed; then fail "staging: a SignatureValidationFailed event in warn mode"; fi
	else fail "staging/staging-unsigned (warn mode): $(waiting_reason staging staging-unsigned) $(events_of staging staging-unsigned | tail -2 | tr '\n' '|')"; fi
	KC delete ns strict loose staging --wait=false >/dev/null
	# kube-system requires signatures too: each control-plane container was
	# admitted at create under sigstoreSigned (the images were pulled by
	# kubeadm's preflight, outside any namespace, under the global policy).
	local want got
	want="coredns etcd kube-apiserver kube-controller-manager kube-proxy kube-scheduler"
	got=$(jq -r 'select(.stage=="create" and .namespace=="kube-system" and .outcome=="allowed" and ((.requirements // []) | index("sigstoreSigned"))) | .reference' "$LAB/logs/audit.jsonl" 2>/dev/null |
		sed 's#.*/##; s#:.*##' | sort -u | xargs)
	if [ "$got" = "$want" ]; then pass "kube-system policy (sigstoreSigned): every control-plane container admitted on its signature at create ($got)"; else fail "kube-system signed admissions: got '$got', want '$want'"; fi
	KC apply -f "$LAB/manifests/system-unsigned.yaml" >/dev/null
	if wait_for 90 has_reason kube-system system-unsigned CreateContainerError && wait_for 30 event_has kube-system system-unsigned SignatureValidationFailed; then
		pass "kube-system/system-unsigned (unsigned busybox, on the node): CreateContainerError, $(events_of kube-system system-unsigned | grep -o 'SignatureValidationFailed:.*' | head -1 | cut -c1-120)"
	else fail "kube-system/system-unsigned: reason $(waiting_reason kube-system system-unsigned)"; fi
	KC delete -f "$LAB/manifests/system-unsigned.yaml" --wait=false >/dev/null
}

# cid NAMESPACE POD: the container ID (no scheme) of the pod's first container.
cid_of() { KC get pod -n "$1" "$2" -o jsonpath='{.status.containerStatuses[0].containerID}' 2>/dev/null | sed 's#^[a-z]*://##'; }

check_features() {
	[ "$RUNTIME" = crivet ] || { note "feature pods skipped: containerd 1.6 advertises none of the features"; return; }
	log "check: pods that need runtime features (hostUsers: false, recursiveReadOnly, supplementalGroupsPolicy: Strict) and a RuntimeClass"
	note "Status: $(CRICTL info 2>/dev/null | jq -c '{features, runtimeHandlers}')"
	# a submount in the volume: recursive read-only must reach it
	mkdir -p "$LAB/rro-tree/sub"
	mountpoint -q "$LAB/rro-tree/sub" || mount -t tmpfs -o size=1m rro-sub "$LAB/rro-tree/sub" || fail "tmpfs under $LAB/rro-tree"
	KC apply -f "$LAB/manifests/features.yaml" >/dev/null || { fail "apply features.yaml"; return; }
	local p out cid pid huid
	for p in userns rro sgp-strict sgp-merge on-debian; do
		wait_for 90 pod_ready features $p || fail "features/$p not Ready: phase $(pod_phase features $p), reason $(waiting_reason features $p) $(KC get pod -n features $p -o jsonpath='{.status.reason} {.status.message} {.status.containerStatuses[0].state.waiting.message}' 2>/dev/null); events: $(events_of features $p | tail -3 | tr '\n' '|')"
	done
	# hostUsers: false: root in the pod, an unprivileged uid on the host,
	# the emptyDir (id-mapped) writable
	if pod_ready features userns; then
		out=$(KC exec -n features userns -- cat /proc/self/uid_map 2>&1 | xargs)
		cid=$(cid_of features userns)
		pid=$("$RUNC" --root "$RUNROOT/runc" state "$cid" 2>/dev/null | jq -r .pid)
		huid=$(awk '/^Uid:/ {print $2}' /proc/"$pid"/status 2>/dev/null)
		if [ "${out%% *}" = 0 ] && [ "$(echo "$out" | awk '{print $2}')" != 0 ] && [ -n "$huid" ] && [ "$huid" != 0 ] &&
			KC exec -n features userns -- ls /scratch/written-in-userns >/dev/null 2>&1; then
			pass "features/userns (hostUsers: false) Running: uid_map '$out', its process is uid $huid on the host, emptyDir writable"
		else fail "features/userns: uid_map '$out', host uid '${huid:-?}', $(KC exec -n features userns -- ls -ln /scratch 2>&1 | tr '\n' ' ')"; fi
	fi
	# recursiveReadOnly: Enabled: the submount is read-only too; the plain
	# read-only mount of the same volume leaves it writable
	if pod_ready features rro; then
		local rro ro st
		rro=$(KC exec -n features rro -- touch /rro/sub/x 2>&1)
		ro=$(KC exec -n features rro -- sh -c 'touch /ro/sub/y && echo writable' 2>&1)
		st=$(KC get pod -n features rro -o jsonpath='{range .status.containerStatuses[0].volumeMounts[*]}{.mountPath}={.recursiveReadOnly} {end}')
		if echo "$rro" | grep -q 'Read-only file system' && [ "$ro" = writable ]; then
			pass "features/rro Running: /rro/sub (recursiveReadOnly: Enabled) refuses writes ('$(echo "$rro" | head -1)'), /ro/sub (readOnly only) is writable; status volumeMounts: $st"
		else fail "features/rro: write to /rro/sub: '$rro'; to /ro/sub: '$ro'; status: $st"; fi
	fi
	# supplementalGroupsPolicy: the image's /etc/group puts uid 1000 in 5000
	if pod_ready features sgp-strict && pod_ready features sgp-merge; then
		local strict merge user
		strict=$(KC exec -n features sgp-strict -- id -G 2>&1 | xargs)
		merge=$(KC exec -n features sgp-merge -- id -G 2>&1 | xargs)
		user=$(KC get pod -n features sgp-strict -o jsonpath='{.status.containerStatuses[0].user}')
		if [ "$strict" = "3000 4000" ] && echo " $merge " | grep -q ' 5000 '; then
			pass "features/sgp-strict (supplementalGroupsPolicy: Strict) Running: groups '$strict' (Merge: '$merge'); status user $user"
		else fail "features/sgp-strict: groups '$strict', want '3000 4000'; Merge: '$merge'"; fi
	fi
	# RuntimeClass debian: the sandbox is on handler debian, its container in
	# that handler's runc root
	if pod_ready features on-debian; then
		local h
		cid=$(cid_of features on-debian)
		h=$(CRICTL inspectp "$(CRICTL pods -q --name '^on-debian$' --namespace features | head -1)" 2>/dev/null | jq -r '.status.runtimeHandler')
		if [ "$h" = debian ] && /usr/bin/runc --root "$RUNROOT/runc-debian" list -q 2>/dev/null | grep -qx "$cid" &&
			! "$RUNC" --root "$RUNROOT/runc" list -q 2>/dev/null | grep -qx "$cid"; then
			pass "features/on-debian (RuntimeClass debian) Running on handler $h: its container is in $RUNROOT/runc-debian ($(/usr/bin/runc --version | head -1))"
		else fail "features/on-debian: sandbox handler '$h', container $cid in runc-debian: $(/usr/bin/runc --root "$RUNROOT/runc-debian" list -q 2>&1 | tr '\n' ' ')"; fi
	fi
	# gone before the next check counts the API server's containers
	# against the runtime's (a terminating pod's container is in one only)
	KC delete ns features --timeout=120s >/dev/null || fail "namespace features not deleted in 120 s"
	KC delete runtimeclass debian >/dev/null
}

# Issue 17: a namespace that admits only cosign v3 bundles by one key. The
# same image, copied to another repository and signed there by another key,
# is refused; kubelet shows SignatureValidationFailed.
check_bundles() {
	[ "$RUNTIME" = crivet ] || return 0
	log "check: namespace bundle (sigstoreBundle, cosign $COSIGN_VERSION key bundle-a)"
	KC apply -f "$LAB/manifests/bundle.yaml" >/dev/null || { fail "apply bundle.yaml"; return; }
	if wait_for 90 event_has bundle v3-other SignatureValidationFailed; then
		wait_for 30 has_reason bundle v3-other "ErrImagePull ImagePullBackOff SignatureValidationFailed CreateContainerError"
		pass "bundle/v3-other (same image, cosign v3 bundle by key bundle-b) refused: waiting reason $(waiting_reason bundle v3-other); events: $(events_of bundle v3-other | grep -E 'Failed' | cut -c1-260 | sort -u | tr '\n' '|')"
	else fail "bundle/v3-other: reason $(waiting_reason bundle v3-other), events: $(events_of bundle v3-other | tr '\n' '|')"; fi
	if wait_for 90 pod_ready bundle v3-good; then
		local audit
		audit=$(jq -c 'select(.namespace=="bundle" and (.reference|test("v3-good"))) | {stage, outcome, requirements}' "$LAB/logs/audit.jsonl" 2>/dev/null | sort -u | tr '\n' ' ')
		pass "bundle/v3-good (cosign v3 bundle by key bundle-a) Running; audit: $audit"
		case $audit in *sigstoreBundle*) ;; *) gap "the audit log's requirements for bundle/v3-good do not name sigstoreBundle, which admitted it: $audit" ;; esac
	else fail "bundle/v3-good: reason $(waiting_reason bundle v3-good) $(events_of bundle v3-good | tail -3 | tr '\n' '|')"; fi
	KC delete ns bundle --timeout=120s >/dev/null || fail "namespace bundle not deleted in 120 s"
}

check() {
	[ -s "$LAB/t0" ] || die "no cluster up: $0 up"
	check_control_plane
	check_all_on_runtime "control plane"
	check_service
	check_kubectl_streams
	check_job
	check_runtime_restart
	check_signatures
	check_bundles
	check_features
	check_scale "$LAB/scale-ready-$RUNTIME"
	check_all_on_runtime "end of checks"
	echo
	log "node Ready: $(cat "$LAB/node-ready-$RUNTIME" 2>/dev/null || echo -) s after kubeadm init; kubeadm init: $(cat "$LAB/kubeadm-done-$RUNTIME" 2>/dev/null || echo -) s; CoreDNS Ready: $(cat "$LAB/dns-ready-$RUNTIME" 2>/dev/null || echo -) s; 30 pods Ready: $(cat "$LAB/scale-ready-$RUNTIME" 2>/dev/null || echo -) s ($RUNTIME)"
	# one line per run, for side-by-side tables
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$RUNTIME" "$(cat "$LAB/node-ready-$RUNTIME" 2>/dev/null)" "$(cat "$LAB/kubeadm-done-$RUNTIME" 2>/dev/null)" \
		"$(cat "$LAB/dns-ready-$RUNTIME" 2>/dev/null)" "$(cat "$LAB/scale-ready-$RUNTIME" 2>/dev/null)" "$(grep -c '^FAIL' "$RESULTS")" >>"$LAB/timings.tsv"
	results_summary
}

# ---------------------------------------------------------------- down
down() {
	log "down"
	# No host-state: this lab never got past up's checks (a port in use
	# means another kubelet or cluster owns /var/lib/kubelet, the pod
	# cgroups and kubelet's mounts), so only what its pid files name is
	# stopped. Everything below acts on the node's kubelet paths.
	if [ ! -s "$LAB/host-state" ]; then
		stop_pid "$LAB/kubelet.pid" 30
		stop_pid "$LAB/crivet/pid" 30
		stop_pid "$LAB/registry/pid" 10
		log "down: no cluster of $LAB was up ($LAB/host-state missing): nothing else to undo"
		return 0
	fi
	record_pod_uids
	stop_pid "$LAB/clock.pid" 1
	stop_pid "$LAB/kubelet.pid" 30
	if [ -S "$CRI_SOCK" ]; then
		{
			log "down: crictl rmp --force --all"
			CRICTL rmp --force --all 2>&1
			CRICTL rm --force --all 2>&1
			CRICTL ps -a 2>&1 | tail -n +2 | sed 's/^/still listed: /'
		} >>"$LAB/logs/down.log"
	fi
	stop_pid "$LAB/crivet/pid" 30
	stop_containerd
	crivet_kill_leftovers
	local p
	for p in $(ls "$RUNROOT/runc-debian" 2>/dev/null); do log "leftover runc container $p (handler debian)"; /usr/bin/runc --root "$RUNROOT/runc-debian" delete -f "$p" 2>/dev/null; done
	# Any process still in one of this cluster's pod cgroups is a container
	# process the runtime lost: named in the log, then killed.
	local c
	for c in $(my_cgroups | grep '^/sys/fs/cgroup/memory/'); do
		for p in $(cat "$c/cgroup.procs" 2>/dev/null); do
			log "down: pid $p ($(cat /proc/$p/comm 2>/dev/null)) still in $c after the runtime stopped; killing it" | tee -a "$LAB/logs/down.log"
			kill -KILL "$p"
		done
	done
	sleep 1
	# kubelet bind-mounts, pod volumes, crivet's pins and rootfs mounts
	awk -v r="$RUNROOT" -v l="$LAB/" '$5 ~ "^"r || index($5, l)==1 || $5 ~ "^/var/lib/kubelet" || $5 ~ "^/run/containerd-cluster" {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
	stop_pid "$LAB/registry/pid" 10
	ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
	rm -rf "$RUNROOT" "$LAB/crivet/root" "$LAB/cni-data" "$LAB/registry/data" "$SOCK" "$LAB/containerd/root" /run/containerd-cluster "$LAB/t0"
	rm -f "$LAB/runtime"
	[ -s "$LAB/host-state" ] || { leftovers_report; return; }
	for p in $HOST_PATHS; do rm -rf "$p"; done
	while read -r kind a b; do
		case $kind in
		sysctl) sysctl -q -w "$a=$b" ;;
		backup) [ -e "$LAB/backup$a" ] && mv "$LAB/backup$a" "$a" ;;
		esac
	done <"$LAB/host-state"
	for p in /var/log/pods /var/log/containers /usr/libexec/kubernetes /run/xtables.lock /etc/cni /opt/cni; do existed "$p" || rm -rf "$p"; done
	for p in /var/log/pods /var/log/containers; do
		[ -d "$p" ] || continue
		ls -A "$p" | while read -r e; do grep -qxF "entry $p/$e" "$LAB/host-state" || rm -rf "${p:?}/$e"; done
	done
	my_cgroups | while read -r c; do rmdir "$c" 2>/dev/null; done
	# kubelet's QoS cgroups, if it made them (rmdir fails while in use)
	for c in /sys/fs/cgroup/*/kubepods/burstable /sys/fs/cgroup/*/kubepods/besteffort /sys/fs/cgroup/*/kubepods; do
		grep -qxF "cgroup $c" "$LAB/host-state" || rmdir "$c" 2>/dev/null
	done
	# The chains kubelet, kube-proxy and the CNI plugins made for this
	# cluster: jumps to each first, then the chains.
	local ipt t ch rule mine
	for ipt in iptables ip6tables; do
		for t in filter nat mangle; do
			mine=$($ipt -t $t -S 2>/dev/null | awk '$1=="-N" {print $2}' | while read -r ch; do my_chain $ipt $t "$ch" && echo "$ch"; done)
			for ch in $mine; do
				# iptables -S quotes comments the way a shell does
				$ipt -t $t -S 2>/dev/null | grep -E -- "-j $ch( |\$)" | sed 's/^-A/-D/' | while read -r rule; do
					eval "$ipt -t $t $rule" 2>/dev/null
				done
				$ipt -t $t -F "$ch" 2>/dev/null
			done
			for ch in $mine; do $ipt -t $t -X "$ch" 2>/dev/null; done
		done
	done
	rm -f "$LAB/host-state"
	rmdir "$LAB/backup" 2>/dev/null
	leftovers_report
}

# What a cluster could leave on the host; empty when down cleaned up.
leftovers() {
	local p
	pgrep -f "^$LAB/bin/" | sed 's/^/process /'
	# control-plane processes (with state and parent: a zombie shows Z)
	# (pgrep -x matches the 15-character comm: one name at a time)
	for p in $(for n in kube-apiserver etcd kube-scheduler kube-controller kube-proxy coredns; do pgrep -x "$n"; done); do
		echo "process $(ps -o pid=,ppid=,stat=,comm= -p "$p" | xargs) $(grep -m1 memory /proc/$p/cgroup 2>/dev/null)"
	done
	awk -v r="$RUNROOT" -v l="$LAB/" '$5 ~ "^"r || index($5, l)==1 || $5 ~ "^/var/lib/kubelet" {print "mount " $5}' /proc/self/mountinfo
	ip -br link show "$BRIDGE" 2>/dev/null | awk '{print "bridge " $1}'
	ip -br link show type veth 2>/dev/null | awk '$1 ~ /^veth/ {print $1}' | while read -r v; do
		[ "$(ip -j link show "${v%@*}" 2>/dev/null | jq -r '.[0].master // empty')" = "$BRIDGE" ] && echo "veth $v"
	done
	for p in $HOST_PATHS; do [ -e "$p" ] && ! grep -qxF "backup $p" "$LAB/host-state.last" 2>/dev/null && echo "path $p"; done
	local ipt t
	for ipt in iptables ip6tables; do
		for t in filter nat mangle; do
			$ipt -t $t -S 2>/dev/null | awk '$1=="-N" {print $2}' | while read -r ch; do
				my_chain $ipt $t "$ch" && echo "chain $ipt $t $ch"
			done
		done
	done
	[ -d /var/log/pods ] && ls /var/log/pods | grep -E '^(kube-system|default|strict|loose|staging|features|bundle)_' | sed 's/^/pod-log /'
	ip route | grep -F "${NODE_POD_CIDR%/*}" | sed 's/^/route /'
	my_cgroups | sed 's/^/cgroup /'
}
leftovers_report() {
	local l
	for _ in $(seq 10); do # processes may still be exiting
		l=$(leftovers)
		[ -z "$l" ] && break
		sleep 1
	done
	if [ -z "$l" ]; then rm -f "$LAB/pod-uids"; log "down: nothing left (processes, mounts, bridge, veths, kubeadm paths, KUBE-*/CNI-* chains, pod logs, routes)"; else
		log "down: LEFT BEHIND:"; echo "$l" | sed 's/^/  /'; return 1
	fi
}

# ---------------------------------------------------------------- containerd
# Debian's containerd 1.6 for the comparison run: its own socket, root and
# state; the pause image and CNI configuration are the lab's; the lab
# registry is plain HTTP through a hosts.toml. runc's cgroupfs driver
# (SystemdCgroup follows CGROUP_DRIVER: false unless systemd is PID 1).
start_containerd() {
	command -v containerd >/dev/null || die "containerd missing (make deps installs it)"
	local d=$LAB/containerd
	mkdir -p "$d/certs.d/$REG"
	cat >"$d/certs.d/$REG/hosts.toml" <<EOF
server = "http://$REG"

[host."http://$REG"]
  capabilities = ["pull", "resolve"]
EOF
	cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "/run/containerd-cluster"
oom_score = 0
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$REG/pause:$PAUSE_VERSION"
  # netns pins under the state dir, not /run/netns: down removes them with it
  netns_mounts_under_state_dir = true
  # root here lacks CAP_SYS_RESOURCE: runc fails to lower oom_score_adj
  # ("can't get final child's PID from pipe"), so clamp to containerd's own
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = $([ "$CGROUP_DRIVER" = systemd ] && echo true || echo false)
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$LAB/etc/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$d/certs.d"
EOF
	setsid containerd --config "$d/config.toml" >>"$LAB/logs/containerd.log" 2>&1 9>&- &
	echo $! >"$d/pid"
	for _ in $(seq 100); do CRICTL version >/dev/null 2>&1 && return; sleep 0.2; done
	die "containerd did not start, see $LAB/logs/containerd.log"
}

stop_containerd() {
	local p
	stop_pid "$LAB/containerd/pid" 30
	# shims outlive containerd by design
	for p in $(pgrep -f "containerd-shim-runc-v2 -namespace k8s.io .*-address $CTRD_SOCK"); do kill -KILL "$p"; done
	for p in $(ls /run/containerd-cluster/runc/k8s.io 2>/dev/null); do runc --root /run/containerd-cluster/runc/k8s.io delete -f "$p" 2>/dev/null; done
}

# ---------------------------------------------------------------- main
mkdir -p "$LAB/logs"
exec 9>"$LAB/.lock"
flock -n 9 || die "another run holds $LAB/.lock"
case ${1:-all} in
build) build ;;
up) up ;;
check) check ;;
down) [ -s "$LAB/host-state" ] && cp "$LAB/host-state" "$LAB/host-state.last"; down ;;
all)
	[ "${KEEP:-0}" = 1 ] || trap 'cp "$LAB/host-state" "$LAB/host-state.last" 2>/dev/null; down || exit 1' EXIT
	trap 'exit 130' INT TERM
	up
	check
	;;
*) die "usage: $0 [build|up|check|down|all]" ;;
esac
