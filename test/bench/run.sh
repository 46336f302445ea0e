#!/usr/bin/env bash
# test/bench/run.sh: the same CRI workload against crivet and containerd 1.6,
# in one run, alternating between them (ABBA) so that machine drift cancels.
# Both daemons run side by side on their own sockets and state dirs, with the
# same local registry, images and CNI network (test/conformance/lib.sh).
#
# Measured:
#   - daemon RSS idle (after start-up) and with $RSS_PODS pods running
#   - `crictl pull` of the 1 MiB image, $RUNS samples, image removed before each
#   - `crictl pull` of a realistic image (6 layers, ~100 MiB, 20k small files)
#     cold, and of a sibling sharing its first 4 layers right after it
#   - critest -benchmark: pod, container, image lifecycle and image listing
#   - RunPodSandbox + CreateContainer + StartContainer over gRPC (cribench)
#   - bare `runc create` + `runc start` of a busybox bundle: the floor
#   - ListContainers / ListPodSandbox / ContainerStatus with each of
#     $LIST_CONTAINERS containers present
#   - scale: $SCALE_PODS pods x 2 containers started, then removed, with
#     $SCALE_PARALLEL in flight: wall times, per-call p50/p99, daemon CPU
#     (and its cgroup's: daemon plus shims/monitors), daemon peak RSS
#   - signature costs: Go benchmarks of ./image (pull unsigned / key / keyless,
#     create-time re-check cold / cached); SKIP_SIGNATURE_BENCH=1 skips them
# An operation a runtime does not support (gRPC Unimplemented) gets a
# "not supported yet" cell instead of failing the run.
#
# Output: test/bench/results/latest.md (table), latest.json (summary and
# every sample), bench-<time>.json; raw files in test/bench/_work/.
#
# Environment: RUNTIMES="crivet containerd" RUNS=10 (samples per crictl/gRPC
# measurement) N=20 (critest samples) P=2 (critest pod/container parallelism)
# IP=1 (critest image parallelism; 2 makes containerd 1.6 race pull/remove of
# the same image) ROUNDS=1 (critest rounds per runtime) LIST_CONTAINERS="200 500"
# (one list run per size) LIST_PODS=4 RSS_PODS=20 REALISTIC_RUNS=$RUNS
# REALISTIC_WARMUP=1 (0: no warm-up pull of the realistic images)
# SCALE_PODS=100 SCALE_PARALLEL=10 SCALE_ROUNDS=3 (runs per runtime)
# SKIP_CRITEST=1, plus lib.sh's CRIVET, REGISTRY, WORK.
# BENCH_FS=ext4 (default): both runtimes keep their state on a fresh ext4
# file system with a journal, made for the run in a loop-mounted sparse file
# (BENCH_FS_SIZE=16G), as on a node's /var/lib. BENCH_FS=host: in $WORK.
# Why: this VM's root is ext4 *without* a journal, and there the kernel's
# inode allocator skips every inode freed in the last 60 s (360 s while its
# inode table block is dirty; fs/ext4/ialloc.c recently_deleted), scanning
# them one by one for each new file. A cold pull right after `rmi` of
# 20,000 files then takes 3-7x longer, by an amount that depends on which
# runtime's directories those freed inodes sit near, not on the runtime.
# With ext4, the runtimes' run roots (crivet --runroot, containerd state)
# are tmpfs mounts, as /run is on a node.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
BENCH_FS=${BENCH_FS:-ext4} BENCH_FS_SIZE=${BENCH_FS_SIZE:-16G}
case $BENCH_FS in
ext4)
	RUNTIME_DIR=$BENCH_DIR/_work/fs
	# and their run/state roots on tmpfs, as /run/crivet and /run/containerd
	export RUN_ON_TMPFS=1
	;;
host) ;;
*)
	echo "BENCH_FS=$BENCH_FS: want ext4 or host" >&2
	exit 2
	;;
esac
# The benchmark measures crivet as deployed by default: NRI off.
CRIVET_NRI=${CRIVET_NRI:-0}
. "$BENCH_DIR/../conformance/lib.sh"

