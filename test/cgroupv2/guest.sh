#!/bin/bash
# Runs inside the cgroup-v2 guest (started by the crivet-cgroupv2-test unit
# that run.sh puts in the image), from the 9p share mounted at /payload:
# the test binaries one after the other, the whole output into
# /payload/out/test.log (also on the console), and the result into
# /payload/out/rc. The unit powers the guest off when this returns.
# The unit starts it with /bin/sh (dash): bash for pipefail.
[ -n "${BASH_VERSION:-}" ] || exec /bin/bash "$0" "$@"
set -u -o pipefail
P=/payload
OUT=$P/out
mkdir -p "$OUT"
: >"$OUT/test.log"
# bin/runc (make runc) first on PATH; crictl beside crivet.
export PATH=$P/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root CRIVET_BIN=$P/bin CRIVET_CRICTL=$P/bin/crictl CRIVET_RUNC=$P/bin/runc CRIVET_CGROUPV2_REQUIRED=1
. "$P/env" # what run.sh chose: CRIVET_CRASH_ROUNDS, …
log() { echo "$*" | tee -a "$OUT/test.log" >/dev/console; }
rc=0
log "guest: up after $(cut -d' ' -f1 /proc/uptime)s; kernel $(uname -r); /sys/fs/cgroup is $(stat -fc %T /sys/fs/cgroup); controllers: $(cat /sys/fs/cgroup/cgroup.controllers); PID 1 $(cat /proc/1/comm); $(runc --version | head -1)"
if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
	log "guest: FAIL: /sys/fs/cgroup is not cgroup v2"
	echo 1 >"$OUT/rc"
	exit 0
fi
# A heartbeat on the console whatever the tests print: run.sh takes a
# silent console for a stalled guest.
(while sleep 30; do echo "guest: heartbeat $(cut -d' ' -f1 /proc/uptime)s" >/dev/console; done) &
cd /tmp
# tests.list: lines "name binary flags…", run in order.
while read -r name binary args; do
	[ -n "$name" ] || continue
	start=$(cut -d' ' -f1 /proc/uptime)
	log "guest: === $name: $binary $args"
	# Copied to the guest's disk: exec over 9p works but is slower.
	cp "$P/tests/$binary" "/tmp/$binary"
	# shellcheck disable=SC2086
	"/tmp/$binary" -test.v -test.count=1 $args </dev/null 2>&1 | tee -a "$OUT/test.log" >/dev/console
	r=$?
	end=$(cut -d' ' -f1 /proc/uptime)
	log "guest: === $name: exit $r in $(awk "BEGIN{print $end - $start}")s"
	[ $r -eq 0 ] || rc=1
done <"$P/tests.list"
log "guest: done after $(cut -d' ' -f1 /proc/uptime)s, result $rc"
echo $rc >"$OUT/rc"
sync
# Power off now, without stopping units: leftovers of a failed test (a
# container, a monitor) could hold the unit's stop for minutes. The
# result is already on the host (9p writes through); the disk is a
# throw-away overlay.
systemctl poweroff --force --force
