#!/usr/bin/env bash
# test/node-e2e/run.sh: Kubernetes' node conformance suite (test/e2e_node of
# k8s.io/kubernetes v1.37.2, focus [NodeConformance]) against crivet,
# offline. See README.md beside this file.
#
#   run.sh [run]    build what is missing, start registry + crivet, run the
#                   suite (it starts its own etcd, kube-apiserver and
#                   kubelet), summarize, stop everything (default)
#   run.sh build    build the tools only (e2e_node.test, ginkgo, kubelet,
#                   agnhost, nnp)
#   run.sh images   build and push the test images only (starts the registry)
#   run.sh up       registry, images, runtime and pre-pull only, left running
#   run.sh down     stop whatever a run left and restore the host
#   run.sh summary DIR   summarize a results directory again
#   run.sh smoke    the run, on SMOKE_FOCUS only (a few minutes once built;
#                   CI's check that the harness still works): POLICY=signed
#                   and NODES=4 unless given, results only under $WORK
#
# A run exits non-zero when a spec failed.
#
# Environment:
#   POLICY=accept|signed   crivet's global signature policy: accept anything
#                          (default), or require the local images' sigstore
#                          signatures (signed here with a test key)
#   RUNTIME=crivet|containerd   containerd: Debian's 1.6.20, for comparison
#   FOCUS=regex SKIP=regex      default \[NodeConformance\] and
#                               \[Flaky\]|\[Slow\]|\[Serial\]
#   NODES=8                ginkgo parallel processes (most specs wait, not compute)
#   TEST_HANDLER=test-handler   second runtime handler ("" for none)
#   TOOLS=dir              build cache (default $(go env GOCACHE)/../crivet-test-tools/node-e2e-v1.37.2)
#   WORK=dir               run state (default /var/tmp/crivet-node-e2e)
#   REGISTRY=127.0.0.1:5003
#   RESULTS=dir            where results go (default test/node-e2e/results)
#
# Host state it touches (as kubelet does on any node): /var/lib/kubelet,
# /var/log/pods, /var/log/containers, the kubepods cgroups, kubelet's
# sysctls (restored), ports 10248/10250/10255 (kubelet) and the suite's
# etcd and apiserver ports on 127.0.0.1. Run it under
# `flock /tmp/crivet-heavy.lock` beside other harnesses.
set -euo pipefail

NODE_E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$NODE_E2E_DIR/../.." && pwd)
K8S_VERSION=v1.37.2
STAGING_VERSION=v0.37.2
export PATH=/usr/local/go/bin:$PATH
TOOLS=${TOOLS:-$(go env GOCACHE)/../crivet-test-tools/node-e2e-$K8S_VERSION}
TOOLS=$(mkdir -p "$TOOLS" && cd "$TOOLS" && pwd)
TOOLS_BIN=$TOOLS/bin
# The smoke subset: one or two specs of each kind of thing the suite
# checks (pod lifecycle, termination message, logs, hooks, probes, read-only
# rootfs, sysctls, a ConfigMap volume, pod networking, an image change of a
# running pod), none slow; ~2 min of specs on 4 processes.
SMOKE_FOCUS='\] Pods should be submitted and removed'
SMOKE_FOCUS+='|Container Runtime blackbox test on terminated container should report termination message if TerminationMessagePath is set as non-root user'
SMOKE_FOCUS+='|Kubelet when scheduling a busybox command in a pod should print the output to logs'
SMOKE_FOCUS+='|\] Container Lifecycle Hook when create a pod with lifecycle hook should execute poststart exec hook properly'
SMOKE_FOCUS+='|Probing container should be restarted with a exec "cat /tmp/health" liveness probe'
SMOKE_FOCUS+='|should run the container with readonly rootfs when readOnlyRootFilesystem=true'
SMOKE_FOCUS+='|Sysctls \[LinuxOnly\] should support sysctls \['
SMOKE_FOCUS+='|\] ConfigMap should be consumable from pods in volume \[Conformance\]'
SMOKE_FOCUS+='|Networking Granular Checks: Pods should function for intra-pod communication: http'
SMOKE_FOCUS+='|the regular container has its image updated should successfully restart when the image is updated, restartPolicy=Always'
if [ "${1:-}" = smoke ]; then
	FOCUS=$SMOKE_FOCUS POLICY=${POLICY:-signed} NODES=${NODES:-4} RESULTS=${RESULTS:-${WORK:-/var/tmp/crivet-node-e2e}/smoke-results}
