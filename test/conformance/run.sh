#!/usr/bin/env bash
# test/conformance/run.sh: critest v1.37.0 validation against crivet (or
# containerd 1.6, to check the harness itself), fully offline.
#
#   run.sh [run]     build tools + images, start the registry and the runtime,
#                    run critest, print the summary, stop everything (default)
#   run.sh up        start registry + runtime and leave them running
#   run.sh down      stop whatever the harness started, restore host state
#   run.sh images    build and push the test images only
#   run.sh tools     build the harness tools, crictl and critest only
#
# Environment:
#   RUNTIME=crivet|containerd   runtime to start (default crivet; bin/crivet)
#   ENDPOINT=unix:///path.sock  test an already running runtime instead (not
#                               started or stopped here; it must rewrite gcr.io,
#                               registry.k8s.io, k8s.gcr.io to $REGISTRY itself)
#   FOCUS=regex SKIP=regex      passed to critest as -ginkgo.focus / -ginkgo.skip
#   BUSYBOX_FLAVOR=static|deb   base of the test images (see README.md)
#   KEEP=1                      leave registry and runtime running after the run
#   CRIVET_NRI=0                crivet without NRI (its 13 NRI specs then skip)
#   MIN_PASSED=N                fail a whole crivet run with NRI passing fewer
#                               specs (default 127; "" = no minimum)
#   CRIVET_RUNC=path            runc of crivet's default handler (default bin/runc,
#                               runc v1.5.3 from `make runc`)
#   TEST_HANDLER=name           second handler configured in crivet.toml (default
#                               test-handler; "" for none), run by TEST_HANDLER_RUNC
#                               (default: CRIVET_RUNC) on its own runc root
#   CRITEST_HANDLER=name        runtime handler critest runs every pod on (default
#                               $TEST_HANDLER for crivet, "" = the default handler)
#   CRIVET=path CRITEST=path CRICTL=path REGISTRY=127.0.0.1:5000 WORK=dir
#
# Exit status: 0 when every critest failure is listed in expected-failures.txt.
set -euo pipefail
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"

RUNTIME=${RUNTIME:-crivet}
case "$RUNTIME" in crivet | containerd) ;; *) die "RUNTIME must be crivet or containerd" ;; esac
CRIVET_RUNC=${CRIVET_RUNC:-$REPO_ROOT/bin/runc}
if [ "$RUNTIME" = crivet ]; then
	[ -x "$CRIVET_RUNC" ] || die "$CRIVET_RUNC not found: make runc (or set CRIVET_RUNC=/path/to/runc)"
	CRITEST_HANDLER=${CRITEST_HANDLER-$TEST_HANDLER}
else
	CRITEST_HANDLER=${CRITEST_HANDLER-}
fi
[ "$(id -u)" = 0 ] || die "must run as root (runtimes, mounts, CNI)"

exec 9>"$WORK/.lock"
flock -n 9 || die "another conformance or bench run holds $WORK/.lock"

start_env() {
	save_host_state
	registry_start
	build_images
	if [ -z "${ENDPOINT:-}" ]; then
		runtime_start "$RUNTIME"
	fi
}

