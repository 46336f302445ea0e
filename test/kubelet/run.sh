#!/usr/bin/env bash
# A real kubelet (v1.37.2, standalone, static pods) against crivet, offline.
# See README.md beside this file. Run as root on Debian 12:
#
#   test/kubelet/run.sh          # build what is missing, start, run every case, clean up
#   KEEP=1 test/kubelet/run.sh   # same, but leave everything running (then: run.sh down)
#   test/kubelet/run.sh down     # stop and clean up whatever a KEEP=1 run left
#
# Everything lives in $LAB (default /var/tmp/kubelet-lab); the repository is
# only read (crivet is built from it into $LAB/bin). Traffic: 127.0.0.1 and
# the CNI bridge kllab0 (10.187.0.0/24) only.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAB=${LAB:-/var/tmp/kubelet-lab}
RUNROOT=${RUNROOT:-/run/kubelet-lab-crivet}
K8S_VERSION=v1.37.2
# A kubelet of $K8S_VERSION: $KUBELET if set, else one another harness
# built (test/lib/kubelet.sh), else built once per machine.
# runc for crivet's default handler: the one `make runc` builds (v1.5.x:
# id-mapped mounts, so user namespaces) where it is, else the one on PATH.
RUNC=${RUNC:-$REPO/bin/runc}
[ -x "$RUNC" ] || RUNC=$(command -v runc)
CRI_TOOLS=v1.37.0
REG=127.0.0.1:5001
NODE=kllab-node
BRIDGE=kllab0
SUBNET=10.187.0.0/24
TAGS="containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"
SOCK=$LAB/crivet.sock
RO=http://127.0.0.1:10255
CRICTL() { "$LAB/bin/crictl" -c "$LAB/etc/crictl.yaml" "$@"; }

RESULTS=$LAB/results.txt
# log, die, pass, fail, …: test/lib's libraries for crivet labs
# shellcheck source=test/lib/lab.sh
. "$REPO/test/lib/lab.sh"

[ "$(id -u)" = 0 ] || die "run as root"

# ---------------------------------------------------------------- building
build_kubelet() {
	local k
	kubelet_is "$LAB/bin/kubelet" && return
	k=$(kubelet_get) || die "no kubelet $K8S_VERSION: the build failed, see $(kubelet_cache)/build.log"
	log "kubelet $K8S_VERSION from $k"
	cp "$k" "$LAB/bin/kubelet"
}

# kubelet_get: a kubelet of $KUBELET_VERSION, found or built once per machine
# Set for the whole run: its functions read it when called, and a
# prefix assignment before "." lasts only while the file is read.
KUBELET_VERSION=$K8S_VERSION
# shellcheck source=test/lib/kubelet.sh
. "$REPO/test/lib/kubelet.sh"
# shellcheck source=test/kubelet/nri.sh
. "$REPO/test/kubelet/nri.sh" # case 12
. "$REPO/test/kubelet/checkpoint.sh" # case 11

# mkimage NAME MARKER: a one-layer OCI image in a dir: layout, from Debian's
# busybox-static; MARKER (written to /etc/image-name) makes each image distinct.
mkimage() {
	local name=$1 marker=$2 root=$LAB/images/$1.rootfs a
	rm -rf "$root"
	mkdir -p "$root"/{bin,etc,tmp,root}
	chmod 1777 "$root/tmp"
	cp /bin/busybox "$root/bin/busybox"
	for a in sh cat echo sleep mkdir httpd id hostname ip ls ps true kill wget touch stat grep; do ln -s busybox "$root/bin/$a"; done
	# uid 1000 is a member of group 5000 in the image: supplementalGroupsPolicy
	# Merge adds it, Strict must not
	printf 'root:x:0:0:root:/root:/bin/sh\nlab:x:1000:1000:lab:/tmp:/bin/sh\n' >"$root/etc/passwd"
	printf 'root:x:0:\nlabgroup:x:5000:lab\n' >"$root/etc/group"
	echo "$marker" >"$root/etc/image-name"
	oci_layout "$root" "$LAB/images/$name.dir" '{"Cmd": ["sh"]}' || die "image $name"
	rm -rf "$root"
}