fi
RESULTS=${RESULTS:-$NODE_E2E_DIR/results}
POLICY=${POLICY:-accept}
NODES=${NODES:-8}
FOCUS=${FOCUS:-'\[NodeConformance\]'}
SKIP=${SKIP:-'\[Flaky\]|\[Slow\]|\[Serial\]'}
RUNTIME=${RUNTIME:-crivet}
case "$POLICY" in accept | signed) ;; *) echo "POLICY must be accept or signed" >&2; exit 2 ;; esac

# The conformance harness's library: processes, registry, crivet and
# containerd on private dirs, CNI bridge, cleanup. Its settings, for this run:
export WORK=${WORK:-/var/tmp/crivet-node-e2e}
export REGISTRY=${REGISTRY:-127.0.0.1:5003}
export CNI_BRIDGE=${CNI_BRIDGE:-nodee2e0}
export CNI_SUBNET=${CNI_SUBNET:-10.193.0.0/16}
export SANDBOX_IMAGE=$REGISTRY/pause:3.10.2
# crivet is built from this tree into $WORK/bin at the start of a run, so a
# rebuild of bin/crivet by someone else does not change the run under test.
export CRIVET=${CRIVET:-$WORK/bin/crivet}
export CRIVET_RUNC=${CRIVET_RUNC:-$REPO/bin/runc}
export TEST_HANDLER=${TEST_HANDLER-test-handler}
mkdir -p "$WORK"
# shellcheck source=test/conformance/lib.sh
. "$REPO/test/conformance/lib.sh"
# shellcheck source=test/node-e2e/images.sh
. "$NODE_E2E_DIR/images.sh"
# shellcheck source=test/lib/build.sh
LAB=$WORK TAGS="containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper" CRI_TOOLS=$CRI_TOOLS_VERSION
. "$REPO/test/lib/build.sh"
# host_sysctls, host_chains
# shellcheck source=test/lib/host.sh
. "$REPO/test/lib/host.sh"
# oci_layout, for images.sh
# shellcheck source=test/lib/oci.sh
. "$REPO/test/lib/oci.sh"
K8S_SRC=$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION

[ "$(id -u)" = 0 ] || die "run as root"

# ------------------------------------------------------------- building ---

# build_tools: e2e_node.test (etcd and kube-apiserver are linked into it:
# test/e2e_node/services runs them in-process), ginkgo at the version
# kubernetes pins, kubelet, agnhost and nnp, from a throwaway module that
# requires k8s.io/kubernetes with every staging module replaced by the
# published one (as test/kubelet does). Cached in $TOOLS.
build_module() {
	local d=$TOOLS/build gomod
	mkdir -p "$d" "$TOOLS_BIN" "$TOOLS/logs"
	if [ ! -f "$d/go.mod" ]; then
		gomod=$(cd "$d" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | jq -r .GoMod) ||
			die "go mod download k8s.io/kubernetes@$K8S_VERSION"
		{
			printf 'module nodee2ebuild\n\n%s\n\n%s\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' \
				"$(grep -m1 '^go ' "$gomod")" "$(grep -m1 '^godebug ' "$gomod")" "$K8S_VERSION"
			sed -n "s#^\t\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 $STAGING_VERSION#p" "$gomod"
			printf ')\n'
		} >"$d/go.mod"
		printf '//go:build tools\n\npackage nodee2ebuild\n\nimport (\n\t_ "github.com/onsi/ginkgo/v2/ginkgo"\n\t_ "k8s.io/kubernetes/test/e2e_node"\n)\n' >"$d/tools.go"
		(cd "$d" && GOFLAGS=-mod=mod go mod tidy) >"$TOOLS/logs/tidy.log" 2>&1 || die "go mod tidy, see $TOOLS/logs/tidy.log"
	fi
}