RUNTIMES=${RUNTIMES:-"crivet containerd"}
RUNS=${RUNS:-10} N=${N:-20} P=${P:-2} IP=${IP:-1} ROUNDS=${ROUNDS:-1}
LIST_CONTAINERS=${LIST_CONTAINERS:-"200 500"} LIST_PODS=${LIST_PODS:-4} RSS_PODS=${RSS_PODS:-20}
REALISTIC_RUNS=${REALISTIC_RUNS:-$RUNS} REALISTIC_WARMUP=${REALISTIC_WARMUP:-1}
SCALE_PODS=${SCALE_PODS:-100} SCALE_PARALLEL=${SCALE_PARALLEL:-10} SCALE_ROUNDS=${SCALE_ROUNDS:-3}
RESULTS=${RESULTS:-$BENCH_DIR/results}
BW=$BENCH_DIR/_work
STAMP=$(date -u +%Y%m%d-%H%M%S)
RAW=$BW/raw-$STAMP
SAMPLES=$RAW/samples.jsonl
BUSYBOX_IMG=$REGISTRY/e2e-test-images/busybox:1.29-2
PULL_IMG=$REGISTRY/crivet-test/bench-1mb:latest
REAL_IMG=$REGISTRY/crivet-test/bench-realistic:latest
SIBLING_IMG=$REGISTRY/crivet-test/bench-realistic-sibling:latest

[ "$(id -u)" = 0 ] || die "must run as root"
[ "$RUNS" -ge 10 ] || log "warning: RUNS=$RUNS; the pull medians want at least 10"
exec 9>"$WORK/.lock"
flock -n 9 || die "another conformance or bench run holds $WORK/.lock"
mkdir -p "$RESULTS" "$RAW"
: >"$SAMPLES"
# keep the raw files of the last 5 runs
ls -d "$BW"/raw-* 2>/dev/null | head -n -5 | while read -r d; do rm -rf "$d"; done || true
ls "$RESULTS"/bench-*.json 2>/dev/null | head -n -5 | while read -r f; do rm -f "$f"; done || true

emit() { # RUNTIME OP VALUE UNIT
	printf '{"runtime":"%s","op":"%s","value":%s,"unit":"%s"}\n' "$1" "$2" "$3" "$4" >>"$SAMPLES"
}
emit_err() { # RUNTIME OP MESSAGE
	jq -cn --arg r "$1" --arg o "$2" --arg e "$3" '{runtime:$r, op:$o, error:$e}' >>"$SAMPLES"
}
short_err() { # squeeze crictl/critest output into "Code: desc"
	local s
	s=$(tr '\n' ' ' | sed -E 's/.*code = ([A-Za-z]+) desc = /\1: /; s/[[:space:]]+/ /g; s/"? *$//' | cut -c1-160)
	echo "${s:-failed}"
}
ms_since() { echo "scale=3; ($(date +%s%N) - $1) / 1000000" | bc; }
rss_kb() { status_kb "$1" VmRSS; }
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; } # PID FIELD
# order I: the active runtimes, reversed on odd I (ABBA)
order() {
	if (($1 % 2)); then printf '%s\n' "${ACTIVE[@]}" | tac; else printf '%s\n' "${ACTIVE[@]}"; fi
}
ep_args() { # -e LABEL=ENDPOINT for every active runtime
	local rt
	for rt in "${ACTIVE[@]}"; do printf -- '-e\n%s=%s\n' "$rt" "${EP[$rt]}"; done
}

# revive: restart a runtime whose daemon died during the previous phase (its
# failed rows then say why), so that one crash does not void the later phases.
declare -A CRASHES=()
revive() {
	local rt
	for rt in "${ACTIVE[@]}"; do
		pid_alive "$STATE/$rt.pid" && continue
		CRASHES[$rt]=$((${CRASHES[$rt]:-0} + 1))
		log "$rt died during the last phase (see $LOGS/$rt.log); restarting it"
		grep -E '^(panic|fatal error)' "$LOGS/$rt.log" | tail -n 1 >&2 || true
		if (runtime_start "$rt"); then
			PID[$rt]=$(runtime_pid "$rt")
		else
			log "$rt did not restart"
		fi
	done
}