# ---------------------------------------------------------------- host state
# What the run may create on the host, recorded before, so cleanup removes
# only what was not there.
save_host_state() {
	[ -s "$LAB/host-state" ] && return # a KEEP=1 run already recorded it
	{
		host_sysctls vm.overcommit_memory kernel.panic kernel.panic_on_oops
		for p in /var/lib/kubelet /var/log/pods /var/log/containers /usr/libexec/kubernetes; do [ -e "$p" ] && echo "existed $p"; done
		for c in /sys/fs/cgroup/*/kubepods; do [ -d "$c" ] && echo "existed $c"; done
		host_chains
	} >"$LAB/host-state"
}
existed() { grep -qxF "existed $1" "$LAB/host-state"; }
had_chain() { grep -qxF "chain $1 $2 $3" "$LAB/host-state"; }

# ---------------------------------------------------------------- daemons
write_config() {
	mkdir -p "$LAB"/{etc/policies,etc/registries.d,etc/net.d,keys,kubelet/manifests,kubelet/root,kubelet/certs,pods,registry/data,crivet,cni-data}
	: >"$LAB/etc/crivet.toml"
	# The default handler's runc ($RUNC: user namespaces need >= 1.2), and
	# a second handler on Debian's runc with its own state root (standalone
	# kubelet has no RuntimeClass objects to choose it: the kubeadm harness
	# runs a pod on it; here crictl info lists it with its features).
	printf 'runtime = "%s"\n' "$RUNC" >>"$LAB/etc/crivet.toml"
	# CDI (case 9): the lab's own spec directory; the device node is a
	# character device with /dev/null's numbers, made here.
	printf 'cdi_spec_dirs = ["%s"]\n' "$LAB/etc/cdi" >>"$LAB/etc/crivet.toml"
	mkdir -p "$LAB/etc/cdi"
	rm -f "$LAB/cdi-null" && mknod -m 0666 "$LAB/cdi-null" c 1 3
	cat >"$LAB/etc/cdi/crivet-lab.yaml" <<EOF
cdiVersion: "0.6.0"
kind: crivet.test/dev
devices:
- name: null0
  containerEdits:
    env: ["CRIVET_CDI_NULL0=injected"]
    deviceNodes:
    - path: /dev/crivet-null0
      hostPath: $LAB/cdi-null
EOF
	if [ -x /usr/bin/runc ] && [ "$RUNC" != /usr/bin/runc ]; then
		debian_handler_toml >>"$LAB/etc/crivet.toml"
	fi
	write_image_config
	cni_bridge_conflist kllab "$BRIDGE" "$SUBNET" ", \"dataDir\": \"$LAB/cni-data\"" >"$LAB/etc/net.d/10-kllab.conflist"
	# The per-namespace policy for kllab-strict (installed by case 2).
	signed_only_policy >"$LAB/etc/strict-policy.json"
	printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n' "$SOCK" "$SOCK" >"$LAB/etc/crictl.yaml"
	# Pull in another namespace (no policy file: the global one applies).
	printf '{"metadata": {"name": "prepull", "namespace": "kllab-loose", "uid": "kllab-prepull", "attempt": 0}, "log_directory": "/tmp", "linux": {}}\n' >"$LAB/etc/prepull-pod.json"
	cat >"$LAB/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: $LAB/kubelet/manifests
fileCheckFrequency: 5s
syncFrequency: 10s
cgroupDriver: cgroupfs
cgroupsPerQOS: true
enforceNodeAllocatable: []
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
address: 127.0.0.1
port: 10250
readOnlyPort: 10255
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://$SOCK
imageServiceEndpoint: unix://$SOCK
serializeImagePulls: false
resolvConf: ""
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
EOF
	mkpod hello default "$REG/lab/busybox:1.0"
	mkpod counter default "$REG/lab/busybox:1.0"
	# A pod asking for one crivet.test/null device, which the lab's device
	# plugin (test/tools/cdiplugin) allocates as CDI device
	# crivet.test/dev=null0: kubelet sends it in cdi_devices.
	POD_CONTAINER=dev pod cdi default "$REG/lab/busybox:1.0" '["sh", "-c", "while true; do sleep 1; done"]' "" \
		"$PULL"$'\n    resources:\n      limits: {crivet.test/null: "1"}' >"$LAB/pods/cdi.yaml"
	write_feature_pods
	mkpod strict-pull kllab-strict "$REG/lab/unsigned:1.0"
	mkpod strict-create kllab-strict "$REG/lab/unsigned:1.0"
	mkpod strict-signed kllab-strict "$REG/lab/signed:1.0"
	mkpod strict-alias kllab-strict "$REG/lab/busybox:1.0"
	POD_CONTAINER=web pod probe default "$REG/lab/busybox:1.0" '["sh", "-c", "echo ok > /tmp/ready; mkdir -p /www; echo hi > /www/index.html; exec httpd -f -p 8080 -h /www"]' "" "$PULL
    ports:
    - {containerPort: 8080, hostPort: 18080, hostIP: 127.0.0.1}
    readinessProbe:
      exec: {command: [\"cat\", \"/tmp/ready\"]}
      periodSeconds: 3
    livenessProbe:
      httpGet: {path: /index.html, port: 8080}
      periodSeconds: 5" >"$LAB/pods/probe.yaml"
}

# Static pods: kubelet's manifests ($LAB/pods, copied into its
# staticPodPath by add_pod), 5 s to stop, images pulled only when missing.
POD_GRACE=5
PULL="    imagePullPolicy: IfNotPresent"

# Pods that need a runtime feature kubelet admits only when the runtime's
# Status says the handler has it.
write_feature_pods() {
	local bb=$REG/lab/busybox:1.0 sleep='["sh", "-c", "exec sleep 3600"]'
	pod userns default "$bb" '["sh", "-c", "touch /scratch/written-in-userns && exec sleep 3600"]' \
		$'  hostUsers: false\n  volumes: [{name: scratch, emptyDir: {}}]' \
		"$PULL"$'\n    volumeMounts: [{name: scratch, mountPath: /scratch}]' >"$LAB/pods/userns.yaml"
	pod rro default "$bb" "$sleep" "  volumes: [{name: tree, hostPath: {path: $LAB/rro-tree, type: Directory}}]" \
		"$PULL"$'\n    volumeMounts: [{name: tree, mountPath: /tree, readOnly: true, recursiveReadOnly: Enabled}]' >"$LAB/pods/rro.yaml"
	pod sgp-strict default "$bb" "$sleep" \
		"  securityContext: {runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [4000], supplementalGroupsPolicy: Strict}" \
		"$PULL" >"$LAB/pods/sgp-strict.yaml"
}

# mkpod NAME NAMESPACE IMAGE: a pod whose container "hello" says hello
# every second.
mkpod() {
	POD_CONTAINER=hello pod "$1" "$2" "$3" '["sh", "-c", "while true; do echo hello; sleep 1; done"]' "" "$PULL" >"$LAB/pods/$1.yaml"
}

start_kubelet() {
	for p in 10248 10250 10255; do port_free $p || die "port $p in use (another kubelet?)"; done
	setsid "$LAB/bin/kubelet" --config "$LAB/kubelet/config.yaml" --root-dir "$LAB/kubelet/root" \
		--cert-dir "$LAB/kubelet/certs" --hostname-override "$NODE" --v=2 >>"$LAB/logs/kubelet.log" 2>&1 &
	echo $! >"$LAB/kubelet/pid"
	for _ in $(seq 120); do curl -fs http://127.0.0.1:10248/healthz >/dev/null && return; sleep 0.5; done
	die "kubelet did not become healthy, see $LAB/logs/kubelet.log"
}

stop_kubelet() {
	stop_pid "$LAB/kubelet/pid" 30
	while mountpoint -q "$LAB/kubelet/root"; do umount "$LAB/kubelet/root" || break; done
}

# ---------------------------------------------------------------- checks
pods_json() { curl -fs "$RO/pods"; }
pod_q() { # pod-name jq-filter-on-the-pod
	pods_json | jq -r --arg n "$1-$NODE" ".items[] | select(.metadata.name==\$n) | $2" 2>/dev/null
}
wait_for() { # seconds description command...
	local t=$1 what=$2
	shift 2
	for _ in $(seq "$t"); do "$@" && return 0; sleep 1; done
	return 1
}
pod_running() { [ "$(pod_q "$1" '.status.containerStatuses[0].state | has("running")')" = true ]; }
pod_ready() { [ "$(pod_q "$1" '.status.containerStatuses[0].ready')" = true ]; }
pod_reason() { [ "$(pod_q "$1" '.status.containerStatuses[0].state.waiting.reason // empty')" = "$2" ]; }
pod_gone() { [ -z "$(pod_q "$1" '.metadata.name')" ] && [ -z "$(CRICTL pods -q --name "^$1-$NODE\$" 2>/dev/null)" ]; }
add_pod() { cp "$LAB/pods/$1.yaml" "$LAB/kubelet/.$1.tmp" && mv "$LAB/kubelet/.$1.tmp" "$LAB/kubelet/manifests/$1.yaml"; }
del_pod() { rm -f "$LAB/kubelet/manifests/$1.yaml"; }
hello_restarted() { [ "$(pod_q hello '.status.containerStatuses[0].restartCount')" = 1 ]; }
show_pod() { pod_q "$1" '{phase: .status.phase, containerStatuses: [.status.containerStatuses[]? | {state, ready, restartCount}]}' | jq -c . 2>/dev/null; }

# leftovers: prints what a pod-less node should not have; empty when clean.
leftovers() {
	CRICTL pods -q 2>/dev/null | sed 's/^/sandbox /'
	CRICTL ps -aq 2>/dev/null | sed 's/^/container /'
	awk -v r="$RUNROOT" -v l="$LAB/crivet/root/storage/overlay/" '$5 ~ "^"r"/sandboxes" || index($5, l)==1 {print "mount " $5}' /proc/self/mountinfo
	ip -br link show master "$BRIDGE" 2>/dev/null | awk '{print "veth " $1}'
	pgrep -f "^$LAB/bin/crivet-monitor" | sed 's/^/monitor-pid /'
	ls "$RUNROOT/runc" 2>/dev/null | sed 's/^/runc-state /'
	ls "$RUNROOT/bundles" 2>/dev/null | sed 's/^/bundle /'
	ls /var/log/pods 2>/dev/null | grep -E '_(hello|probe|userns|rro|sgp-strict|strict-[a-z]+)-'"$NODE"'_' | sed 's/^/pod-log-dir /'
	ls "$LAB/cni-data/kllab" 2>/dev/null | grep -E '^10\.' | sed 's/^/ip-lease /'
	iptables -t nat -S 2>/dev/null | grep -E "10\.187\.|18080" | sed 's/^/nat-rule /'
}
is_clean() { [ -z "$(leftovers)" ]; }
check_clean() { # what
	if wait_for 120 clean is_clean; then
		pass "$1: nothing left (sandboxes, containers, mounts, veths, monitors, runc state, pod log dirs, IP leases, hostport rules)"
	else
		fail "$1: leftovers after 120 s: $(leftovers | tr '\n' ';')"
	fi
}

crivet_lines() { grep -v '^time="' "$LAB/logs/crivet.log" | grep -E "$1" | tail -n "${2:-1}"; }
kubelet_lines() { grep -E "$1" "$LAB/logs/kubelet.log" | tail -n "${2:-1}"; }

# ---------------------------------------------------------------- cases
case_hello() {
	log "case 1: static pod default/hello"
	add_pod hello
	if wait_for 90 running pod_running hello; then pass "1 hello Running: $(show_pod hello)"; else fail "1 hello not Running: $(show_pod hello)"; return; fi
	local f cid
	f=$(ls /var/log/pods/default_hello-"$NODE"_*/hello/0.log 2>/dev/null | head -1)
	sleep 3
	if [ -n "$f" ] && grep -qE '^[0-9T:.-]+Z stdout F hello$' "$f"; then
		pass "1 CRI log at $f: $(head -1 "$f")"
	else fail "1 no CRI log lines in /var/log/pods (${f:-no file})"; fi
	cid=$(CRICTL ps -q --name '^hello$' --label io.kubernetes.pod.namespace=default | head -1)
	if out=$(CRICTL exec "$cid" sh -c 'echo exec-ok; cat /etc/image-name' 2>&1) && echo "$out" | grep -q exec-ok; then
		pass "1 crictl exec: $(echo "$out" | tr '\n' ' ')"
	else fail "1 crictl exec: $out"; fi
	# kill the container's process: kubelet must see the exit and restart it
	local pid
	pid=$("$RUNC" --root "$RUNROOT/runc" state "$cid" 2>/dev/null | jq -r .pid)
	if [ -n "$pid" ] && [ "$pid" != null ] && kill -KILL "$pid" &&
		wait_for 60 restart hello_restarted && wait_for 30 running pod_running hello; then
		pass "1 restart after kill -9: $(show_pod hello)"
	else fail "1 restart after kill -9 (pid ${pid:-?}): $(show_pod hello)"; fi
	del_pod hello
	if wait_for 120 gone pod_gone hello; then pass "1 manifest deleted: pod stopped and removed"; else fail "1 pod still there after manifest deletion: $(show_pod hello) $(CRICTL pods --name hello 2>&1 | tail -n +2)"; fi
	check_clean "1 after hello"
}