build_tools() {
	local d=$TOOLS/build minor ld t0
	build_module
	minor=${K8S_VERSION#v1.}
	minor=${minor%%.*}
	ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1"
	ld="$ld -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
	export GOFLAGS="-mod=mod -buildvcs=false"
	if [ ! -x "$TOOLS_BIN/e2e_node.test" ]; then
		log "building e2e_node.test $K8S_VERSION (go test -c; 20-40 min on 2 busy cores the first time)"
		t0=$(date +%s)
		(cd "$d" && nice -n 10 go test -c -ldflags "$ld" -o "$TOOLS_BIN/e2e_node.test" k8s.io/kubernetes/test/e2e_node) \
			>"$TOOLS/logs/e2e_node-build.log" 2>&1 || die "e2e_node.test build failed, see $TOOLS/logs/e2e_node-build.log"
		log "e2e_node.test built in $(($(date +%s) - t0))s"
	fi
	if [ ! -x "$TOOLS_BIN/ginkgo" ]; then
		(cd "$d" && nice -n 10 go build -o "$TOOLS_BIN/ginkgo" github.com/onsi/ginkgo/v2/ginkgo) || die "ginkgo build failed"
	fi
	if ! "$TOOLS_BIN/kubelet" --version 2>/dev/null | grep -qx "Kubernetes $K8S_VERSION"; then
		# Another harness (cgroupv2, kubelet lab, cluster) may have built
		# the same kubelet: test/lib/kubelet.sh finds it.
		if k=$(KUBELET_VERSION=$K8S_VERSION; . "$REPO/test/lib/kubelet.sh"; kubelet_find); then
			cp "$k" "$TOOLS_BIN/kubelet"
		else
			log "building kubelet $K8S_VERSION (6-12 min the first time)"
			t0=$(date +%s)
			(cd "$d" && nice -n 10 go build -ldflags "$ld" -o "$TOOLS_BIN/kubelet" k8s.io/kubernetes/cmd/kubelet) \
				>"$TOOLS/logs/kubelet-build.log" 2>&1 || die "kubelet build failed, see $TOOLS/logs/kubelet-build.log"
			log "kubelet built in $(($(date +%s) - t0))s"
		fi
	fi
	unset GOFLAGS
	build_helpers
}

# build_helpers: what the images and the harness need besides the suite.
build_helpers() {
	local d=$TOOLS/build t
	build_module
	export GOFLAGS="-mod=mod -buildvcs=false"
	# agnhost and nnp: the test images' programs, from their source in the
	# kubernetes module; static.
	for t in agnhost nonewprivs; do
		local out=$TOOLS_BIN/$t
		[ "$t" = nonewprivs ] && out=$TOOLS_BIN/nnp
		[ -x "$out" ] && continue
		(cd "$d" && CGO_ENABLED=0 nice -n 10 go build -ldflags "-s -w" -o "$out" "k8s.io/kubernetes/test/images/$t") ||
			die "building $t failed"
	done
	unset GOFLAGS
	# crivet's infra program for the pause image; nmeter; crictl; the summary tool.
	(cd "$REPO" && CGO_ENABLED=0 go build -o "$TOOLS_BIN/crivet-pause" ./cmd/crivet-pause &&
		CGO_ENABLED=0 go build -o "$TOOLS_BIN/nmeter" ./test/node-e2e/nmeter &&
		go build -o "$TOOLS_BIN/junitsum" ./test/node-e2e/junitsum) || die "building crivet-pause/nmeter/junitsum failed"
	if [ ! -x "$BIN/crictl" ]; then
		if [ -x "$REPO/bin/crictl" ]; then cp "$REPO/bin/crictl" "$BIN/crictl"; else
			(cd "$WORK" && GOBIN=$BIN go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION") || die "crictl install failed"
		fi
	fi
	printf 'timeout: 120\ndebug: false\npull-image-on-create: false\n' >"$CRICTL_CONFIG"
	if [ "$POLICY" = signed ] && [ ! -x "$BIN/sigtool" ]; then
		(cd "$REPO" && go build -tags "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper" \
			-o "$BIN/sigtool" ./test/tools/sigtool) || die "sigtool build failed"
	fi
}

# ------------------------------------------------------- crivet config ---

# write_crivet_config (replaces lib.sh's): every registry the suite names
# is rewritten to $REGISTRY (never a mirror: a miss would go upstream), the
# invalid one and the public ones are blocked; the global policy is
# POLICY; a second handler $TEST_HANDLER as the node e2e jobs configure it.
write_crivet_config() {
	local h
	mkdir -p "$CRIVET_CONF/registries.d" "$CRIVET_CONF/policies"
	{
		echo "# crivet node e2e: every other setting is given as a flag (see ../command.txt)"
		if [ -n "$TEST_HANDLER" ]; then
			printf '\n# The RuntimeClass handler the node e2e specs use: its own runc root.\n[runtimes.%s]\nruntime_path = "%s"\n' \
				"$TEST_HANDLER" "$(crivet_runc)"
		fi
	} >"$CRIVET_CONF/crivet.toml"
	{
		echo "# crivet node e2e: every registry the suite names is served by $REGISTRY."
		echo 'unqualified-search-registries = []'
		echo 'short-name-mode = "disabled"'
		for h in gcr.io registry.k8s.io k8s.gcr.io; do
			printf '\n[[registry]]\nprefix = "%s"\nlocation = "%s"\ninsecure = true\n' "$h" "$REGISTRY"
		done
		printf '\n[[registry]]\nprefix = "%s"\nlocation = "%s"\ninsecure = true\n' "$REGISTRY" "$REGISTRY"
		for h in invalid.registry.k8s.io docker.io quay.io ghcr.io mcr.microsoft.com; do
			printf '\n[[registry]]\nprefix = "%s"\nlocation = "%s"\nblocked = true\n' "$h" "$h"
		done
	} >"$CRIVET_CONF/registries.conf"
	if [ "$POLICY" = signed ]; then
		# Only the local registry's images, each signed by the harness key
		# for its own repository; anything else is rejected.
		printf 'default-docker:\n  use-sigstore-attachments: true\n' >"$CRIVET_CONF/registries.d/default.yaml"
		jq -n --arg reg "$REGISTRY" --arg key "$WORK/keys/cosign.pub" '{
			default: [{type: "reject"}],
			transports: {docker: {($reg): [{type: "sigstoreSigned", keyPath: $key, signedIdentity: {type: "matchRepository"}}]}}}' \
			>"$CRIVET_CONF/policy.json"
	else
		cat >"$CRIVET_CONF/policy.json" <<'EOF'
{
  "default": [{ "type": "insecureAcceptAnything" }]
}
EOF
	fi
}

# containerd (for comparison) gets the same second handler, as its own node
# e2e job configures it: lib.sh's config plus one runtime table.
eval "lib_$(declare -f write_containerd_config)"
write_containerd_config() {
	lib_write_containerd_config
	[ -n "$TEST_HANDLER" ] || return 0
	cat >>"$CONTAINERD_DIR/config.toml" <<EOF
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.$TEST_HANDLER]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.$TEST_HANDLER.options]
    BinaryName = "$RUNC"
    Root = "$CONTAINERD_DIR/run/runc-$TEST_HANDLER"
    SystemdCgroup = false