run_critest() {
	local ep=$1 out rc=0 args t0 t1
	out=$WORK/results/critest-$RUNTIME-$(date +%Y%m%d-%H%M%S)
	mkdir -p "$out"
	for p in 12000 12001 12002 12003; do
		ss -Htln "sport = :$p" | grep -q . && log "warning: host port $p is in use; port specs may fail"
	done
	args=(-config "$CRICTL_CONFIG" -runtime-endpoint "$ep" -image-endpoint "$ep"
		-ginkgo.no-color -ginkgo.junit-report "$out/junit.xml")
	# Every pod on the named handler: handler selection and the
	# handler's own runc carry the whole suite.
	[ -z "$CRITEST_HANDLER" ] || args+=(-runtime-handler "$CRITEST_HANDLER")
	if [ "$RUNTIME" = crivet ] && [ -z "${ENDPOINT:-}" ] && [ "$CRIVET_NRI" = 1 ]; then
		args+=(-nri-socket "$CRIVET_NRI_SOCK")
	fi
	[ -z "${FOCUS:-}" ] || args+=(-ginkgo.focus "$FOCUS")
	[ -z "${SKIP:-}" ] || args+=(-ginkgo.skip "$SKIP")
	# shellcheck disable=SC2206
	[ -z "${CRITEST_EXTRA_FLAGS:-}" ] || args+=($CRITEST_EXTRA_FLAGS)
	printf '%q ' "$CRITEST" "${args[@]}" >"$out/command.txt"
	echo >>"$out/command.txt"
	log "critest $CRI_TOOLS_VERSION against $ep, runtime handler \"$CRITEST_HANDLER\" (log: $out/critest.log)"
	local loglines
	loglines=$(cat "$LOGS/$RUNTIME.log" 2>/dev/null | wc -l)
	t0=$(date +%s)
	run_child "$out/critest.log" env -C "$out" "$CRITEST" "${args[@]}" || true
	t1=$(date +%s)
	log "critest finished in $((t1 - t0))s"
	grep -E '^Ran [0-9]+ of [0-9]+ Specs' "$out/critest.log" | tail -1 >&2 || true
	ln -sfn "$out" "$WORK/results/latest"
	# A whole crivet run with NRI must pass at least MIN_PASSED specs: the
	# NRI specs skip silently when -nri-socket is missing.
	local min=0
	if [ "$RUNTIME" = crivet ] && [ -z "${ENDPOINT:-}${FOCUS:-}${SKIP:-}" ] && [ "$CRIVET_NRI" = 1 ]; then
		min=${MIN_PASSED-127}
	fi
	"$BIN/critestsum" -junit "$out/junit.xml" -expected "$CONFORMANCE_DIR/expected-failures.txt" -min-passed "${min:-0}" \
		-cond "flavor=$BUSYBOX_FLAVOR" -failures-out "$out/failures.txt" | tee "$out/summary.txt" || rc=${PIPESTATUS[0]}
	if [ -z "${ENDPOINT:-}" ] && ! pid_alive "$STATE/$RUNTIME.pid"; then
		log "ERROR: $RUNTIME died during the run; last lines of $LOGS/$RUNTIME.log:"
		tail -n +"$((loglines + 1))" "$LOGS/$RUNTIME.log" | grep -m1 -A12 -E '^(panic|fatal error)' >&2 ||
			tail -n 12 "$LOGS/$RUNTIME.log" >&2
		echo "critest: $RUNTIME died during the run (see $LOGS/$RUNTIME.log)" | tee -a "$out/summary.txt"
		[ "$rc" != 0 ] || rc=1
	fi
	return "$rc"
}

cmd=${1:-run}
case "$cmd" in
tools)
	ensure_tools
	;;
images)
	ensure_tools
	registry_start
	build_images
	[ "${KEEP:-0}" = 1 ] || registry_stop
	;;
up)
	ensure_tools
	start_env
	ep=${ENDPOINT:-$(runtime_endpoint "$RUNTIME")}
	echo "registry: http://$REGISTRY   runtime: $ep"
	echo "crictl:   $CRICTL --config $CRICTL_CONFIG -r $ep -i $ep ..."
	echo "stop with: $0 down"
	;;
down)
	cleanup_all
	;;
run)
	ensure_tools
	if [ "${KEEP:-0}" != 1 ]; then
		trap 'log "cleaning up"; cleanup_all' EXIT
		trap 'exit 130' INT TERM
	fi
	start_env
	rc=0
	run_critest "${ENDPOINT:-$(runtime_endpoint "$RUNTIME")}" || rc=$?
	exit "$rc"
	;;
*)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 2
	;;
esac