case_strict_pull() {
	log "case 2: per-namespace policy kllab-strict, unsigned image not on the node"
	cp "$LAB/etc/strict-policy.json" "$LAB/etc/policies/kllab-strict.json"
	add_pod strict-pull
	if wait_for 90 reason pod_reason strict-pull SignatureValidationFailed; then
		pass "2 pull rejected, waiting reason SignatureValidationFailed: $(pod_q strict-pull '.status.containerStatuses[0].state.waiting.message')"
	else fail "2 expected waiting reason SignatureValidationFailed: $(show_pod strict-pull)"; fi
	if CRICTL images -q "$REG/lab/unsigned:1.0" 2>/dev/null | grep -q .; then fail "2 rejected image is on the node"; else pass "2 rejected image not stored"; fi
	echo "  crivet: $(crivet_lines 'signature policy decision.*outcome=rejected')"
	echo "  kubelet: $(kubelet_lines 'PullImage from image service failed')"
	del_pod strict-pull
	wait_for 120 gone pod_gone strict-pull || fail "2 strict-pull not removed"
}

case_strict_create() {
	log "case 3: same image pre-pulled in namespace kllab-loose, then used in kllab-strict"
	if out=$(CRICTL pull --pod-config "$LAB/etc/prepull-pod.json" "$REG/lab/unsigned:1.0" 2>&1); then pass "3 pre-pull in kllab-loose: $out"; else fail "3 pre-pull: $out"; return; fi
	add_pod strict-create
	if wait_for 90 reason pod_reason strict-create CreateContainerError; then
		local m
		m=$(pod_q strict-create '.status.containerStatuses[0].state.waiting.message')
		case $m in SignatureValidationFailed*) pass "3 CreateContainerError: $m" ;; *) fail "3 CreateContainerError without SignatureValidationFailed: $m" ;; esac
	else fail "3 expected CreateContainerError: $(show_pod strict-create)"; fi
	if [ -z "$(CRICTL ps -aq --name '^hello$' --label io.kubernetes.pod.namespace=kllab-strict)" ]; then pass "3 no container created"; else fail "3 a container was created"; fi
	echo "  crivet: $(crivet_lines 'create-time signature check.*outcome=rejected')"
	echo "  kubelet: $(kubelet_lines 'CreateContainer in sandbox from runtime service failed')"
	del_pod strict-create
	wait_for 120 gone pod_gone strict-create || fail "3 strict-create not removed"
}

