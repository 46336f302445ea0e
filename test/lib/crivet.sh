# shellcheck shell=bash
# Sourced by the harnesses that run crivet as a process of their own
# (test/kubelet, test/cluster): its configuration and its start and
# leftovers. The caller sets LAB, SOCK (crivet's socket), RUNROOT and RUNC
# (the default handler's runc) and defines CRICTL (crictl on $SOCK), log
# and die.

# debian_handler_toml: crivet.toml's second runtime handler, "debian", on
# Debian's runc 1.1.5 with a state root of its own.
debian_handler_toml() {
	printf '\n[runtimes.debian]\nruntime_path = "/usr/bin/runc"\nruntime_root = "%s/runc-debian"\n' "$RUNROOT"
}

# cni_bridge_conflist NAME BRIDGE SUBNET [IPAM]: a CNI conflist (printed)
# of the bridge plugin (host-local addresses from SUBNET) and portmap;
# IPAM is more of host-local's JSON, starting with a comma.
cni_bridge_conflist() {
	cat <<EOC
{
  "cniVersion": "1.0.0",
  "name": "$1",
  "plugins": [
    {"type": "bridge", "bridge": "$2", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$3"}]]${4:-}}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOC
}

# crivet_start [FLAG...]: crivet on $SOCK with the lab's configuration
# ($LAB/etc: crivet.toml, policy.json, policies/, registries.conf,
# registries.d/, net.d/), root $LAB/crivet/root and runroot $RUNROOT;
# FLAGs are added. Its pid is $LAB/crivet/pid, its log $LAB/logs/crivet.log.
# shellcheck disable=SC2120 # its arguments are optional
crivet_start() {
	setsid "$LAB/bin/crivet" --config "$LAB/etc/crivet.toml" --listen "$SOCK" \
		--root "$LAB/crivet/root" --runroot "$RUNROOT" \
		--signature-policy "$LAB/etc/policy.json" --signature-policy-dir "$LAB/etc/policies" \
		--registries-conf "$LAB/etc/registries.conf" --registries-d "$LAB/etc/registries.d" \
		--cni-config-dir "$LAB/etc/net.d" --cni-plugin-dir /usr/lib/cni \
		"$@" >>"$LAB/logs/crivet.log" 2>&1 9>&- &
	echo $! >"$LAB/crivet/pid"
	for _ in $(seq 100); do CRICTL version >/dev/null 2>&1 && return; sleep 0.2; done
	die "crivet did not start, see $LAB/logs/crivet.log"
}

# crivet_kill_leftovers: once crivet is stopped, the monitors and the
# default handler's runc containers it left.
crivet_kill_leftovers() {
	local p
	for p in $(pgrep -f "^$LAB/bin/crivet-monitor"); do log "leftover monitor pid $p"; kill -KILL "$p"; done
	for p in $(ls "$RUNROOT/runc" 2>/dev/null); do log "leftover runc container $p"; "$RUNC" --root "$RUNROOT/runc" delete -f "$p" 2>/dev/null; done
}
