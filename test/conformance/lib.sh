# shellcheck shell=bash
# lib.sh: shared code of the conformance (test/conformance/run.sh) and
# benchmark (test/bench/run.sh) harnesses. Sourced, never executed.
#
# Everything the harnesses create lives under $WORK (test/conformance/_work,
# git-ignored) except what the tools force elsewhere:
#   - the CNI bridge $CNI_BRIDGE (crivetcni0) and, when port mappings are
#     used, the CNI portmap nat chains (removed again if we created them);
#   - /run/containerd/s: containerd 1.6 hard-codes its shim sockets there;
#   - net.ipv4.ip_forward (the bridge plugin sets it; restored on cleanup);
#   - 1 MiB host shm segments that critest's HostIpc specs leave (removed).
# Processes are stopped by the PIDs recorded in $STATE. Network traffic goes
# only to 127.0.0.1 and the bridge.

CONFORMANCE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$CONFORMANCE_DIR/../.." && pwd)
WORK=${WORK:-$CONFORMANCE_DIR/_work}
BIN=$WORK/bin
LOGS=$WORK/logs
STATE=$WORK/state # pid files and saved host state
TOOLS_DIR=$CONFORMANCE_DIR/tools

CRI_TOOLS_VERSION=v1.37.0
REGISTRY=${REGISTRY:-127.0.0.1:5000}
REGISTRY_BIN=${REGISTRY_BIN:-/usr/bin/docker-registry}
MIRRORED_REGISTRIES="gcr.io registry.k8s.io k8s.gcr.io"
SANDBOX_IMAGE=${SANDBOX_IMAGE:-$REGISTRY/crivet-test/pause:3.9}
# deb (Debian's dynamic busybox) by default: its shell execs applets as the
# busybox images do, which critest's MaskedPaths spec relies on.
BUSYBOX_FLAVOR=${BUSYBOX_FLAVOR:-deb}

CNI_NETWORK=crivet-test
CNI_BRIDGE=${CNI_BRIDGE:-crivetcni0}
CNI_SUBNET=${CNI_SUBNET:-10.189.0.0/16}
CNI_PLUGIN_DIR=${CNI_PLUGIN_DIR:-/usr/lib/cni}
CNI_CONF_DIR=$WORK/cni/net.d
CNI_IPAM_DIR=$WORK/cni/ipam

CRIVET=${CRIVET:-$REPO_ROOT/bin/crivet}
# RUNTIME_DIR: where both runtimes keep their state (the bench may put it on
# its own file system); the rest of $WORK stays where it is.
RUNTIME_DIR=${RUNTIME_DIR:-$WORK}
CRIVET_DIR=$RUNTIME_DIR/crivet
CRIVET_SOCK=$CRIVET_DIR/crivet.sock
CRIVET_CONF=$CRIVET_DIR/etc
# NRI: crivet.toml enables it on this socket and critest's 13 NRI specs
# connect their plugins there (-nri-socket). CRIVET_NRI=0 leaves it off.
CRIVET_NRI=${CRIVET_NRI:-1}
CRIVET_NRI_SOCK=$CRIVET_DIR/nri.sock
CRIVET_LOG_LEVEL=${CRIVET_LOG_LEVEL:-info}

CONTAINERD=${CONTAINERD:-/usr/bin/containerd}
CONTAINERD_DIR=$RUNTIME_DIR/containerd
CONTAINERD_SOCK=$CONTAINERD_DIR/run/containerd.sock
RUNC=${RUNC:-/usr/sbin/runc}
# CRIVET_RUNC: crivet's default handler ("runc"); run.sh sets bin/runc.
# TEST_HANDLER: a second handler configured in crivet.toml (the name
# Kubernetes' node tests use), run by TEST_HANDLER_RUNC on its own root.
TEST_HANDLER=${TEST_HANDLER-test-handler}

CRICTL=${CRICTL:-$BIN/crictl}
CRITEST=${CRITEST:-$BIN/critest}
CRICTL_CONFIG=$WORK/crictl.yaml

export GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false"
export PATH=$BIN:$PATH:/usr/sbin:/sbin

mkdir -p "$BIN" "$LOGS" "$STATE"

exec {LOG_FD}>&2 # log() writes here, whatever the redirections of its caller
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&"$LOG_FD"; }
die() {
	log "ERROR: $*"
	exit 1
}

# ------------------------------------------------------------- processes ---

# pid_alive PIDFILE [EXE]: the recorded process runs (and is EXE).
pid_alive() {
	local f=$1 exe=${2:-} pid
	[ -s "$f" ] || return 1
	pid=$(cat "$f")
	[ -d "/proc/$pid" ] || return 1
	[ -z "$exe" ] && return 0
	local cur
	cur=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
	# a binary rebuilt while it runs shows as "PATH (deleted)"
	[ "${cur% (deleted)}" = "$(readlink -f "$exe")" ]
}

# stop_pidfile PIDFILE [EXE] [TIMEOUT]: SIGTERM the recorded pid, SIGKILL after TIMEOUT s.
stop_pidfile() {
	local f=$1 exe=${2:-} t=${3:-20} pid i
	if ! pid_alive "$f" "$exe"; then
		rm -f "$f"
		return 0
	fi
	pid=$(cat "$f")
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < t * 10; i++)); do
		[ -d "/proc/$pid" ] || break
		sleep 0.1
	done
	if [ -d "/proc/$pid" ]; then
		log "pid $pid did not stop in ${t}s; SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.2
	fi
	rm -f "$f"
}

# pids_referencing STRING...: pids (other than ours) whose command line contains one of the strings.
pids_referencing() {
	local p cmd s
	for p in /proc/[0-9]*; do
		[ "${p#/proc/}" = $$ ] && continue
		cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
		for s in "$@"; do
			case "$cmd" in *"$s"*)
				echo "${p#/proc/}"
				break
				;;
			esac
		done
	done
}

# run_child OUTFILE CMD...: run CMD in the background, stdout and stderr
# to OUTFILE; run_child -o OUTFILE CMD...: stdout appended to OUTFILE,
# stderr to the harness's stderr. Then wait for it. A signal to the harness
# interrupts the wait at once (bash defers traps until a foreground command
# ends), and cleanup_all stops the child by its PID. (Output is redirected
# here, not around the call: a trap runs inside the function, with the
# function's redirections.)
CHILD_PID=
run_child() {
	local rc=0 out
	if [ "$1" = -o ]; then
		out=$2
		shift 2
		"$@" >>"$out" 2>&"$LOG_FD" &
	else
		out=$1
		shift
		"$@" >"$out" 2>&1 &
	fi
	CHILD_PID=$!
	wait "$CHILD_PID" || rc=$?
	CHILD_PID=
	return "$rc"
}