case_strict_signed() {
	log "case 4: signed image in kllab-strict (must run), then the same image by its unsigned name (must not)"
	add_pod strict-signed
	if wait_for 90 running pod_running strict-signed; then pass "4 signed image Running in kllab-strict"; else fail "4 signed image: $(show_pod strict-signed)"; fi
	# lab/busybox:1.0 is the same manifest, already on the node, but its
	# signature names lab/signed: matchRepository must refuse it.
	add_pod strict-alias
	if wait_for 90 reason pod_reason strict-alias CreateContainerError; then
		pass "4 same image by another name: CreateContainerError: $(pod_q strict-alias '.status.containerStatuses[0].state.waiting.message')"
	else fail "4 strict-alias expected CreateContainerError: $(show_pod strict-alias)"; fi
	del_pod strict-alias
}

case_probe() {
	log "case 5: exec readiness probe, HTTP liveness probe, hostPort on 127.0.0.1"
	add_pod probe
	if wait_for 90 ready pod_ready probe; then pass "5 probe pod Ready (exec readiness probe)"; else fail "5 probe pod not Ready: $(show_pod probe)"; fi
	if [ "$(curl -fs -m 5 http://127.0.0.1:18080/index.html)" = hi ]; then pass "5 hostPort 127.0.0.1:18080 answers"; else fail "5 hostPort 127.0.0.1:18080 does not answer"; fi
	sleep 12
	if [ "$(pod_q probe '.status.containerStatuses[0].restartCount')" = 0 ]; then pass "5 HTTP liveness probe keeps passing"; else fail "5 liveness restarts: $(show_pod probe)"; fi
	# /stats/summary: kubelet's CRI stats provider (ImageFsInfo, ListPodSandboxStats /
	# ListContainerStats) joined with cadvisor's filesystem data.
	local sum
	sum=$(curl -fs -m 10 "$RO/stats/summary" 2>&1)
	if echo "$sum" | jq -e . >/dev/null 2>&1; then
		local got
		got=$(echo "$sum" | jq -c --arg n "probe-$NODE" '{imageFs: (.node.runtime.imageFs | {usedBytes, capacityBytes}),
			pod: (.pods[] | select(.podRef.name==$n) | {cpu: .cpu.usageNanoCores, mem: .memory.workingSetBytes, net: .network.name,
			c: (.containers[0] | {cpu: .cpu.usageCoreNanoSeconds, mem: .memory.workingSetBytes, rootfs: .rootfs.usedBytes, logs: .logs.usedBytes})})}')
		if echo "$got" | jq -e '.imageFs.usedBytes > 0 and .pod.c.cpu > 0 and .pod.c.mem > 0' >/dev/null 2>&1; then
			pass "5 /stats/summary: $got"
		else fail "5 /stats/summary incomplete: $got"; fi
		# Infra-less pods: no sandbox cgroup/process for cadvisor, and
		# PodSandboxStats carries no network, so kubelet has no pod network stats.
		if echo "$got" | jq -e '.pod.net == null' >/dev/null 2>&1; then
			gap "5 /stats/summary has no pod network stats (pods[].network is null)"
		fi
	else fail "5 /stats/summary: $(echo "$sum" | head -c 300)"; fi
}