EOF
}

# sign_images: a test key, every pushed image signed in place.
sign_images() {
	mkdir -p "$WORK/keys" "$WORK/sig-registries.d"
	[ -s "$WORK/keys/cosign.key" ] || "$BIN/sigtool" keygen "$WORK/keys" node-e2e-pass || die "keygen"
	printf 'default-docker:\n  use-sigstore-attachments: true\n' >"$WORK/sig-registries.d/default.yaml"
	# shellcheck disable=SC2046
	"$BIN/sigtool" sign "$WORK/keys/cosign.key" node-e2e-pass "$WORK/sig-registries.d" $(cat "$IMG/pushed.txt") ||
		die "signing the test images failed"
	log "signed $(wc -l <"$IMG/pushed.txt") images with $WORK/keys/cosign.pub"
}

# ------------------------------------------------------------ host state ---

# What kubelet changes on the host, recorded before, restored after.
save_kubelet_host_state() {
	[ -s "$STATE/kubelet-host" ] && return
	{
		host_sysctls vm.overcommit_memory kernel.panic kernel.panic_on_oops
		for p in /var/lib/kubelet /var/log/pods /var/log/containers /sys/fs/cgroup/*/kubepods; do [ -e "$p" ] && echo "existed $p"; done
		host_chains
	} >"$STATE/kubelet-host"
}

restore_kubelet_host_state() {
	local f=$STATE/kubelet-host k v ipt t c
	[ -s "$f" ] || return 0
	while read -r k v; do
		[ "$k" = sysctl ] && sysctl -qw "${v% *}=${v#* }"
	done < <(grep '^sysctl ' "$f")
	for p in /var/lib/kubelet /var/log/pods /var/log/containers; do
		grep -qxF "existed $p" "$f" && continue
		remove_dir "$p"
	done
	# kubelet's own chains (KUBE-*), if it made them in this run.
	for ipt in iptables ip6tables; do
		for t in filter nat mangle; do
			for c in $($ipt -t $t -S 2>/dev/null | awk '$1=="-N" && $2 ~ /^KUBE-/{print $2}'); do
				grep -qxF "chain $ipt $t $c" "$f" && continue
				$ipt -t $t -S 2>/dev/null | awk -v c="$c" '$1=="-A" && $0 ~ "-j " c "( |$)"' | sed 's/^-A/-D/' |
					while read -r rule; do eval "$ipt -t $t $rule" 2>/dev/null || true; done
				$ipt -t $t -F "$c" 2>/dev/null && $ipt -t $t -X "$c" 2>/dev/null || true
			done
		done
	done
	# kubepods cgroups (cgroupfs driver), deepest first, once the runtime
	# has stopped every container in them.
	for c in /sys/fs/cgroup/*/kubepods; do
		grep -qxF "existed $c" "$f" && continue
		find "$c" -depth -type d 2>/dev/null | while read -r d; do rmdir "$d" 2>/dev/null || true; done
	done
	rm -f "$f"
}

down() {
	set +e
	kill_child
	# The suite's processes and the kubelet it started, then the runtime
	# (which removes what is left of the pods), then kubelet's host state.
	kill_pids_referencing "$WORK/run/kubelet" "$WORK/run/e2e_node.test"
	"${RUNTIME}_stop" || true
	restore_kubelet_host_state
	registry_stop || true
	cleanup_network || true
	cleanup_shm || true
	check_netns || true
	cleanup_cgroups || true
}

# ------------------------------------------------------------------ run ---

# A PATH without systemd's tools: PID 1 here is not systemd, and the suite
# runs kubelet through systemd-run whenever it finds it on PATH.
path_without_systemd() {
	local farm=$WORK/path d f
	rm -rf "$farm" && mkdir -p "$farm"
	for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
		for f in "$d"/*; do
			case "${f##*/}" in systemd-run | systemctl | journalctl) continue ;; esac
			[ -e "$farm/${f##*/}" ] || ln -s "$f" "$farm/${f##*/}"
		done
	done
	echo "$farm"
}