kill_child() {
	local pid=${CHILD_PID:-} i
	[ -n "$pid" ] && [ -d "/proc/$pid" ] || return 0
	log "stopping child process $pid"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		[ -d "/proc/$pid" ] || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

# ----------------------------------------------------------------- tools ---

gobuild() { # OUT PKG (in the current module)
	CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags='-s -w -buildid=' -o "$1" "$2"
}

# cri_tools_version BINARY: the sigs.k8s.io/cri-tools module version built into it.
cri_tools_version() {
	go version -m "$1" 2>/dev/null | awk '($1=="mod" || $1=="dep") && $2=="sigs.k8s.io/cri-tools" {print $3; exit}'
}

# ensure_tools: the harness's own programs, crictl and critest v1.37.0.
ensure_tools() {
	command -v go >/dev/null || die "go is not on PATH"
	local m
	# The pause image runs crivet's own infra program: one pause, not two.
	(cd "$REPO_ROOT" && gobuild "$BIN/pause" ./cmd/crivet-pause) || die "building pause failed"
	(cd "$TOOLS_DIR" && for m in nnp mkimages critestsum; do gobuild "$BIN/$m" "./$m" || exit 1; done) ||
		die "building the harness tools failed"
	(cd "$TOOLS_DIR/cri" && gobuild "$BIN/cribench" ./cribench) || die "building cribench failed"
	if [ "$CRITEST" = "$BIN/critest" ] && { [ ! -x "$CRITEST" ] || [ "$TOOLS_DIR/cri/go.sum" -nt "$CRITEST" ]; }; then
		log "building critest $CRI_TOOLS_VERSION (go test -c; takes a few minutes the first time)"
		(cd "$TOOLS_DIR/cri" && nice -n 10 go test -c -o "$CRITEST.tmp" sigs.k8s.io/cri-tools/cmd/critest) ||
			die "building critest failed"
		mv "$CRITEST.tmp" "$CRITEST"
	fi
	if [ "$CRICTL" = "$BIN/crictl" ] && [ "$(cri_tools_version "$CRICTL")" != "$CRI_TOOLS_VERSION" ]; then
		log "installing crictl $CRI_TOOLS_VERSION"
		(cd "$WORK" && GOFLAGS=-buildvcs=false GOBIN=$BIN nice -n 10 go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION") ||
			die "go install crictl failed"
	fi
	[ -x "$CRICTL" ] || die "crictl not found: $CRICTL"
	[ -x "$CRITEST" ] || die "critest not found: $CRITEST"
	printf 'timeout: 120\ndebug: false\npull-image-on-create: false\n' >"$CRICTL_CONFIG"
}

cri() { # ENDPOINT crictl-args...
	local ep=$1
	shift
	"$CRICTL" --config "$CRICTL_CONFIG" -r "$ep" -i "$ep" "$@"
}

# -------------------------------------------------------------- registry ---

registry_up() { curl -fsS -o /dev/null --max-time 2 "http://$REGISTRY/v2/" 2>/dev/null; }

registry_start() {
	local pidf=$STATE/registry.pid conf=$WORK/registry/config.yml i
	if pid_alive "$pidf" "$REGISTRY_BIN"; then
		log "registry already running (pid $(cat "$pidf"))"
		return 0
	fi
	registry_up && die "something we did not start answers on http://$REGISTRY; stop it or set REGISTRY=127.0.0.1:PORT"
	[ -x "$REGISTRY_BIN" ] || die "$REGISTRY_BIN missing (apt-get install docker-registry)"
	mkdir -p "$WORK/registry/data"
	cat >"$conf" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $REGISTRY
  headers:
    X-Content-Type-Options: [nosniff]
EOF
	setsid "$REGISTRY_BIN" serve "$conf" >>"$LOGS/registry.log" 2>&1 </dev/null &
	echo $! >"$pidf"
	for ((i = 0; i < 100; i++)); do
		registry_up && break
		sleep 0.1
	done
	registry_up || die "registry did not come up; see $LOGS/registry.log"
	log "registry on http://$REGISTRY (pid $(cat "$pidf"), data $WORK/registry/data)"
}

registry_stop() { stop_pidfile "$STATE/registry.pid" "$REGISTRY_BIN" 10; }

# ---------------------------------------------------------------- images ---

# build_images [MKIMAGES-FLAGS]: build every test image (reproducibly) and push it to $REGISTRY.
build_images() {
	local bb=/usr/bin/busybox libs="" deb
	case "$BUSYBOX_FLAVOR" in
	static)
		[ -x "$bb" ] || die "$bb missing (apt-get install busybox-static)"
		;;
	deb)
		# Debian's dynamic busybox (its ash execs /bin/<applet>, as the busybox
		# images do) plus the host's libc; fetched with apt-get download, never installed.
		mkdir -p "$WORK/cache"
		deb=$(ls "$WORK"/cache/busybox_*.deb 2>/dev/null | head -1 || true)
		if [ -z "$deb" ]; then
			(cd "$WORK/cache" && { apt-get download busybox >&2 || { apt-get update -qq >&2 && apt-get download busybox >&2; }; }) ||
				die "apt-get download busybox failed"
			deb=$(ls "$WORK"/cache/busybox_*.deb | head -1)
		fi
		rm -rf "$WORK/cache/busybox-deb" && dpkg-deb -x "$deb" "$WORK/cache/busybox-deb"
		bb=$WORK/cache/busybox-deb/bin/busybox
		libs=$(ldd "$bb" | awk '$2=="=>"{print $3} $1 ~ /^\//{print $1}' | paste -sd, -)
		;;
	*) die "BUSYBOX_FLAVOR must be static or deb" ;;
	esac
	log "building and pushing test images (busybox $BUSYBOX_FLAVOR: $("$bb" 2>&1 | head -1 | cut -d' ' -f1-2))"
	"$BIN/mkimages" -busybox "$bb" -libs "$libs" -pause "$BIN/pause" -nnp "$BIN/nnp" \
		-out "$WORK/images/oci" -registry "$REGISTRY" -tsv "$WORK/images/images.tsv" "$@" ||
		die "building the test images failed"
}