case_restarts() {
	log "case 6: crivet restart, then kubelet restart, with pods running"
	local before after
	before=$(pods_json | jq -c '[.items[] | {n: .metadata.name, c: .status.containerStatuses[0].containerID, r: .status.containerStatuses[0].restartCount}] | sort_by(.n)')
	stop_pid "$LAB/crivet/pid" 30
	sleep 3
	crivet_start
	sleep 15
	after=$(pods_json | jq -c '[.items[] | {n: .metadata.name, c: .status.containerStatuses[0].containerID, r: .status.containerStatuses[0].restartCount}] | sort_by(.n)')
	if [ "$before" = "$after" ] && pod_running strict-signed && pod_running probe; then pass "6 crivet restart: same containers, no restarts"; else fail "6 crivet restart: before $before after $after"; fi
	stop_kubelet
	start_kubelet
	sleep 20
	after=$(pods_json | jq -c '[.items[] | {n: .metadata.name, c: .status.containerStatuses[0].containerID, r: .status.containerStatuses[0].restartCount}] | sort_by(.n)')
	if [ "$before" = "$after" ]; then pass "6 kubelet restart: pods adopted unchanged"; else fail "6 kubelet restart: before $before after $after"; fi
}

# Runtime features through kubelet. Standalone kubelet (no API server)
# cannot admit a recursiveReadOnly: Enabled mount whatever the runtime
# says: it has no RuntimeClass manager, and without one
# runtimeClassSupportsRecursiveReadOnlyMounts (kubelet_pods.go) is false for
# every handler. That pod is a NOTE here; the kubeadm harness runs it.
case_features() {
	log "case 8: runtime features: crictl info, hostUsers: false, supplementalGroupsPolicy: Strict"
	local info
	info=$(CRICTL info 2>/dev/null)
	echo "  crictl info: $(echo "$info" | jq -c '{features, runtimeHandlers}' 2>/dev/null)"
	# crictl prints the CRI handler list as runtimeHandlers (an array); an
	# older crivet's verbose Status put an object of the same name (handler
	# name → runc, version, features) in its place: read either shape
	if echo "$info" | jq -e '.runtimeHandlers | if type == "array" then (.[] | select((.name // "") == "") | .features | (.user_namespaces // .userNamespaces))
		else (to_entries[] | select(.value.default) | .value.userNamespaces) end' 2>/dev/null | grep -qx true; then
		pass "8 Status: the default handler advertises user namespaces (runc $("$RUNC" --version | awk 'NR==1{print $3}'))"
	else fail "8 Status: the default handler does not advertise user namespaces: $(echo "$info" | jq -c .runtimeHandlers 2>/dev/null)"; fi
	add_pod userns
	if wait_for 90 running pod_running userns; then
		local cid pid map huid
		cid=$(CRICTL ps -q --name '^c$' --label io.kubernetes.pod.name=userns-$NODE | head -1)
		map=$(CRICTL exec "$cid" cat /proc/self/uid_map 2>&1 | xargs)
		pid=$("$RUNC" --root "$RUNROOT/runc" state "$cid" 2>/dev/null | jq -r .pid)
		huid=$(awk '/^Uid:/ {print $2}' /proc/"$pid"/status 2>/dev/null)
		# root in the pod, an unprivileged uid on the host; the emptyDir
		# (id-mapped) took the container's write
		if [ "${map%% *}" = 0 ] && [ "$(echo "$map" | awk '{print $2}')" != 0 ] && [ -n "$huid" ] && [ "$huid" != 0 ] &&
			CRICTL exec "$cid" ls /scratch/written-in-userns >/dev/null 2>&1; then
			pass "8 hostUsers: false pod Running: uid_map '$map', its process is uid $huid on the host, emptyDir writable"
		else fail "8 hostUsers: false pod: uid_map '$map', host uid '${huid:-?}', /scratch: $(CRICTL exec "$cid" ls -ln /scratch 2>&1 | tr '\n' ' ')"; fi
	else fail "8 hostUsers: false pod not Running: $(show_pod userns) $(pod_q userns '.status.message // empty') $(kubelet_lines 'userns|user namespace')"; fi
	del_pod userns
	wait_for 120 gone pod_gone userns || fail "8 userns not removed"
	add_pod sgp-strict
	if wait_for 90 running pod_running sgp-strict; then
		local groups
		cid=$(CRICTL ps -q --name '^c$' --label io.kubernetes.pod.name=sgp-strict-$NODE | head -1)
		groups=$(CRICTL exec "$cid" id -G 2>&1 | xargs)
		if [ "$groups" = "3000 4000" ]; then
			pass "8 supplementalGroupsPolicy: Strict pod Running: groups '$groups' (the image's group 5000 left out); status user $(pod_q sgp-strict '.status.containerStatuses[0].user' | jq -c . 2>/dev/null)"
		else fail "8 supplementalGroupsPolicy: Strict: groups '$groups', want '3000 4000'"; fi
	else fail "8 supplementalGroupsPolicy: Strict pod not Running: phase $(pod_q sgp-strict '.status.phase') $(pod_q sgp-strict '.status.reason // empty') $(pod_q sgp-strict '.status.message // empty') $(show_pod sgp-strict)"; fi
	mkdir -p "$LAB/rro-tree"
	add_pod rro
	sleep 15
	note "8 recursiveReadOnly: Enabled under standalone kubelet (no RuntimeClass manager): $(show_pod rro)"
	del_pod rro
	del_pod sgp-strict
	local p
	for p in rro sgp-strict; do wait_for 120 gone pod_gone $p || fail "8 $p not removed"; done
}

