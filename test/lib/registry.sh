# shellcheck shell=bash
# Sourced by the harnesses with a lab registry of their own (test/kubelet,
# test/cluster, test/kind): Debian's docker-registry, plain HTTP, its data
# and config under $LAB/registry. The caller sets LAB and REG (host:port,
# a port no other harness uses) and defines log and die; the lab has
# $LAB/logs and, for push, $LAB/etc/registries.d.

port_free() { ! ss -ltn "sport = :$1" | grep -q LISTEN; }

# registry_running: a registry this lab started is still up.
registry_running() { [ -s "$LAB/registry/pid" ] && kill -0 "$(cat "$LAB/registry/pid")" 2>/dev/null; }

# registry_start: the registry on $REG, its pid in $LAB/registry/pid
# (stop it with stop_pid, test/lib/proc.sh). Started from / in a session
# of its own, without the harness's lock (fd 9) or terminal.
registry_start() {
	port_free "${REG##*:}" || die "something already listens on $REG"
	mkdir -p "$LAB/registry/data"
	cat >"$LAB/registry/config.yml" <<EOC
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $LAB/registry/data
  delete:
    enabled: true
http:
  addr: $REG
EOC
	(cd / && setsid docker-registry serve "$LAB/registry/config.yml" >"$LAB/logs/registry.log" 2>&1 9>&- </dev/null &)
	for _ in $(seq 50); do curl -fs "http://$REG/v2/" >/dev/null && break; sleep 0.2; done
	# setsid may fork: the pid is the server's, found by its own config path
	pgrep -f -x "docker-registry serve $LAB/registry/config.yml" | head -1 >"$LAB/registry/pid"
	curl -fs "http://$REG/v2/" >/dev/null || die "registry did not start on $REG, see $LAB/logs/registry.log"
}

# push NAME REPO:TAG: the image layout $LAB/images/NAME.dir as $REG/REPO:TAG.
push() {
	skopeo --registries.d "$LAB/etc/registries.d" copy -q --dest-tls-verify=false "dir:$LAB/images/$1.dir" "docker://$REG/$2" || die "push $2"
}
