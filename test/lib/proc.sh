# shellcheck shell=bash
# Sourced by the harnesses that run daemons of their own (test/kubelet,
# test/cluster, test/kind). The caller defines log.

# stop_pid PIDFILE [SECONDS]: SIGTERM the process the file names, SIGKILL
# it if it is still there after SECONDS (20), and remove the file.
stop_pid() {
	local f=$1 t=${2:-20} p
	[ -s "$f" ] || return 0
	p=$(cat "$f")
	if kill -0 "$p" 2>/dev/null; then
		kill -TERM "$p"
		for _ in $(seq $((t * 5))); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
		kill -0 "$p" 2>/dev/null && { log "pid $p ($f) ignored SIGTERM, killing"; kill -KILL "$p"; }
	fi
	rm -f "$f"
}