# Case 9: a CDI device through kubelet's device manager. A device plugin
# registers crivet.test/null and allocates CDI device crivet.test/dev=null0;
# kubelet passes it in cdi_devices, crivet resolves it from the lab's spec
# file: the node and the spec's env are in the container. (Case 8's pods
# are still up: case 7 checks that nothing is left.)
case_cdi() {
	log "case 9: CDI device from a device plugin"
	# kubelet serves device-plugin registration at the fixed path, not
	# under --root-dir.
	local plugdir=/var/lib/kubelet/device-plugins cid out
	setsid "$LAB/bin/cdiplugin" "$plugdir" crivet.test/null crivet.test/dev=null0 >>"$LAB/logs/cdiplugin.log" 2>&1 &
	echo $! >"$LAB/cdiplugin.pid"
	if ! wait_for 60 registered grep -q registered "$LAB/logs/cdiplugin.log"; then
		fail "9 device plugin did not register: $(tail -3 "$LAB/logs/cdiplugin.log")"; stop_pid "$LAB/cdiplugin.pid" 5; return
	fi
	add_pod cdi
	if wait_for 90 running pod_running cdi; then pass "9 pod with a crivet.test/null device Running"; else
		fail "9 cdi pod not Running: $(show_pod cdi) $(kubelet_lines 'cdi' 2)"; del_pod cdi; stop_pid "$LAB/cdiplugin.pid" 5; return; fi
	cid=$(CRICTL ps -q --name '^dev$' --label io.kubernetes.pod.name=cdi-"$NODE" | head -1)
	if out=$(CRICTL exec "$cid" sh -c 'ls -l /dev/crivet-null0 && echo written > /dev/crivet-null0 && echo "env=$CRIVET_CDI_NULL0"' 2>&1) &&
		echo "$out" | grep -qE '^c.* 1, +3 .*/dev/crivet-null0$' && echo "$out" | grep -qx 'env=injected'; then
		pass "9 CDI device node and env in the container: $(echo "$out" | tr '\n' ' ')"
	else fail "9 CDI device in the container: $out"; fi
	del_pod cdi
	if wait_for 120 gone pod_gone cdi; then pass "9 cdi pod removed"; else fail "9 cdi pod still there: $(show_pod cdi)"; fi
	stop_pid "$LAB/cdiplugin.pid" 5
}