cleanup() {
	log "cleaning up"
	kill_child
	kill_runc_containers "$BW/runc" || true
	cleanup_all
	rm -rf "$BW/runc" "$BW/podlogs" "$BW/bundle"
	bench_fs_down
}

# bench_fs_up: a fresh journaled ext4 at $RUNTIME_DIR (BENCH_FS=ext4).
BENCH_FS_IMG=$BW/fs.img
bench_fs_down() {
	[ "$BENCH_FS" = ext4 ] || return 0
	if mountpoint -q "$RUNTIME_DIR"; then
		umount "$RUNTIME_DIR" 2>/dev/null || umount -l "$RUNTIME_DIR" || true
	fi
	rm -f "$BENCH_FS_IMG"
}
bench_fs_up() {
	[ "$BENCH_FS" = ext4 ] || return 0
	bench_fs_down
	mkdir -p "$RUNTIME_DIR"
	truncate -s "$BENCH_FS_SIZE" "$BENCH_FS_IMG"
	mkfs.ext4 -q -F -L crivet-bench "$BENCH_FS_IMG" || die "mkfs.ext4 $BENCH_FS_IMG failed"
	if ! mount -o loop "$BENCH_FS_IMG" "$RUNTIME_DIR"; then
		# The numbers stay comparable (both runtimes share the directory);
		# the report says where they were taken.
		log "warning: cannot loop-mount $BENCH_FS_IMG (no loop devices?); measuring on the host file system"
		rm -f "$BENCH_FS_IMG"
		BENCH_FS=host
		return 0
	fi
	log "runtime state on $(findmnt -no SOURCE,FSTYPE,OPTIONS "$RUNTIME_DIR" | tr -s ' ') ($BENCH_FS_SIZE, journal: $(dumpe2fs -h "$BENCH_FS_IMG" 2>/dev/null | grep -q has_journal && echo yes || echo no))"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ setup ---
ensure_tools
save_host_state
bench_fs_up
registry_start
build_images -realistic

declare -A EP PID
ACTIVE=()
ABSENT=()
for rt in $RUNTIMES; do
	if [ "$rt" = crivet ] && [ ! -x "$CRIVET" ]; then
		log "crivet: $CRIVET not built (make build); its column stays empty"
		ABSENT+=(-absent "crivet=not built")
		continue
	fi
	if (runtime_start "$rt"); then
		ACTIVE+=("$rt")
		EP[$rt]=$(runtime_endpoint "$rt")
		PID[$rt]=$(runtime_pid "$rt")
	else
		ABSENT+=(-absent "$rt=did not start (see $LOGS/$rt.log)")
	fi
done
[ ${#ACTIVE[@]} -gt 0 ] || die "no runtime to measure"
log "measuring: ${ACTIVE[*]}"

declare -A VERSION
for rt in "${ACTIVE[@]}"; do
	VERSION[$rt]=$(cri "${EP[$rt]}" version 2>/dev/null | awk -F': *' '/RuntimeName|RuntimeVersion/{printf "%s ", $2}')
done
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

# --------------------------------------------------------- RSS when idle ---
sleep 2
for rt in "${ACTIVE[@]}"; do
	emit "$rt" "daemon RSS, idle" "$(rss_kb "${PID[$rt]}")" kB
	# RSS = private memory (RssAnon) + the executable's pages mapped from
	# the page cache (RssFile: clean, shared, reclaimable)
	emit "$rt" "daemon RSS, idle: private (RssAnon)" "$(status_kb "${PID[$rt]}" RssAnon)" kB
	emit "$rt" "daemon RSS, idle: mapped executable and files (RssFile)" "$(status_kb "${PID[$rt]}" RssFile)" kB
done

# ------------------------------------------------------ crictl overhead ---
for ((i = 0; i < 5; i++)); do
	for rt in $(order $i); do
		t0=$(date +%s%N)
		cri "${EP[$rt]}" version >/dev/null 2>&1 && emit "$rt" "crictl version (client start-up)" "$(ms_since "$t0")" ms
	done
done

# ------------------------------------------------------ crictl pull 1 MiB ---
revive
log "crictl pull $PULL_IMG x $RUNS per runtime (rmi before each)"
declare -A DEAD=()
OP="crictl pull 1 MiB image (rmi between)"
for ((i = 0; i <= RUNS; i++)); do # i == 0: warm-up
	for rt in $(order $i); do
		[ -z "${DEAD[$rt]:-}" ] || continue
		cri "${EP[$rt]}" rmi "$PULL_IMG" >/dev/null 2>&1 || true
		t0=$(date +%s%N)
		if out=$(cri "${EP[$rt]}" pull "$PULL_IMG" 2>&1); then
			d=$(ms_since "$t0")
			[ "$i" -eq 0 ] || emit "$rt" "$OP" "$d" ms
		else
			emit_err "$rt" "$OP" "$(short_err <<<"$out")"
			DEAD[$rt]=1
		fi
	done
done
for rt in "${ACTIVE[@]}"; do cri "${EP[$rt]}" rmi "$PULL_IMG" >/dev/null 2>&1 || true; done

# ------------------------------------------------ crictl pull, realistic ---
# Cold: neither image present (both removed; containerd's image delete runs
# its garbage collection synchronously and containers/storage deletes an
# image's unshared layers with it, so no layer is left). Then the sibling,
# whose first 4 layers the first image has just brought.
# realistic_left RT: how many of the realistic image's layers RT still
# stores (0 before every cold sample, or the sample is not cold).
realistic_left() {
	local m d n=0
	m=$(jq -r --arg r "${REAL_IMG#"$REGISTRY"/}" \
		'.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $r) | .digest' "$WORK/images/oci/index.json")
	for d in $(jq -r '.layers[].digest' "$WORK/images/oci/blobs/sha256/${m#sha256:}"); do
		case $1 in
		containerd) [ ! -e "$CONTAINERD_DIR/root/io.containerd.content.v1.content/blobs/sha256/${d#sha256:}" ] || n=$((n + 1)) ;;
		crivet) ! cat "$CRIVET_DIR"/root/storage/*-layers/layers.json 2>/dev/null | grep -qF "$d" || n=$((n + 1)) ;;
		esac
	done
	echo "$n"
}
revive
log "crictl pull of the realistic image (cold) and its sibling x $REALISTIC_RUNS per runtime"
OPC="crictl pull realistic (6 layers, ~100 MiB) cold"
OPS="crictl pull realistic (6 layers, ~100 MiB) shared base present"
DEAD=()
for ((i = 1 - REALISTIC_WARMUP; i <= REALISTIC_RUNS; i++)); do # i == 0: warm-up
	for rt in $(order $i); do
		[ -z "${DEAD[$rt]:-}" ] || continue
		cri "${EP[$rt]}" rmi "$REAL_IMG" "$SIBLING_IMG" >/dev/null 2>&1 || true
		left=$(realistic_left "$rt")
		[ "$left" = 0 ] || log "warning: $rt still stores $left of the realistic image's layers after rmi; its cold sample is not cold"
		t0=$(date +%s%N)
		if ! out=$(cri "${EP[$rt]}" pull "$REAL_IMG" 2>&1); then
			emit_err "$rt" "$OPC" "$(short_err <<<"$out")"
			emit_err "$rt" "$OPS" "cold pull failed"
			DEAD[$rt]=1
			continue
		fi
		d=$(ms_since "$t0")
		t0=$(date +%s%N)
		if ! out=$(cri "${EP[$rt]}" pull "$SIBLING_IMG" 2>&1); then
			emit_err "$rt" "$OPS" "$(short_err <<<"$out")"
			DEAD[$rt]=1
			continue
		fi
		d2=$(ms_since "$t0")
		if [ "$i" -gt 0 ]; then
			emit "$rt" "$OPC" "$d" ms
			emit "$rt" "$OPS" "$d2" ms
		fi
	done
done
for rt in "${ACTIVE[@]}"; do cri "${EP[$rt]}" rmi "$REAL_IMG" "$SIBLING_IMG" >/dev/null 2>&1 || true; done

# ------------------------------------------------------ critest -benchmark ---
revive
if [ "${SKIP_CRITEST:-0}" != 1 ]; then
	cat >"$RAW/bench-params.yaml" <<EOF
containersNumber: $N
containersNumberParallel: $P
containerBenchmarkTimeoutSeconds: 120
podsNumber: $N
podsNumberParallel: $P
podBenchmarkTimeoutSeconds: 120
imagesNumber: $N
imagesNumberParallel: $IP
imageBenchmarkTimeoutSeconds: 120
imagePullingBenchmarkImage: $PULL_IMG
imageListingBenchmarkImages:
  - $REGISTRY/k8s-staging-cri-tools/test-image-1:latest
  - $REGISTRY/k8s-staging-cri-tools/test-image-2:latest
  - $REGISTRY/k8s-staging-cri-tools/test-image-3:latest
podContainerStartBenchmarkTimeoutSeconds: 60
EOF
	cat >"$RAW/test-images.yaml" <<EOF
defaultTestContainerImage: $BUSYBOX_IMG
webServerTestImage: $REGISTRY/e2e-test-images/nginx:1.14-2
EOF
	# one critest process per benchmark spec, so that a crash in one (the
	# daemon is restarted) or an unimplemented call does not void the others
	SPECS=("benchmark about lifecycle of PodSandbox" "benchmark about basic operations on Container"
		"benchmark about basic operations on Image" "benchmark about listing Image")
	for ((r = 0; r < ROUNDS; r++)); do
		for ((s = 0; s < ${#SPECS[@]}; s++)); do
			# critest -benchmark forces -ginkgo.focus=benchmark (and focus
			# values are ORed), so select one spec by skipping the others
			skip="start a container from scratch"
			for ((o = 0; o < ${#SPECS[@]}; o++)); do [ "$o" = "$s" ] || skip+="|${SPECS[$o]}"; done
			for rt in $(order $((r + s))); do
				d=$RAW/critest-$rt-r$r-s$s
				mkdir -p "$d"
				log "critest -benchmark against $rt: ${SPECS[$s]} (round $((r + 1))/$ROUNDS, N=$N)"
				run_child "$d/critest.log" env -C "$d" "$CRITEST" -config "$CRICTL_CONFIG" \
					-runtime-endpoint "${EP[$rt]}" -image-endpoint "${EP[$rt]}" \
					-benchmark -benchmarking-params-file "$RAW/bench-params.yaml" -benchmarking-output-dir "$d" \
					-test-images-file "$RAW/test-images.yaml" -ginkgo.skip "$skip" \
					-ginkgo.no-color -ginkgo.junit-report "$d/junit.xml" || true
				"$BIN/cribench" critestjson -dir "$d" -label "$rt" -spec "${SPECS[$s]}" >>"$SAMPLES"
				cri "${EP[$rt]}" rmp -a -f >/dev/null 2>&1 || true
				revive
			done
		done
	done
fi

# ------------------------------------------- runp + create + start (gRPC) ---
revive
log "RunPodSandbox+CreateContainer+StartContainer x $RUNS per runtime"
mapfile -t EPS < <(ep_args)
mkdir -p "$BW/podlogs"
run_child -o "$SAMPLES" "$BIN/cribench" lifecycle "${EPS[@]}" -image "$BUSYBOX_IMG" -n "$RUNS" -logdir "$BW/podlogs" || true

# ---------------------------------------------------- the floor: bare runc ---
log "bare runc create+start x $RUNS (floor)"
B=$BW/bundle
rm -rf "$B" && mkdir -p "$B/rootfs"
manifest=$(jq -r --arg r "e2e-test-images/busybox:1.29-2" \
	'.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $r) | .digest' "$WORK/images/oci/index.json")
for layer in $(jq -r '.layers[].digest' "$WORK/images/oci/blobs/sha256/${manifest#sha256:}"); do
	tar -xzf "$WORK/images/oci/blobs/sha256/${layer#sha256:}" -C "$B/rootfs"
done
(cd "$B" && "$RUNC" spec)
jq '.process.terminal = false | .process.args = ["sleep", "3600"] | .root.readonly = false
	| .linux.cgroupsPath = "/crivet-bench-floor"' "$B/config.json" >"$B/config.json.new"
mv "$B/config.json.new" "$B/config.json"
run_child -o "$SAMPLES" "$BIN/cribench" floor -bundle "$B" -runc "$RUNC" -root "$BW/runc" -n "$RUNS" || true

# The same floor on the bundle crivet itself writes for a busybox container
# (seccomp, masked paths, the pod's namespaces and files): what crivet's
# create+start is compared with.
if [[ " $RUNTIMES " == *" crivet "* ]] && [ -n "${CRIVET_SOCK:-}" ]; then
	log "bare runc create+start x $RUNS on crivet's own bundle (floor)"
	fpod=$BW/floor-pod.json fctr=$BW/floor-ctr.json
	echo '{"metadata":{"name":"floor","namespace":"bench","uid":"floor-uid"},"log_directory":"'"$BW"'/podlogs/floor","linux":{}}' >"$fpod"
	echo '{"metadata":{"name":"floor"},"image":{"image":"'"$BUSYBOX_IMG"'"},"command":["sleep","3600"],"log_path":"floor.log","linux":{}}' >"$fctr"
	crictl_c=("$CRICTL" --config "$CRICTL_CONFIG" -r "unix://$CRIVET_SOCK" -i "unix://$CRIVET_SOCK")
	if fpid=$("${crictl_c[@]}" runp "$fpod") && fcid=$("${crictl_c[@]}" create "$fpid" "$fctr" "$fpod"); then
		B2=$BW/bundle-crivet
		rm -rf "$B2" && mkdir -p "$B2"
		jq --arg root "$B/rootfs" '.root.path = $root | .linux.cgroupsPath = "/crivet-bench-floor2"' \
			"$CRIVET_DIR/run/bundles/$fcid/config.json" >"$B2/config.json"
		run_child -o "$SAMPLES" "$BIN/cribench" floor -bundle "$B2" -suffix " (crivet's bundle)" -runc "$RUNC" -root "$BW/runc" -n "$RUNS" || true
		"${crictl_c[@]}" rmp -f "$fpid" >/dev/null || true
	else
		log "warning: could not create the floor container in crivet"
	fi
fi

# ------------------------------------------ list latency, many containers ---
for nc in $LIST_CONTAINERS; do
	revive
	log "ListContainers/ListPodSandbox/ContainerStatus with $nc containers in $LIST_PODS pods"
	run_child -o "$SAMPLES" "$BIN/cribench" list "${EPS[@]}" -image "$BUSYBOX_IMG" -pods "$LIST_PODS" \
		-containers "$nc" -n 30 -logdir "$BW/podlogs" || true
done

# ------------------------------------------------- scale and concurrency ---
# cribench moves each daemon into a cgroup of its own (crivet-bench-<rt>) so
# that the CPU of what it forks (shims, monitors, runc, CNI plugins) is
# counted; cleanup_cgroups removes those cgroups after the daemons stop.
revive
log "scale: $SCALE_PODS pods x 2 containers, $SCALE_PARALLEL in flight, $SCALE_ROUNDS runs per runtime"
DAEMONS=()
for rt in "${ACTIVE[@]}"; do DAEMONS+=(-daemon "$rt=${PID[$rt]}"); done
run_child -o "$SAMPLES" "$BIN/cribench" scale "${EPS[@]}" "${DAEMONS[@]}" -image "$BUSYBOX_IMG" \
	-pods "$SCALE_PODS" -parallel "$SCALE_PARALLEL" -rounds "$SCALE_ROUNDS" -logdir "$BW/podlogs" || true

# ------------------------------------------------------ RSS with N pods ---
revive
for rt in "${ACTIVE[@]}"; do
	log "$rt: RSS with $RSS_PODS pods running"
	run_child -o "$SAMPLES" "$BIN/cribench" pods -e "$rt=${EP[$rt]}" -pid "${PID[$rt]}" -n "$RSS_PODS" -logdir "$BW/podlogs" || true
done
revive
if [ ${#CRASHES[@]} -gt 0 ]; then
	for rt in "${ACTIVE[@]}"; do emit "$rt" "daemon crashes (restarted)" "${CRASHES[$rt]:-0}" count; done
fi

# ----------------------------------------------------------------- report ---
revive
meta=(-meta "date=$(date -u +%FT%TZ)"
	-meta "host=$(nproc) CPUs, $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r); load average $LOAD0 at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
	-meta "runc=$("$RUNC" --version | head -1)"
	-meta "state=$(if [ "$BENCH_FS" = ext4 ]; then echo "both runtimes' roots on a fresh ext4 with a journal ($BENCH_FS_SIZE loop-mounted sparse file, made for the run), their run/state roots on tmpfs as /run on a node; BENCH_FS=host puts them on the VM's root (ext4 without a journal)"; else echo "$(findmnt -no FSTYPE -T "$RUNTIME_DIR") at $RUNTIME_DIR (BENCH_FS=host)"; fi)"
	-meta "critest/crictl=cri-tools $CRI_TOOLS_VERSION"
	-meta "parameters=RUNS=$RUNS (crictl and gRPC samples), critest N=$N P=$P IP=$IP ROUNDS=$ROUNDS, realistic pull: $REALISTIC_RUNS samples, list: $LIST_CONTAINERS containers in $LIST_PODS pods, scale: $SCALE_PODS pods x 2 containers, $SCALE_PARALLEL in flight, $SCALE_ROUNDS runs, RSS: $RSS_PODS pods"
	-meta "method=runtimes alternate sample by sample (ABBA); crictl rows include crictl's own start-up (see the crictl version row); gRPC rows (RunPodSandbox ... List*, scale) are timed in-process by cribench; scale CPU: daemon = /proc/PID/stat utime+stime, cgroup = the cpuacct/cpu.stat usage of a cgroup holding the daemon and everything it forked (containerd shims, crivet monitors, runc until the container's init leaves it); critest rows come from critest -benchmark")
for rt in "${ACTIVE[@]}"; do
	bin=$CONTAINERD
	[ "$rt" = crivet ] && bin=$CRIVET
	meta+=(-meta "$rt=${VERSION[$rt]}($bin)")
done
"$BIN/cribench" report -in "$SAMPLES" -runtimes crivet,containerd -md "$RESULTS/latest.md" \
	-json "$RESULTS/bench-$STAMP.json" "${meta[@]}" "${ABSENT[@]}"
cp "$RESULTS/bench-$STAMP.json" "$RESULTS/latest.json"
log "results: $RESULTS/latest.md, $RESULTS/latest.json (raw: $RAW)"

# ------------------------------------------------- signature costs (Go) ---
# What verification adds, measured in-process by the image package's Go
# benchmarks (real registry, real signatures): pull of the same 1 MiB image
# unsigned, sigstore-key signed and keyless signed; the library's own
# keyless check; the create-time re-check cold and cached.
if [ "${SKIP_SIGNATURE_BENCH:-0}" != 1 ]; then
	log "signature costs (go test -bench in ./image)"
	if (cd "$REPO_ROOT" && go test -tags "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper" -run '^$' -bench 'Pull|PolicyCheck|Admit' -benchtime "${RUNS}x" -count 1 ./image/) >"$RAW/signature-bench.txt" 2>&1; then
		{
			echo
			echo "## Signature costs (Go benchmarks, ${RUNS} iterations each, mean per operation)"
			echo
			echo "| benchmark | ms/op |"
			echo "|---|---|"
			awk '/^Benchmark/ { name=$1; sub(/-[0-9]+$/, "", name); printf "| %s | %.2f |\n", name, $3/1e6 }' "$RAW/signature-bench.txt"
		} >>"$RESULTS/latest.md"
		log "signature costs appended to $RESULTS/latest.md"
	else
		log "warning: signature benchmarks failed; see $RAW/signature-bench.txt"
	fi
fi
cat "$RESULTS/latest.md"
