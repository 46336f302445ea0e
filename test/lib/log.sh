# shellcheck shell=bash
# Sourced by the harnesses that keep a results file (test/kubelet,
# test/cluster, test/kind): timestamped log lines, and one line per
# outcome in $RESULTS, which the caller sets (it may change it, as
# test/cluster does per runtime, before the first outcome).

log() { printf '%s %s\n' "$(date +%T)" "$*"; }
die() { log "FATAL: $*"; exit 1; }
pass() { log "PASS: $*"; echo "PASS: $*" >>"$RESULTS"; }
fail() { log "FAIL: $*"; echo "FAIL: $*" >>"$RESULTS"; }
gap() { log "GAP: $*"; echo "GAP: $*" >>"$RESULTS"; }   # works, but something kubelet could use is missing
note() { log "NOTE: $*"; echo "NOTE: $*" >>"$RESULTS"; } # what kubelet does by design, recorded

# now / since T0: seconds since the epoch, and the seconds since T0 (one
# decimal), for the harnesses' timings.
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc | xargs printf '%.1f'; }

# results_summary: the counts and every FAIL and GAP line of $RESULTS;
# fails (the harness's exit status) when any case failed.
results_summary() {
	log "results ($RESULTS):"
	grep -c '^PASS' "$RESULTS" | sed 's/^/  passed: /'
	grep -c '^FAIL' "$RESULTS" | sed 's/^/  failed: /'
	grep -E '^(FAIL|GAP)' "$RESULTS"
	! grep -q '^FAIL' "$RESULTS"
}