# Case 10: kubelet's checkpoint API (KEP-2008, POST /checkpoint on the
# authenticated port) reaches crivet's CheckpointContainer. Where CRIU
# works, an archive appears in kubelet's checkpoints directory; where it
# does not (Debian 12's criu on Linux >= 6.13), kubelet reports crivet's
# error naming CRIU, the container keeps running, and no archive is left.
case_checkpoint() {
	log "case 10: kubelet checkpoint API"
	local code body dir="$LAB/kubelet/root/checkpoints"
	add_pod counter
	if ! wait_for 90 running pod_running counter; then fail "10 counter not Running: $(show_pod counter)"; del_pod counter; return; fi
	body=$(mktemp)
	code=$(curl -sk -o "$body" -w '%{http_code}' -X POST "https://127.0.0.1:10250/checkpoint/default/counter-$NODE/hello?timeout=60")
	if criu check >/dev/null 2>&1; then
		if [ "$code" = 200 ] && ls "$dir"/checkpoint-counter-"$NODE"_default-hello-*.tar >/dev/null 2>&1; then
			pass "10 checkpoint archive written: $(head -c 300 "$body")"
		else fail "10 checkpoint: HTTP $code $(head -c 400 "$body")"; fi
	else
		if [ "$code" = 500 ] && grep -q 'CRIU' "$body" && ! ls "$dir"/*.tar >/dev/null 2>&1 && pod_running counter; then
			pass "10 checkpoint through kubelet reached crivet; CRIU cannot run here ($(criu check 2>&1 | head -1)): HTTP $code, no archive, container running"
		else fail "10 checkpoint without a working CRIU: HTTP $code $(head -c 400 "$body")"; fi
	fi
	rm -f "$body"
	del_pod counter
	if ! wait_for 120 gone pod_gone counter; then fail "10 counter pod still there: $(show_pod counter)"; fi
}

case_final() {
	log "case 7: delete every manifest"
	rm -f "$LAB"/kubelet/manifests/*.yaml
	for p in strict-signed strict-alias probe; do wait_for 120 gone pod_gone $p || fail "7 $p not removed"; done
	check_clean "7 after all pods"
}

# ---------------------------------------------------------------- cleanup
cleanup() {
	log "cleanup"
	rm -f "$LAB"/kubelet/manifests/*.yaml
	stop_kubelet
	if [ -S "$SOCK" ] && [ -s "$LAB/crivet/pid" ]; then
		CRICTL rmp --force --all >/dev/null 2>&1
	fi
	stop_pid "$LAB/crivet/pid" 30
	crivet_kill_leftovers
	awk -v r="$RUNROOT" -v l="$LAB/" '$5 ~ "^"r || index($5, l)==1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
		log "unmounting leftover $m"
		umount "$m" 2>/dev/null || umount -l "$m"
	done
	stop_pid "$LAB/registry/pid" 10
	stop_pid "$LAB/cdiplugin.pid" 5
	ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
	rm -rf "$RUNROOT" "$LAB/crivet/root" "$LAB/cni-data" "$LAB/kubelet/root" "$LAB/registry/data" "$SOCK"
	if [ -s "$LAB/host-state" ]; then
		while read -r kind a b; do
			[ "$kind" = sysctl ] && sysctl -q -w "$a=$b"
		done <"$LAB/host-state"
		for d in /var/lib/kubelet /var/log/pods /var/log/containers /usr/libexec/kubernetes; do existed "$d" || rm -rf "$d"; done
		for c in /sys/fs/cgroup/*/kubepods; do
			existed "$c" || { [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null; }
		done
		# kubelet's own chains (KUBE-FIREWALL with its INPUT/OUTPUT jumps, canaries, hint)
		local ipt t ch
		for ipt in iptables ip6tables; do
			for t in filter nat mangle; do
				for ch in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
					had_chain $ipt $t $ch && continue
					$ipt -t $t -S $ch >/dev/null 2>&1 || continue
					for parent in INPUT OUTPUT FORWARD PREROUTING POSTROUTING; do
						while $ipt -t $t -D $parent -j $ch 2>/dev/null; do :; done
					done
					$ipt -t $t -F $ch && $ipt -t $t -X $ch
				done
			done
		done
		rm -f "$LAB/host-state"
	fi
}

# ---------------------------------------------------------------- main
case ${1:-all} in
down) cleanup; exit 0 ;;
all) ;;
*) die "usage: $0 [all|down]" ;;
esac