# The KubeletConfiguration the suite starts from (it then sets auth, ports,
# static pod dir itself): the upstream job's defaults, plus what this host
# needs: cgroupfs (no systemd), cgroup v1 allowed, swap allowed, and an
# oom_score_adj of 0 (root here cannot lower it).
write_kubelet_config() {
	cat >"$1" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
podCIDR: "10.100.0.0/24"
volumeStatsAggPeriod: 10s
fileCheckFrequency: 10s
evictionPressureTransitionPeriod: 30s
evictionHard:
  memory.available: 250Mi
  nodefs.available: 10%
  nodefs.inodesFree: 5%
evictionMinimumReclaim:
  nodefs.available: 5%
  nodefs.inodesFree: 5%
serializeImagePulls: false
containerRuntimeEndpoint: $(runtime_endpoint "$RUNTIME")
imageServiceEndpoint: $(runtime_endpoint "$RUNTIME")
EOF
}

# prepull: every test image through CRI PullImage with no sandbox config,
# as the suite's own pre-pull does (it cannot run here: its list has a
# digest-pinned image and perf images no local build can reproduce).
prepull() {
	local ep ref n=0
	ep=$(runtime_endpoint "$RUNTIME")
	while read -r ref; do
		cri "$ep" pull "$ref" >/dev/null || die "pre-pull of $ref failed (policy $POLICY)"
		n=$((n + 1))
	done <"$IMG/pushed.txt"
	log "pre-pulled $n images through CRI PullImage (no sandbox config; global policy $POLICY)"
	[ "$POLICY" = signed ] && [ "$RUNTIME" = crivet ] && check_unsigned_rejected
	return 0
}

# check_unsigned_rejected: proof that the signed run's policy is in force:
# the same busybox, copied without its signature to a repository of its
# own, must be refused by PullImage, with crivet saying why.
check_unsigned_rejected() {
	local ep ref=$REGISTRY/crivet-unsigned/busybox:1 out
	ep=$(runtime_endpoint "$RUNTIME")
	skopeo copy -q --src-tls-verify=false --dest-tls-verify=false \
		"docker://$REGISTRY/$E2E/busybox:1.37.0-2" "docker://$ref" || die "copying an unsigned busybox failed"
	if out=$(cri "$ep" pull "$ref" 2>&1); then
		die "policy signed: crivet pulled the unsigned $ref"
	fi
	grep -qi 'signature' <<<"$out" || die "policy signed: the pull of $ref failed for another reason: $out"
	log "policy signed: the unsigned $ref was refused: $(tail -1 <<<"$out")"
}