# --------------------------------------------------------- host state, CNI ---

# save_host_state: remember what cleanup must restore (kept across a crash:
# a later run restores the state saved by the first one).
save_host_state() {
	if [ ! -f "$STATE/nat-chains.orig" ] && iptables -t nat -S CNI-HOSTPORT-DNAT >/dev/null 2>&1; then
		log "note: CNI portmap chains exist before this run (not ours); they will be left in place"
	fi
	[ -f "$STATE/ip_forward.orig" ] || cat /proc/sys/net/ipv4/ip_forward >"$STATE/ip_forward.orig"
	[ -f "$STATE/nat-chains.orig" ] || { iptables -t nat -S 2>/dev/null || true; } | awk '$1=="-N"{print $2}' | sort >"$STATE/nat-chains.orig"
	[ -f "$STATE/shm.orig" ] || awk 'NR>1{print $2}' /proc/sysvipc/shm | sort >"$STATE/shm.orig"
	[ -f "$STATE/netns.orig" ] || { ls /run/netns 2>/dev/null || true; } | sort >"$STATE/netns.orig"
}

write_cni_config() {
	mkdir -p "$CNI_CONF_DIR" "$CNI_IPAM_DIR"
	[ -x "$CNI_PLUGIN_DIR/bridge" ] || die "CNI plugins missing in $CNI_PLUGIN_DIR (apt-get install containernetworking-plugins)"
	# No default route and no masquerade: pods reach only the bridge subnet.
	cat >"$CNI_CONF_DIR/10-$CNI_NETWORK.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$CNI_SUBNET" }]],
        "dataDir": "$CNI_IPAM_DIR"
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
}

# cleanup_network: remove the bridge, the portmap rules/chains of our network,
# the portmap top-level chains if we created them and they are empty, and
# restore ip_forward.
cleanup_network() {
	local ch rule
	if ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
		ip link del "$CNI_BRIDGE" 2>/dev/null || log "could not delete bridge $CNI_BRIDGE"
	fi
	if [ -f "$STATE/nat-chains.orig" ]; then
		# per-container portmap chains whose rules name our network
		iptables -t nat -S 2>/dev/null | grep -F "\"$CNI_NETWORK\"" | grep '^-A CNI-HOSTPORT-' |
			while read -r rule; do
				ch=$(echo "$rule" | awk '{for(i=1;i<NF;i++) if($i=="-j") print $(i+1)}')
				# shellcheck disable=SC2086
				eval "iptables -t nat ${rule/#-A/-D}" 2>/dev/null || true
				case "$ch" in CNI-DN-* | CNI-SN-*)
					iptables -t nat -F "$ch" 2>/dev/null || true
					iptables -t nat -X "$ch" 2>/dev/null || true
					;;
				esac
			done
		# top-level chains created during our runs, if nobody's rule is left in them
		if ! grep -qx CNI-HOSTPORT-DNAT "$STATE/nat-chains.orig" &&
			iptables -t nat -S CNI-HOSTPORT-DNAT >/dev/null 2>&1 &&
			! iptables -t nat -S CNI-HOSTPORT-DNAT | grep -q '^-A'; then
			iptables -t nat -D PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT 2>/dev/null || true
			iptables -t nat -D OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT 2>/dev/null || true
			iptables -t nat -D POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ 2>/dev/null || true
			for ch in CNI-HOSTPORT-MASQ CNI-HOSTPORT-SETMARK CNI-HOSTPORT-DNAT; do
				grep -qx "$ch" "$STATE/nat-chains.orig" && continue
				iptables -t nat -F "$ch" 2>/dev/null || true
				iptables -t nat -X "$ch" 2>/dev/null || true
			done
		fi
		rm -f "$STATE/nat-chains.orig"
	fi
	if [ -f "$STATE/ip_forward.orig" ]; then
		cat "$STATE/ip_forward.orig" >/proc/sys/net/ipv4/ip_forward || true
		rm -f "$STATE/ip_forward.orig"
	fi
}