for c in docker-registry skopeo runc jq curl go iptables; do command -v $c >/dev/null || die "$c missing (make deps installs it)"; done
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/portmap ] || die "containernetworking-plugins missing"
file -L /bin/busybox | grep -q 'statically linked' || die "/bin/busybox is not static (install busybox-static)"
[ -s "$LAB/crivet/pid" ] && kill -0 "$(cat "$LAB/crivet/pid")" 2>/dev/null && die "a previous run is still up: $0 down"

mkdir -p "$LAB"/{bin,logs,images}
: >"$RESULTS"
for f in crivet kubelet registry; do [ -s "$LAB/logs/$f.log" ] && mv "$LAB/logs/$f.log" "$LAB/logs/$f.log.old"; done
exec 9>"$LAB/.lock"
flock -n 9 || die "another run holds $LAB/.lock"

build_kubelet
build_crivet
build_crictl
build_sigtool
build_cdiplugin
build_nriplugin
write_config
nri_config
save_host_state
[ "${KEEP:-0}" = 1 ] || trap cleanup EXIT
trap 'exit 130' INT TERM

registry_start
mkimage busybox lab-busybox
mkimage unsigned lab-unsigned
push busybox lab/busybox:1.0
push unsigned lab/unsigned:1.0
push busybox lab/signed:1.0
rm -f "$LAB"/keys/cosign.*
sigtool_keygen kllab-pass
sigtool_sign kllab-pass "$REG/lab/signed:1.0"
rm -f "$LAB"/etc/policies/*.json
crivet_start
log "crivet $(CRICTL version | awk '/RuntimeVersion/{print $2}') on $SOCK"
start_kubelet
log "kubelet $("$LAB/bin/kubelet" --version) healthy"

case_hello
case_strict_pull
case_strict_create
case_strict_signed
case_probe
case_restarts
case_features
case_cdi
case_checkpoint
case_checkpoint_restore
case_nri
case_final

echo
log "kubelet errors other than the expected rejections:"
grep -E '^E' "$LAB/logs/kubelet.log" | grep -vE 'SignatureValidationFailed|ImagePullBackOff|CreateContainerError|crivet.sock: connect|Unhandled Error' |
	sed -E 's/^E[0-9]+ [0-9:.]+ +[0-9]+ //' | cut -c1-220 | sort | uniq -c | sort -rn | head -15
log "crivet warnings/errors:"
grep -v '^time="' "$LAB/logs/crivet.log" | grep -E 'level=(WARN|ERROR)' | grep -v 'outcome=rejected' | cut -c1-300 | tail -10
echo
results_summary