run_suite() {
	local out ep t0 t1 rc=0 farm name
	name=$RUNTIME-$POLICY-$(date -u +%Y%m%d-%H%M%S)
	out=$WORK/results/$name
	mkdir -p "$out"
	ep=$(runtime_endpoint "$RUNTIME")
	repo_list "$WORK/repo-list.yaml"
	write_kubelet_config "$WORK/kubelet-config.yaml"
	farm=$(path_without_systemd)
	# ginkgo runs the suite in the binary's directory, where the suite
	# writes kubeconfig, kubelet-config and static pod dirs, and the suite
	# runs the kubelet that lies beside it: both are linked into a run
	# directory so the build cache stays clean.
	rm -rf --one-file-system "$WORK/run" && mkdir -p "$WORK/run"
	for f in e2e_node.test kubelet; do
		ln -f "$TOOLS_BIN/$f" "$WORK/run/$f" 2>/dev/null || cp "$TOOLS_BIN/$f" "$WORK/run/$f"
	done
	local args=(--nodes="$NODES" --timeout=3h --no-color --poll-progress-after=10m
		--focus="$FOCUS" --skip="$SKIP" --junit-report="$out/junit.xml"
		"$WORK/run/e2e_node.test" --
		--container-runtime-endpoint="$ep" --image-service-endpoint="$ep"
		--kubelet-config-file="$WORK/kubelet-config.yaml"
		--kubelet-flags="--system-cgroups= --kubelet-cgroups= --runtime-cgroups="
		--prepull-images=false --report-dir="$out" --node-name="$(hostname)")
	{
		echo "# $(date -u +%FT%TZ), $(nproc) cores, $(uname -r), $("$CRIVET" --version 2>/dev/null | head -1 || true)"
		echo "env KUBE_TEST_REPO_LIST=$WORK/repo-list.yaml PATH=<PATH without systemd-run, systemctl, journalctl> \\"
		printf '  %q' "$TOOLS_BIN/ginkgo" "${args[@]}"
		echo
	} >"$out/command.txt"
	log "running the node e2e suite ($RUNTIME, policy $POLICY, $NODES processes); log: $out/ginkgo.log"
	t0=$(date +%s)
	run_child "$out/ginkgo.log" env KUBE_TEST_REPO_LIST="$WORK/repo-list.yaml" PATH="$farm" \
		"$TOOLS_BIN/ginkgo" "${args[@]}" || rc=$?
	t1=$(date +%s)
	echo "$((t1 - t0))" >"$out/seconds"
	log "suite finished in $((t1 - t0))s (exit $rc)"
	cp "$LOGS/$RUNTIME.log" "$out/" 2>/dev/null || true
	ln -sfn "$out" "$WORK/results/latest"
	summarize "$out"
	return "$rc"
}

# summarize DIR: junit -> summary.txt (counts, then every spec with its
# verdict, failures with their message); copied to $RESULTS.
summarize() {
	local out=$1 dest
	[ -f "$out/junit.xml" ] || die "no junit report in $out"
	"$TOOLS_BIN/junitsum" -junit "$out/junit.xml" -seconds "$(cat "$out/seconds" 2>/dev/null || echo 0)" \
		-nodes "$NODES" >"$out/summary.txt" || true
	dest=$RESULTS/$(basename "$out")
	mkdir -p "$dest"
	cp "$out/summary.txt" "$out/command.txt" "$WORK/kubelet-config.yaml" "$WORK/repo-list.yaml" "$dest/"
	head -3 "$out/summary.txt"
	log "summary: $dest/summary.txt"
}

main() {
	local cmd=${1:-run}
	case "$cmd" in
	build) build_tools ;;
	images)
		build_helpers
		trap 'registry_stop' EXIT
		registry_start
		build_test_images
		;;
	up)
		# Everything but the suite (no kubelet, so no host state touched
		# beyond the CNI bridge): registry, images, crivet, pre-pull; left
		# running for crictl (config: $WORK/crictl.yaml) until `run.sh down`.
		build_helpers
		[ "$RUNTIME" = crivet ] && [ "$CRIVET" = "$WORK/bin/crivet" ] && build_crivet
		save_host_state
		registry_start
		build_test_images
		[ "$POLICY" = signed ] && sign_images
		"${RUNTIME}_start"
		prepull
		;;
	down) down ;;
	summary) summarize "$2" ;;
	run | smoke)
		build_tools
		[ "$RUNTIME" = crivet ] && [ "$CRIVET" = "$WORK/bin/crivet" ] && build_crivet
		trap 'down' EXIT
		trap 'exit 130' INT TERM
		save_host_state
		save_kubelet_host_state
		registry_start
		build_test_images
		[ "$POLICY" = signed ] && sign_images
		"${RUNTIME}_start"
		prepull
		run_suite
		;;
	*) die "unknown command $cmd" ;;
	esac
}

main "$@"