# cleanup_shm: remove unattached 1 MiB SysV shm segments created since
# save_host_state (critest's HostIpc specs run `ipcmk -M 1048576` on the host
# and never remove them).
cleanup_shm() {
	[ -f "$STATE/shm.orig" ] || return 0
	awk 'NR>1 && $4==1048576 && $7==0 {print $2}' /proc/sysvipc/shm | sort | comm -23 - "$STATE/shm.orig" |
		while read -r id; do
			ipcrm -m "$id" 2>/dev/null && log "removed host shm segment $id (critest HostIpc spec)"
		done
	rm -f "$STATE/shm.orig"
}

# warn about network namespaces left in /run/netns (not ours to remove blindly)
check_netns() {
	[ -f "$STATE/netns.orig" ] || return 0
	local left
	left=$({ ls /run/netns 2>/dev/null || true; } | sort | comm -23 - "$STATE/netns.orig" | tr '\n' ' ')
	[ -z "$left" ] || log "warning: network namespaces left in /run/netns since the run started: $left"
	rm -f "$STATE/netns.orig"
}

# ---------------------------------------------------- runtime leftovers ---

# unmount_under DIR...: unmount every mount point below the dirs, deepest first.
# run_on_tmpfs DIR: with RUN_ON_TMPFS=1, DIR (a runtime's state/run root)
# is a tmpfs, as /run is on a node; the runtime's cleanup unmounts it.
run_on_tmpfs() {
	[ "${RUN_ON_TMPFS:-0}" = 1 ] || return 0
	mountpoint -q "$1" || mount -t tmpfs -o mode=0711 tmpfs "$1" || die "cannot mount a tmpfs on $1"
}

unmount_under() {
	local d m
	for d in "$@"; do
		[ -d "$d" ] || continue
		d=$(readlink -f "$d")
		awk -v d="$d" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r |
			while read -r m; do
				m=$(printf '%b' "$m") # mountinfo octal escapes
				umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
			done
	done
}

# kill_runc_containers DIR...: delete every runc container whose state lives under the dirs.
kill_runc_containers() {
	local f dir
	for f in $(find "$@" -name state.json -path '*/*/state.json' 2>/dev/null); do
		dir=$(dirname "$f")
		"$RUNC" --root "$(dirname "$dir")" delete --force "$(basename "$dir")" >/dev/null 2>&1 &&
			log "deleted leftover runc container $(basename "$dir")"
	done
}

# pids_in_dirs DIR...: pids whose working directory is below one of the
# dirs (e.g. a `runc init` orphaned in its bundle when its shim was killed).
pids_in_dirs() {
	local p cwd d
	for p in /proc/[0-9]*; do
		[ "${p#/proc/}" = $$ ] && continue
		cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
		for d in "$@"; do
			case "$cwd/" in "$d"/*)
				echo "${p#/proc/}"
				break
				;;
			esac
		done
	done
}

# kill_pids_referencing DIR...: SIGKILL, by PID, leftover processes (shims,
# conmon, runc init) whose command line names one of the dirs (or a path
# below them) or whose working directory is below them.
kill_pids_referencing() {
	local p
	for p in $({ pids_referencing "$@"; pids_in_dirs "$@"; } | sort -u); do
		log "killing leftover process $p: $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | cut -c1-100)"
		kill -KILL "$p" 2>/dev/null || true
	done
}

# remove_dir DIR: unmount below DIR, then delete it (never crossing a mount).
remove_dir() {
	[ -d "$1" ] || return 0
	unmount_under "$1"
	rm -rf --one-file-system "$1" 2>/dev/null || log "could not remove all of $1"
}

# remove empty cgroup directories we may have caused (cgroupfs driver)
cleanup_cgroups() {
	local d
	for d in /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/*/crivet-bench-* /sys/fs/cgroup/crivet-bench-*; do
		[ -d "$d" ] && rmdir "$d" 2>/dev/null || true
	done
}

