# shellcheck shell=bash
# Case 12 of the kubelet lab (test/kubelet/run.sh sources this file): an
# NRI plugin (test/tools/nriplugin, NRI's own plugin stub) through kubelet.
# Needs from run.sh: LAB, NODE, REG, REPO, CRICTL, log/pass/fail,
# wait_for, add_pod, del_pod, pod_running, pod_gone, show_pod, stop_pid
# and pod (test/lib/manifests.sh).

# nri_config turns NRI on in the lab's crivet.toml, on the lab's own
# socket; no plugin is connected except while case 12 runs, so the other
# cases see crivet as it is with NRI on and idle.
nri_config() {
	mkdir -p "$LAB/nri-src"
	echo "from the NRI plugin's mount" >"$LAB/nri-src/marker"
	cat >>"$LAB/etc/crivet.toml" <<EOF_NRI
[nri]
enable = true
socket_path = "$LAB/nri.sock"
plugin_path = "$LAB/nri-plugins"
plugin_config_path = "$LAB/nri-conf"
EOF_NRI
	POD_CONTAINER=app POD_GRACE=5 pod nri default "$REG/lab/busybox:1.0" '["sh", "-c", "while true; do sleep 1; done"]' "" \
		"    imagePullPolicy: IfNotPresent" >"$LAB/pods/nri.yaml"
}

build_nriplugin() {
	(cd "$REPO" && nice go build -o "$LAB/bin/nriplugin" ./test/tools/nriplugin) \
		>"$LAB/logs/nriplugin-build.log" 2>&1 || die "nriplugin build failed, see $LAB/logs/nriplugin-build.log"
}

# nri_events: the plugin's events for pod $1 (kubelet's name), one
# "Event name" a line.
nri_events() {
	jq -r --arg p "$1-$NODE" 'select(.PodName==$p) | .Event + (if .Name != "" then " " + .Name else "" end)' "$LAB/nri-events.jsonl" 2>/dev/null
}

# Case 12: a plugin connected on crivet's NRI socket adjusts the container
# of a pod kubelet runs (env, a read-only bind mount, a device node, a
# memory limit), crictl info lists it, and it is told every step of the
# pod's life in order.
case_nri() {
	log "case 12: NRI plugin through kubelet"
	local cid out want got
	: >"$LAB/nri-events.jsonl"
	setsid "$LAB/bin/nriplugin" -socket "$LAB/nri.sock" -name adjust -idx 10 -mount-src "$LAB/nri-src" \
		-events "$LAB/nri-events.jsonl" >>"$LAB/logs/nriplugin.log" 2>&1 &
	echo $! >"$LAB/nriplugin.pid"
	if wait_for 30 connected sh -c "\"$LAB/bin/crictl\" -c \"$LAB/etc/crictl.yaml\" info | jq -e '.. | objects | select(.name? == \"10-adjust\")' >/dev/null"; then
		pass "12 crictl info lists the connected NRI plugin"
	else fail "12 plugin not listed by crictl info: $(tail -3 "$LAB/logs/nriplugin.log")"; stop_pid "$LAB/nriplugin.pid" 5; return; fi
	add_pod nri
	if wait_for 90 running pod_running nri; then pass "12 pod Running with the plugin connected"; else
		fail "12 nri pod not Running: $(show_pod nri)"; del_pod nri; stop_pid "$LAB/nriplugin.pid" 5; return; fi
	cid=$(CRICTL ps -q --name '^app$' --label io.kubernetes.pod.name=nri-"$NODE" | head -1)
	if out=$(CRICTL exec "$cid" sh -c 'echo "env=$NRI_TEST"; cat /nri/marker; ls -l /dev/nri-null; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max' 2>&1) &&
		echo "$out" | grep -qx 'env=adjusted' && echo "$out" | grep -qx 'from the NRI plugin.s mount' &&
		echo "$out" | grep -qE '^c.* 1, +3 .*/dev/nri-null$' && echo "$out" | grep -qx 67108864; then
		pass "12 the plugin's adjustment is in the container: $(echo "$out" | tr '\n' ' ')"
	else fail "12 adjustment in the container: $out"; fi
	del_pod nri
	if wait_for 120 gone pod_gone nri; then pass "12 nri pod removed"; else fail "12 nri pod still there: $(show_pod nri)"; fi
	stop_pid "$LAB/nriplugin.pid" 5
	# kubelet stops and removes the pod; the plugin hears each step once,
	# in order (the container's stop comes before the pod's).
	got=$(nri_events nri | grep -vE '^Synchronize' | tr '\n' ',')
	want="RunPodSandbox,CreateContainer app,PostCreateContainer app,StartContainer app,PostStartContainer app,StopContainer app,StopPodSandbox,RemoveContainer app,RemovePodSandbox,"
	if [ "$got" = "$want" ]; then pass "12 the plugin saw every step of the pod once, in order"
	else fail "12 plugin events: $got (want $want)"; fi
}
