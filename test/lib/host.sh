# shellcheck shell=bash
# Sourced by the harnesses that run a kubelet on this host (test/kubelet,
# test/cluster, test/node-e2e): lines recording what kubelet may change on
# the host, saved before a run so its cleanup undoes only the run's own.

# host_sysctls NAME...: "sysctl NAME VALUE" for each.
host_sysctls() {
	local s
	for s in "$@"; do echo "sysctl $s $(sysctl -n "$s")"; done
}

# host_chains: "chain IPT TABLE CHAIN" for each chain of the filter, nat
# and mangle tables, IPv4 and IPv6.
host_chains() {
	local ipt t
	for ipt in iptables ip6tables; do
		for t in filter nat mangle; do
			$ipt -t $t -S 2>/dev/null | awk -v i=$ipt -v t=$t '$1=="-N"{print "chain", i, t, $2}'
		done
	done
}