# ------------------------------------------------------------ containerd ---

containerd_endpoint() { echo "unix://$CONTAINERD_SOCK"; }

containerd_up() { [ -S "$CONTAINERD_SOCK" ] && cri "$(containerd_endpoint)" --timeout 2s version >/dev/null 2>&1; }

write_containerd_config() {
	local c=$CONTAINERD_DIR h
	mkdir -p "$c/root" "$c/run" "$c/certs.d/$REGISTRY"
	run_on_tmpfs "$c/run"
	cat >"$c/certs.d/$REGISTRY/hosts.toml" <<EOF
server = "http://$REGISTRY"
[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve", "push"]
  skip_verify = true
EOF
	# The public names critest uses are answered ONLY by the local registry.
	# (containerd 1.6 ignores a hosts.toml without a [host] table and then
	# falls back to the real upstream, so it always gets one.)
	for h in $MIRRORED_REGISTRIES; do
		mkdir -p "$c/certs.d/$h"
		cat >"$c/certs.d/$h/hosts.toml" <<EOF
server = "http://$REGISTRY"
[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
EOF
	done
	cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/run"
oom_score = 0

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"

[debug]
  address = ""
  level = "${CONTAINERD_LOG_LEVEL:-info}"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$c/root/opt"

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$SANDBOX_IMAGE"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    netns_mounts_under_state_dir = true
    enable_selinux = false
    disable_tcp_service = true
    max_container_log_line_size = 16384
    # Root here lacks CAP_SYS_RESOURCE: lowering oom_score_adj fails in runc
    # ("can't get final child's PID from pipe"); clamp to containerd's own.
    restrict_oom_score_adj = true

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "$RUNC"
          Root = "$c/run/runc"
          SystemdCgroup = false

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$CNI_PLUGIN_DIR"
      conf_dir = "$CNI_CONF_DIR"
      max_conf_num = 1

    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$c/certs.d"
EOF
}

containerd_start() {
	local pidf=$STATE/containerd.pid i
	if pid_alive "$pidf" "$CONTAINERD"; then
		log "containerd already running (pid $(cat "$pidf"))"
		return 0
	fi
	[ -x "$CONTAINERD" ] || die "$CONTAINERD missing"
	[ ${#CONTAINERD_SOCK} -le 100 ] || die "socket path too long ($CONTAINERD_SOCK); set WORK to a shorter dir"
	containerd_cleanup # leftovers of an earlier, interrupted run
	write_cni_config
	write_containerd_config
	setsid "$CONTAINERD" --config "$CONTAINERD_DIR/config.toml" >>"$LOGS/containerd.log" 2>&1 </dev/null &
	echo $! >"$pidf"
	for ((i = 0; i < 150; i++)); do
		containerd_up && break
		pid_alive "$pidf" || break
		sleep 0.2
	done
	containerd_up || die "containerd did not come up; see $LOGS/containerd.log"
	log "containerd $("$CONTAINERD" --version | awk '{print $3}') on $(containerd_endpoint) (pid $(cat "$pidf"))"
}

containerd_pid() { cat "$STATE/containerd.pid" 2>/dev/null; }

# containerd_cleanup: remove leftovers (shims, runc containers, mounts, state).
containerd_cleanup() {
	kill_pids_referencing "$CONTAINERD_DIR"
	kill_runc_containers "$CONTAINERD_DIR/run/runc"
	remove_dir "$CONTAINERD_DIR"
	rmdir /run/containerd/s /run/containerd 2>/dev/null || true
}

containerd_stop() {
	local pidf=$STATE/containerd.pid
	if pid_alive "$pidf" "$CONTAINERD" && containerd_up; then
		cri "$(containerd_endpoint)" --timeout 60s rmp -a -f >/dev/null 2>&1 || true
	fi
	if [ -s "$pidf" ]; then
		stop_pidfile "$pidf" "$CONTAINERD" 30
		log "containerd stopped"
	fi
	containerd_cleanup
}

# ---------------------------------------------------------------- crivet ---

crivet_endpoint() { echo "unix://$CRIVET_SOCK"; }

crivet_up() { [ -S "$CRIVET_SOCK" ] && cri "$(crivet_endpoint)" --timeout 2s version >/dev/null 2>&1; }

crivet_pid() { cat "$STATE/crivet.pid" 2>/dev/null; }

# write_crivet_config: registries.conf that REWRITES the registries critest
# uses to the local one (never [[registry.mirror]]: on a miss the library
# would fall back to the real upstream), a permissive policy.json.
write_crivet_config() {
	local h
	mkdir -p "$CRIVET_CONF/registries.d" "$CRIVET_CONF/policies"
	{
		echo "# crivet conformance/bench: every other setting is given as a flag (see ../command.txt)"
		if [ -n "$TEST_HANDLER" ]; then
			printf '\n# A second RuntimeClass handler: its own runc root.\n[runtimes.%s]\nruntime_path = "%s"\n' \
				"$TEST_HANDLER" "${TEST_HANDLER_RUNC:-$(crivet_runc)}"
		fi
		if [ "$CRIVET_NRI" = 1 ]; then
			# critest's synchronization specs hold a plugin's Synchronize
			# for 2 s; NRI's default request timeout (2 s) would drop it.
			printf '\n# NRI plugins (critest -nri-socket).\n[nri]\nenable = true\nsocket_path = "%s"\nplugin_path = "%s"\nplugin_config_path = "%s"\nrequest_timeout = "10s"\n' \
				"$CRIVET_NRI_SOCK" "$CRIVET_DIR/nri/plugins" "$CRIVET_DIR/nri/conf.d"
		fi
	} >"$CRIVET_CONF/crivet.toml"
	{
		echo "# crivet conformance: every registry critest names is served by $REGISTRY."
		echo 'unqualified-search-registries = []'
		echo 'short-name-mode = "disabled"'
		for h in $MIRRORED_REGISTRIES; do
			printf '\n[[registry]]\nprefix = "%s"\nlocation = "%s"\ninsecure = true\n' "$h" "$REGISTRY"
		done
		printf '\n[[registry]]\nprefix = "%s"\nlocation = "%s"\ninsecure = true\n' "$REGISTRY" "$REGISTRY"
		# never leave the machine, even for a name critest does not use
		for h in docker.io quay.io ghcr.io; do
			printf '\n[[registry]]\nprefix = "%s"\nlocation = "%s"\nblocked = true\n' "$h" "$h"
		done
	} >"$CRIVET_CONF/registries.conf"
	cat >"$CRIVET_CONF/policy.json" <<'EOF'
{
  "default": [{ "type": "insecureAcceptAnything" }],
  "transports": { "docker-daemon": { "": [{ "type": "insecureAcceptAnything" }] } }
}
EOF
}

# crivet_runc: the runc of crivet's default handler.
crivet_runc() { echo "${CRIVET_RUNC:-$RUNC}"; }

# crivet_has_flag NAME: `crivet --help` lists -NAME (Go flag style, one or two dashes).
crivet_has_flag() { grep -Eq -- "(^|[[:space:]])--?$1([[:space:]=,]|\$)" "$CRIVET_DIR/help.txt" 2>/dev/null; }

crivet_start() {
	local pidf=$STATE/crivet.pid i args f
	if pid_alive "$pidf" "$CRIVET"; then
		log "crivet already running (pid $(cat "$pidf"))"
		return 0
	fi
	[ -x "$CRIVET" ] || die "$CRIVET not found: build it first (make build) or set CRIVET=/path/to/crivet"
	[ ${#CRIVET_SOCK} -le 100 ] || die "socket path too long ($CRIVET_SOCK); set WORK to a shorter dir"
	crivet_cleanup
	write_cni_config
	write_crivet_config
	"$CRIVET" --help >"$CRIVET_DIR/help.txt" 2>&1 || true
	args=(--listen "$CRIVET_SOCK" --root "$CRIVET_DIR/root" --runroot "$CRIVET_DIR/run"
		--signature-policy "$CRIVET_CONF/policy.json" --signature-policy-dir "$CRIVET_CONF/policies"
		--registries-conf "$CRIVET_CONF/registries.conf" --registries-d "$CRIVET_CONF/registries.d"
		--log-level "$CRIVET_LOG_LEVEL")
	# Flags the daemon may not have (yet): passed only when --help lists them.
	# An explicit, empty --config keeps a host /etc/crivet/crivet.toml out.
	for f in "config=$CRIVET_CONF/crivet.toml" "cni-config-dir=$CNI_CONF_DIR" "cni-plugin-dir=$CNI_PLUGIN_DIR" \
		"pause-image=$SANDBOX_IMAGE" "runtime=$(crivet_runc)"; do
		if crivet_has_flag "${f%%=*}"; then
			args+=("--$f")
		else
			log "note: crivet has no --${f%%=*} flag; not passed"
		fi
	done
	# shellcheck disable=SC2206
	[ -z "${CRIVET_EXTRA_FLAGS:-}" ] || args+=($CRIVET_EXTRA_FLAGS)
	mkdir -p "$CRIVET_DIR/root" "$CRIVET_DIR/run"
	run_on_tmpfs "$CRIVET_DIR/run"
	printf '%q ' "$CRIVET" "${args[@]}" >"$CRIVET_DIR/command.txt"
	setsid "$CRIVET" "${args[@]}" >>"$LOGS/crivet.log" 2>&1 </dev/null &
	echo $! >"$pidf"
	for ((i = 0; i < 150; i++)); do
		crivet_up && break
		pid_alive "$pidf" || break
		sleep 0.2
	done
	crivet_up || {
		tail -n 20 "$LOGS/crivet.log" >&2
		die "crivet did not come up; see $LOGS/crivet.log"
	}
	log "crivet on $(crivet_endpoint) (pid $(cat "$pidf")); command in $CRIVET_DIR/command.txt"
}

crivet_cleanup() {
	kill_pids_referencing "$CRIVET_DIR"
	# Every handler's root is under run/ (runc, runc-<handler>); the
	# handlers' runc may be newer than $RUNC, so delete with crivet's.
	RUNC=$(crivet_runc) kill_runc_containers "$CRIVET_DIR/run" "$CRIVET_DIR/root"
	remove_dir "$CRIVET_DIR"
}

crivet_stop() {
	local pidf=$STATE/crivet.pid
	if pid_alive "$pidf" "$CRIVET" && crivet_up; then
		cri "$(crivet_endpoint)" --timeout 60s rmp -a -f >/dev/null 2>&1 || true
	fi
	if [ -s "$pidf" ]; then
		stop_pidfile "$pidf" "$CRIVET" 30
		log "crivet stopped"
	fi
	crivet_cleanup
}

# ------------------------------------------------------ runtime dispatch ---

# runtime_start NAME / runtime_stop NAME / runtime_endpoint NAME / runtime_pid NAME
runtime_start() { "${1}_start"; }
runtime_stop() { "${1}_stop"; }
runtime_endpoint() { "${1}_endpoint"; }
runtime_pid() { "${1}_pid"; }

# cleanup_all: stop everything the harness started and restore host state.
# Each step runs with errexit off (it is on the left of ||), so one failing
# step does not skip the others.
cleanup_all() {
	local step
	for step in kill_child crivet_stop containerd_stop registry_stop cleanup_network cleanup_shm check_netns cleanup_cgroups; do
		"$step" || log "cleanup step $step failed"
	done
}
