#!/usr/bin/env bash
# A multi-node kind cluster (1 control-plane + 2 workers, Kubernetes
# v1.37.2) whose nodes run crivet, offline. See contrib/kind/README.md.
# As root, Debian 12:
#
#   test/kind/run.sh               # up, check, down   (make kind)
#   KEEP=1 test/kind/run.sh        # up, check, leave it running
#   test/kind/run.sh image|up|check|down   (make kind-image, make kind-down)
#
# It runs its own dockerd (Debian's docker.io) on its own socket, data root
# and network, without touching the host's iptables (--iptables=false, no
# docker0); `down` stops it and checks that the host's iptables rules and
# network links are what they were. Everything lives in $LAB.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAB=${LAB:-/var/tmp/crivet-kind}
K8S_VERSION=v1.37.2 # what test/cluster/run.sh builds: the two must agree
KIND_VERSION=${KIND_VERSION:-v0.33.0}
CLUSTER=crivet
IMAGE=crivet/kind-node:$K8S_VERSION
NET=kind # the network kind uses; made here so its bridge and subnet are ours
NET_BRIDGE=crivetkind0
NET_SUBNET=172.29.0.0/24
NET_GW=172.29.0.1
REG=$NET_GW:5003 # the lab registry, on the nodes' bridge
POD_CIDR=10.246.0.0/16
SVC_CIDR=10.97.0.0/16
CP=$CLUSTER-control-plane
W1=$CLUSTER-worker
W2=$CLUSTER-worker2
NODES="$CP $W1 $W2"
SOURCE_BIN=${SOURCE_BIN:-/var/tmp/crivet-cluster/bin}       # built by test/cluster/run.sh
SOURCE_IMAGES=${SOURCE_IMAGES:-/var/tmp/crivet-cluster/images} # its image layouts
export DOCKER_HOST=unix://$LAB/docker.sock
export KUBECONFIG=$LAB/kubeconfig
export PATH=$LAB/bin:$PATH

RESULTS=$LAB/results.txt
# log, die, pass, fail, gap, now, since, results_summary
# shellcheck source=test/lib/log.sh
. "$REPO/test/lib/log.sh"
KC() { "$LAB/bin/kubectl" "$@"; }
NX() { docker exec "$@"; } # NX node command...: in a node

[ "$(id -u)" = 0 ] || die "run as root"

# ---------------------------------------------------------------- inputs
# kind from the module proxy; kubeadm/kubelet/kubectl, crictl, sigtool and
# the control-plane and workload image layouts from the kubeadm cluster
# harness's lab, which builds them when they are missing.
inputs() {
	mkdir -p "$LAB/bin" "$LAB/images" "$LAB/keys"
	if ! "$LAB/bin/kind" version 2>/dev/null | grep -q "kind $KIND_VERSION "; then
		log "go install sigs.k8s.io/kind@$KIND_VERSION"
		(cd /tmp && GOBIN=$LAB/bin go install "sigs.k8s.io/kind@$KIND_VERSION") >"$LAB/logs/kind-build.log" 2>&1 || die "kind build, see $LAB/logs/kind-build.log"
	fi
	local b missing=
	# binaries of another Kubernetes release (a lab from before an upgrade)
	# are replaced, with the image layouts made from them
	if [ -x "$LAB/bin/kubeadm" ] && ! "$LAB/bin/kubeadm" version -o short 2>/dev/null | grep -qx "$K8S_VERSION"; then
		log "$LAB/bin holds Kubernetes $("$LAB/bin/kubeadm" version -o short 2>/dev/null): taking $K8S_VERSION"
		rm -f "$LAB"/bin/{kubeadm,kubelet,kubectl,kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy,etcd,coredns}
		rm -rf "$LAB"/images/{kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy,etcd,coredns,pause}.dir
	fi
	if [ ! -x "$LAB/bin/kubeadm" ] && ! "$SOURCE_BIN/kubeadm" version -o short 2>/dev/null | grep -qx "$K8S_VERSION"; then
		log "$SOURCE_BIN has no Kubernetes $K8S_VERSION: test/cluster/run.sh build"
		LAB=$(dirname "$SOURCE_BIN") "$REPO/test/cluster/run.sh" build || die "building the inputs failed"
	fi
	for b in kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns crictl sigtool; do
		[ -x "$LAB/bin/$b" ] && continue
		if [ -x "$SOURCE_BIN/$b" ]; then cp "$SOURCE_BIN/$b" "$LAB/bin/"; else missing="$missing $b"; fi
	done
	for b in kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns pause busybox unsigned; do
		[ -s "$LAB/images/$b.dir/manifest.json" ] && continue
		if [ -s "$SOURCE_IMAGES/$b.dir/manifest.json" ]; then cp -a "$SOURCE_IMAGES/$b.dir" "$LAB/images/"; else missing="$missing $b-image"; fi
	done
	if [ -n "$missing" ]; then
		# The kubeadm harness builds them (Kubernetes, etcd and CoreDNS from
		# the module proxy: 20-40 minutes on 2 cores, once) into its lab.
		log "not in $SOURCE_BIN / $SOURCE_IMAGES:$missing: test/cluster/run.sh build"
		LAB=$(dirname "$SOURCE_BIN") "$REPO/test/cluster/run.sh" build || die "building the inputs failed"
		for b in kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns crictl sigtool; do
			[ -x "$LAB/bin/$b" ] || cp "$SOURCE_BIN/$b" "$LAB/bin/" || die "$b not built"
		done
		for b in kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns pause busybox unsigned; do
			[ -s "$LAB/images/$b.dir/manifest.json" ] || cp -a "$SOURCE_IMAGES/$b.dir" "$LAB/images/" || die "$b image not built"
		done
	fi
	sigtool_keygen kind-pass
}

# ---------------------------------------------------------------- host
# What the host had before: compared by down.
save_host_state() {
	mkdir -p "$LAB/state"
	[ -s "$LAB/state/iptables" ] && return # an earlier up recorded it
	local t
	for t in filter nat mangle raw; do iptables -t "$t" -S; done >"$LAB/state/iptables"
	for t in filter nat mangle raw; do ip6tables -t "$t" -S; done >"$LAB/state/ip6tables"
	ip -o link show | awk -F': ' '{sub("@.*", "", $2); print $2}' | sort >"$LAB/state/links"
}

# dockerd of our own: socket, data root and exec root in the lab, no
# default bridge and no iptables rules on the host (kind's nodes reach each
# other and the lab registry on one bridge; docker's embedded DNS still
# works inside each node's own namespace). Its default runtime drops the
# capabilities this host withholds (runc-drop-caps), so --privileged works.
start_docker() {
	if docker version >/dev/null 2>&1; then return; fi
	command -v dockerd >/dev/null || die "dockerd missing (apt-get install docker.io)"
	install -m 0755 "$REPO/test/kind/runc-drop-caps" "$LAB/bin/runc-drop-caps"
	missing_caps >"$LAB/bin/missing-caps"
	[ -s "$LAB/bin/missing-caps" ] && log "this host withholds $(cat "$LAB/bin/missing-caps"): dropped from --privileged containers"
	local before
	before=$(iptables -S FORWARD | head -1)
	mkdir -p "$LAB/docker"
	(cd / && setsid dockerd --data-root "$LAB/docker" --exec-root /run/crivet-kind-docker --pidfile "$LAB/dockerd.pid" \
		-H "$DOCKER_HOST" --bridge none --iptables=false --ip6tables=false --ip-masq=false --storage-driver overlay2 \
		--add-runtime "crivetkind=$LAB/bin/runc-drop-caps" --default-runtime crivetkind \
		>>"$LAB/logs/dockerd.log" 2>&1 9>&- </dev/null &)
	for _ in $(seq 100); do docker version >/dev/null 2>&1 && break; sleep 0.2; done
	docker version >/dev/null 2>&1 || die "dockerd did not start, see $LAB/logs/dockerd.log"
	# --iptables=false should leave FORWARD alone; be sure (other tests on
	# this host need its ACCEPT policy).
	[ "$(iptables -S FORWARD | head -1)" = "$before" ] || { log "dockerd changed FORWARD's policy: restoring"; iptables -P FORWARD ACCEPT; }
	if ! docker network inspect "$NET" >/dev/null 2>&1; then
		docker network create -d bridge --subnet "$NET_SUBNET" --gateway "$NET_GW" \
			-o com.docker.network.bridge.name="$NET_BRIDGE" -o com.docker.network.bridge.enable_ip_masquerade=false "$NET" >/dev/null ||
			die "docker network create $NET"
	fi
	log "dockerd $(docker version -f '{{.Server.Version}}') on $DOCKER_HOST, network $NET ($NET_SUBNET, bridge $NET_BRIDGE)"
}

# The capability names the bounding set lacks, of those the kernel has.
missing_caps() {
	local names="CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE"
	local bnd last i=0 n out=
	bnd=$((16#$(awk '/^CapBnd/ {print $2}' /proc/self/status)))
	last=$(cat /proc/sys/kernel/cap_last_cap)
	for n in $names; do
		[ $i -le "$last" ] && [ $(((bnd >> i) & 1)) = 0 ] && out="$out CAP_$n"
		i=$((i + 1))
	done
	echo "${out# }"
}

# shellcheck source=test/lib/proc.sh
. "$REPO/test/lib/proc.sh"
# port_free, registry_running, registry_start, push
# shellcheck source=test/lib/registry.sh
. "$REPO/test/lib/registry.sh"
# write_registries_d, sigtool_keygen, sigtool_sign
# shellcheck source=test/lib/sign.sh
. "$REPO/test/lib/sign.sh"
# pod, sleep_pod, namespaces, runtime_class, web_manifest, client_pod, job_manifest, scale_manifest
# shellcheck source=test/lib/manifests.sh
. "$REPO/test/lib/manifests.sh"
# wait_for, pod and event queries, check_logs_exec, check_job, check_scale
# shellcheck source=test/lib/checks.sh
. "$REPO/test/lib/checks.sh"

# The lab registry on the nodes' bridge (never 127.0.0.1:5000-5002, which
# other harnesses own): workloads, one of them sigstore-signed.
start_registry() {
	registry_running && return
	registry_start
	write_registries_d
	push busybox lab/busybox:1.0
	push unsigned lab/unsigned:1.0
	push busybox lab/signed:1.0
	sigtool_sign kind-pass "$REG/lab/signed:1.0"
}

# ---------------------------------------------------------------- image
image() {
	inputs
	start_docker
	make -C "$REPO" --no-print-directory runc >/dev/null || die "make runc (the default handler's runc) failed"
	log "building $IMAGE (contrib/kind/build-node-image.sh)"
	LAB=$LAB K8S_VERSION=$K8S_VERSION K8S_BIN=$LAB/bin CP_IMAGES_FROM=$LAB/images LAB_REGISTRY=$REG STRICT_KEY=$LAB/keys/cosign.pub KIND_NODE_IMAGE=$IMAGE \
		"$REPO/contrib/kind/build-node-image.sh" 2>&1 | grep -v -e DEPRECATED -e BuildKit -e environment-variable -e '^$'
	[ "${PIPESTATUS[0]}" = 0 ] || die "node image build failed"
}

# ---------------------------------------------------------------- up
up() {
	for c in docker skopeo docker-registry jq curl go bc debootstrap; do command -v $c >/dev/null || die "$c missing (make deps; apt-get install docker.io debootstrap)"; done
	: >"$RESULTS"
	save_host_state
	inputs
	start_docker
	start_registry
	if [ "${REBUILD:-1}" = 1 ] || ! docker image inspect "$IMAGE" >/dev/null 2>&1; then image; fi
	"$LAB/bin/kind" get clusters 2>/dev/null | grep -qx "$CLUSTER" && die "cluster $CLUSTER exists: $0 down"
	{
		cat "$REPO/contrib/kind/kind-config.yaml"
		# kind's default CNI (kindnetd) is an image this offline host has not:
		# the bridge plugin on each node's podCIDR, routes between nodes.
		printf 'name: %s\nnetworking:\n  disableDefaultCNI: true\n  podSubnet: %s\n  serviceSubnet: %s\n' "$CLUSTER" "$POD_CIDR" "$SVC_CIDR"
	} >"$LAB/kind-config.yaml"
	log "kind create cluster ($CP, $W1, $W2; image $IMAGE)"
	local t0
	t0=$(now)
	echo "$t0" >"$LAB/t0"
	if ! "$LAB/bin/kind" create cluster --config "$LAB/kind-config.yaml" --image "$IMAGE" --kubeconfig "$KUBECONFIG" --retain -v 1 >"$LAB/logs/kind-create.log" 2>&1; then
		grep -E 'ERROR|error|failed' "$LAB/logs/kind-create.log" | grep -v '^\s' | head -5
		node_logs
		die "kind create cluster failed, see $LAB/logs/kind-create.log and $LAB/logs/node-*.log"
	fi
	since "$t0" >"$LAB/kind-create-s"
	pass "kind create cluster: 3 nodes joined in $(cat "$LAB/kind-create-s") s"
	network
	if wait_for 120 nodes_ready; then
		since "$t0" >"$LAB/node-ready-s"
		pass "3 nodes Ready $(cat "$LAB/node-ready-s") s after kind create started: $(KC get nodes --no-headers | awk '{print $1 "=" $2}' | xargs)"
	else fail "nodes not Ready: $(KC get nodes --no-headers | awk '{print $1 "=" $2}' | xargs)"; node_logs; fi
}

node_logs() {
	local n
	for n in $(docker ps -a --filter "label=io.x-k8s.kind.cluster=$CLUSTER" --format '{{.Names}}'); do
		{
			echo "== docker logs $n"
			docker logs "$n" 2>&1 | tail -50
			echo "== journalctl $n (crivet, kubelet)"
			NX "$n" journalctl --no-pager -u crivet -u kubelet 2>&1 | tail -200
		} >"$LAB/logs/node-$n.log"
	done
}

# Pod network: each node's podCIDR on a bridge (crivet runs the bridge
# plugin), and a route to every other node's podCIDR via that node.
network() {
	local info n cidr ip n2 cidr2 ip2
	wait_for 60 sh -c "[ \$($LAB/bin/kubectl get nodes -o jsonpath='{.items[*].spec.podCIDR}' | wc -w) = 3 ]" || die "nodes have no podCIDR"
	info=$(KC get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}')
	echo "$info" >"$LAB/nodes.txt"
	while read -r n cidr ip; do
		NX -i "$n" sh -c 'cat >/etc/cni/net.d/10-crivet-kind.conflist' <<EOF
{
  "cniVersion": "1.0.0",
  "name": "crivet-kind",
  "plugins": [
    {"type": "bridge", "bridge": "crivet0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$cidr"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
		while read -r n2 cidr2 ip2; do
			[ "$n2" = "$n" ] || NX "$n" ip route replace "$cidr2" via "$ip2" || die "route $cidr2 via $ip2 on $n"
		done <<<"$info"
	done <<<"$info"
	log "pod network: $(echo "$info" | awk '{printf "%s %s via %s; ", $1, $2, $3}')"
}

# ---------------------------------------------------------------- checks
nodes_ready() { [ "$(KC get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null | grep -c True)" = 3 ]; }

write_manifests() {
	local m=$LAB/manifests bb=$REG/lab/busybox:1.0 sleep='["sleep", "3600"]'
	mkdir -p "$m"
	web_manifest '      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, nodeTaintsPolicy: Honor, labelSelector: {matchLabels: {app: web}}}' >"$m/web.yaml"
	client_pod "$W1" >"$m/client.yaml"
	job_manifest >"$m/job.yaml"
	# The load during a crivet restart on $W1: from $W2 (whose crivet
	# stays up), requests to the Service every 50 ms for LOAD_SECONDS,
	# each with a 2 s timeout (busybox's wget -T crashes); the summary is its last log line.
	cat >"$m/load.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: load, namespace: default}
spec:
  nodeName: $W2
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: load
    image: $REG/lab/busybox:1.0
    command:
    - sh
    - -c
    - |
      while [ ! -e /tmp/start ]; do sleep 0.1; done
      end=\$((\$(date +%s) + \${LOAD_SECONDS:-30})); ok=0; bad=0; w1=0
      while [ \$(date +%s) -lt \$end ]; do
        if out=\$(timeout 2 wget -qO- http://web/index.html 2>&1); then ok=\$((ok+1)); else bad=\$((bad+1)); echo "failed: \$out"; fi
        sleep 0.05
      done
      echo "load: ok=\$ok failed=\$bad"
    env: [{name: LOAD_SECONDS, value: "${LOAD_SECONDS:-30}"}]
EOF
	namespaces strict loose >"$m/namespaces.yaml"
	sleep_pod strict-pull strict "$REG/lab/unsigned:1.0" "$W2" >"$m/strict-pull.yaml"
	sleep_pod loose-pull loose "$REG/lab/unsigned:1.0" "$W2" >"$m/loose-pull.yaml"
	sleep_pod strict-reuse strict "$REG/lab/unsigned:1.0" "$W2" >"$m/strict-reuse.yaml"
	sleep_pod strict-signed strict "$REG/lab/signed:1.0" "$W2" >"$m/strict-signed.yaml"
	# A RuntimeClass for crivet's second handler (Debian's runc), a pod on
	# it, and a pod in its own user namespace on the default handler.
	{
		runtime_class runc-debian
		echo ---
		pod on-debian-runc default "$bb" "$sleep" $'  runtimeClassName: runc-debian\n'"$(node_name "$W1")"
		echo ---
		pod userns default "$bb" "$sleep" $'  hostUsers: false\n'"$(node_name "$W1")"
		echo ---
		pod rro default "$bb" "$sleep" "$(node_name "$W1")"$'\n  volumes: [{name: tree, hostPath: {path: /var/lib/kubelet, type: Directory}}]' \
			$'    volumeMounts:\n    - {name: tree, mountPath: /rro, readOnly: true, recursiveReadOnly: Enabled}'
		echo ---
		pod strict-groups default "$bb" "$sleep" "$(node_name "$W1")"$'\n  securityContext: {runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [4000], supplementalGroupsPolicy: Strict}'
	} >"$m/handlers.yaml"
	scale_manifest >"$m/scale.yaml"
}

check_control_plane() {
	log "check: nodes, control plane, CoreDNS"
	if nodes_ready; then pass "nodes Ready: $(KC get nodes -o wide --no-headers | awk '{print $1 "(" $6 ", " $NF ")"}' | xargs)"; else fail "nodes: $(KC get nodes --no-headers | xargs)"; fi
	if wait_for 120 coredns_ready; then
		pass "CoreDNS Running and Ready: $(KC get pods -n kube-system -l k8s-app=kube-dns -o wide --no-headers | awk '{print $1, $3, $7}' | xargs)"
	else fail "CoreDNS not Ready: $(KC get pods -n kube-system -l k8s-app=kube-dns --no-headers 2>&1 | xargs)"; fi
	if wait_for 60 kube_system_running; then
		pass "kube-system: every pod Running ($(KC get pods -n kube-system --no-headers | wc -l) pods)"
	else fail "kube-system pods not Running: $(KC get pods -n kube-system --no-headers | grep -v ' Running ' | tr '\n' ';')"; fi
	local rv
	rv=$(KC get node "$W1" -o jsonpath='{.status.nodeInfo.containerRuntimeVersion}')
	case $rv in
	crivet://Unknown) gap "nodes show containerRuntimeVersion $rv: kubelet parses crivet's CRI RuntimeVersion ($(NX "$W1" crictl version | awk '/RuntimeVersion/{print $2}')) as semver" ;;
	crivet://*) pass "containerRuntimeVersion $rv" ;;
	*) fail "containerRuntimeVersion $rv" ;;
	esac
	local d
	d=$(NX "$W1" crictl info -o json 2>/dev/null | jq -r '.config.cgroupDriver // .status.cgroupDriver // empty' 2>/dev/null)
	NX "$W1" systemctl is-active crivet >/dev/null && pass "crivet.service active under systemd on every node: $(for n in $NODES; do printf '%s=%s ' "$n" "$(NX "$n" systemctl is-active crivet)"; done)"
	local scope
	scope=$(NX "$W1" find /sys/fs/cgroup/systemd/kubelet.slice -name 'crivet-*.scope' 2>/dev/null | head -1)
	if [ -n "$scope" ]; then
		pass "systemd cgroup driver: containers are crivet-<id>.scope units in kubelet's pod slices (e.g. ${scope#/sys/fs/cgroup/systemd})"
	else fail "no crivet-*.scope under kubelet.slice on $W1 ${d:+(driver $d)}"; fi
}

# Every container the API server places on a node is one that node's
# crivet reports.
check_all_on_runtime() {
	local n api rt missing total=0 bad=
	for n in $NODES; do
		api=$(KC get pods -A --field-selector "spec.nodeName=$n" -o jsonpath='{range .items[*]}{range .status.containerStatuses[*]}{.containerID}{"\n"}{end}{end}' | sed -n 's#^crivet://##p' | sort -u)
		rt=$(NX "$n" crictl ps -a -q --no-trunc | sort -u)
		missing=$(comm -23 <(echo "$api") <(echo "$rt"))
		[ -n "$missing" ] && bad="$bad $n:$(echo "$missing" | wc -l)"
		total=$((total + $(echo "$api" | grep -c .)))
	done
	local schemes
	schemes=$(KC get pods -A -o jsonpath='{range .items[*]}{range .status.containerStatuses[*]}{.containerID}{"\n"}{end}{end}' | sed -n 's#://.*##p' | sort -u | xargs)
	if [ -z "$bad" ] && [ "$schemes" = crivet ]; then pass "$1: all $total containers (scheme $schemes) are in crictl ps -a of their node's crivet"; else fail "$1: containers missing from their node's crivet:$bad (schemes: $schemes)"; fi
}

check_service() {
	log "check: Deployment web (4 replicas over both workers) behind Service web; pod to pod across nodes"
	KC apply -f "$LAB/manifests/web.yaml" -f "$LAB/manifests/client.yaml" >/dev/null || { fail "apply web/client"; return; }
	if wait_for 120 deploy_ready web 4; then pass "Deployment web: 4/4 Ready"; else fail "Deployment web: $(ready_replicas web)/4 Ready"; fi
	local spread
	spread=$(nodes_of app=web)
	if [ "$spread" = "$W1=2 $W2=2" ]; then pass "replicas spread over both workers: $spread"; else fail "replicas spread: $spread"; fi
	wait_for 60 pod_ready default client || fail "client pod not Ready"
	local out names target tip
	out=$(KC exec client -- nslookup web.default.svc.cluster.local 2>&1)
	if echo "$out" | grep -q "$(KC get svc web -o jsonpath='{.spec.clusterIP}')"; then
		pass "CoreDNS (on $CP) resolves web.default.svc.cluster.local to the ClusterIP from a pod on $W1"
	else fail "nslookup from client: $(echo "$out" | tr '\n' ' ')"; fi
	names=$(KC exec client -- sh -c 'for i in $(seq 40); do timeout 3 wget -qO- http://web/index.html; done' 2>&1 | sort | uniq -c | xargs)
	if [ "$(echo "$names" | grep -o ' web-' | wc -l)" = 4 ]; then
		pass "Service web (kube-proxy iptables) from $W1: 40 requests answered by all 4 pods on both workers: $names"
	else fail "Service web from a pod: $names"; fi
	target=$(KC get pods -l app=web --field-selector "spec.nodeName=$W2" -o jsonpath='{.items[0].metadata.name}')
	tip=$(KC get pod "$target" -o jsonpath='{.status.podIP}')
	out=$(KC exec client -- timeout 5 wget -qO- "http://$tip:8080/index.html" 2>&1)
	if [ "$out" = "$target" ]; then
		pass "pod client on $W1 ($(KC get pod client -o jsonpath='{.status.podIP}')) reached pod $target on $W2 by pod IP $tip:8080"
	else fail "client on $W1 -> $target ($tip) on $W2: '$out'"; fi
	out=$(KC exec client -- ping -c 2 -W 2 "$(KC get pods -n kube-system -l k8s-app=kube-dns -o jsonpath='{.items[0].status.podIP}')" 2>&1 | grep -o '[0-9]* packets received')
	[ "$out" = "2 packets received" ] && pass "pod on $W1 pings a CoreDNS pod on $CP: $out" || fail "ping CoreDNS pod from $W1: $out"
}

check_streams() {
	log "check: kubectl logs / exec"
	check_logs_exec "pod on $W1"
}

check_signatures() {
	log "check: namespace strict (sigstore-signed images of $REG only), on $W2"
	KC apply -f "$LAB/manifests/namespaces.yaml" >/dev/null
	KC apply -f "$LAB/manifests/strict-pull.yaml" >/dev/null
	if wait_for 90 event_has strict strict-pull SignatureValidationFailed; then
		wait_for 30 has_reason strict strict-pull "ErrImagePull ImagePullBackOff"
		pass "strict/strict-pull (unsigned): $(waiting_reason strict strict-pull); events: $(events_of strict strict-pull | grep -E 'Failed' | grep -o 'SignatureValidationFailed.*' | cut -c1-160 | sort -u | head -1)"
	else fail "strict/strict-pull: reason $(waiting_reason strict strict-pull), events: $(events_of strict strict-pull | tr '\n' '|')"; fi
	if NX "$W2" crictl images -q "$REG/lab/unsigned:1.0" 2>/dev/null | grep -q .; then fail "rejected image is on $W2"; else pass "rejected image not stored on $W2"; fi
	KC apply -f "$LAB/manifests/loose-pull.yaml" >/dev/null
	if wait_for 90 pod_ready loose loose-pull; then pass "loose/loose-pull Running (global policy)"; else fail "loose/loose-pull: $(waiting_reason loose loose-pull)"; fi
	KC apply -f "$LAB/manifests/strict-reuse.yaml" >/dev/null
	if wait_for 90 has_reason strict strict-reuse CreateContainerError && wait_for 30 event_has strict strict-reuse SignatureValidationFailed; then
		pass "strict/strict-reuse (image already on $W2): CreateContainerError, SignatureValidationFailed"
	else fail "strict/strict-reuse: reason $(waiting_reason strict strict-reuse), events: $(events_of strict strict-reuse | tr '\n' '|')"; fi
	KC apply -f "$LAB/manifests/strict-signed.yaml" >/dev/null
	if wait_for 90 pod_ready strict strict-signed; then pass "strict/strict-signed (sigstore-signed) Running"; else fail "strict/strict-signed: $(waiting_reason strict strict-signed) $(events_of strict strict-signed | tail -2 | tr '\n' '|')"; fi
	KC delete ns strict loose --wait=false >/dev/null
	local imported
	imported=$(NX "$CP" crivet image list 2>/dev/null | grep -c 'docker-archive:')
	[ "$imported" -ge 7 ] && pass "control plane ran from the $imported images imported at build time (crivet image list: source docker-archive)" || fail "imported images on $CP: $imported"
}

# Runtime handlers as kubelet sees them: the node status lists crivet's
# handlers with the features each really has (the default handler's runc
# v1.5 has id-mapped mounts, Debian's 1.1.5 does not, so only the default
# offers user namespaces; recursive read-only mounts need runc 1.1's rro
# option and mount_setattr, so both offer them); a pod of the
# RuntimeClass runc-debian runs on that handler; a hostUsers: false pod runs
# in a user namespace of its own.
check_handlers() {
	log "check: runtime handlers and user namespaces on $W1"
	local h
	h=$(KC get node "$W1" -o jsonpath='{range .status.runtimeHandlers[*]}{.name}={.features.userNamespaces}/{.features.recursiveReadOnlyMounts} {end}')
	case " $h " in
	*" runc-debian=false/"*) pass "node $W1 status.runtimeHandlers (userNamespaces/recursiveReadOnlyMounts): $h(Debian's runc 1.1.5: no id-mapped mounts, so no user namespaces)" ;;
	*) fail "node $W1 status.runtimeHandlers: $h (want runc-debian without user namespaces)" ;;
	esac
	case " $h " in
	*" =true/true "* | *" runc=true/true "*) pass "default handler advertises user namespaces and recursive read-only mounts (runc $(NX "$W1" /usr/local/sbin/runc --version | head -1 | awk '{print $3}'))" ;;
	*) fail "default handler features: $h (want true/true with runc >= 1.2)" ;;
	esac
	KC apply -f "$LAB/manifests/handlers.yaml" >/dev/null || { fail "apply handlers.yaml"; return; }
	if wait_for 120 pod_ready default on-debian-runc; then
		local id rh
		id=$(NX "$W1" crictl pods -q --name on-debian-runc --state ready | head -1)
		rh=$(NX "$W1" crictl inspectp "$id" | jq -r '.status.runtimeHandler')
		[ "$rh" = runc-debian ] && pass "RuntimeClass runc-debian: pod Running on $W1, crictl inspectp runtimeHandler $rh" ||
			fail "RuntimeClass runc-debian: pod Running but runtimeHandler '$rh'"
	else fail "RuntimeClass runc-debian: $(waiting_reason default on-debian-runc) $(events_of default on-debian-runc | tail -2 | tr '\n' '|')"; fi
	if wait_for 120 pod_ready default userns; then
		local m
		m=$(KC exec userns -- cat /proc/self/uid_map | xargs)
		case $m in
		"0 0 4294967295" | "") fail "hostUsers: false pod runs in the host's user namespace (uid_map '$m')" ;;
		*) pass "hostUsers: false pod Running on $W1 in a user namespace of its own: uid_map $m" ;;
		esac
	else fail "hostUsers: false pod: $(waiting_reason default userns) $(events_of default userns | tail -2 | tr '\n' '|')"; fi
	# recursiveReadOnly: Enabled over kubelet's directory, which holds the
	# pods' own mounts: read-only all the way down.
	if wait_for 120 pod_ready default rro; then
		local sub
		sub=$(KC exec rro -- sh -c 'grep " /rro/" /proc/self/mounts | head -1 | cut -d" " -f2')
		if KC exec rro -- touch /rro/x 2>/dev/null; then fail "recursiveReadOnly pod: /rro is writable"
		elif [ -n "$sub" ] && KC exec rro -- touch "$sub/x" 2>/dev/null; then fail "recursiveReadOnly pod: the submount $sub is writable"
		else pass "recursiveReadOnly: Enabled pod Running on $W1: /rro read-only${sub:+, and so is the submount $sub}"; fi
	else fail "recursiveReadOnly pod: $(waiting_reason default rro) $(events_of default rro | tail -2 | tr '\n' '|')"; fi
	if wait_for 120 pod_ready default strict-groups; then
		local g
		g=$(KC exec strict-groups -- id -G | xargs)
		[ "$g" = "3000 4000" ] && pass "supplementalGroupsPolicy: Strict pod Running on $W1: id -G '$g' (only the pod's groups)" ||
			fail "supplementalGroupsPolicy: Strict pod: id -G '$g', want '3000 4000'"
	else fail "supplementalGroupsPolicy: Strict pod: $(waiting_reason default strict-groups) $(events_of default strict-groups | tail -2 | tr '\n' '|')"; fi
	# Gone before the next check snapshots $W1's pods.
	KC delete -f "$LAB/manifests/handlers.yaml" --wait=true --timeout=90s >/dev/null 2>&1 || fail "handlers.yaml pods not deleted in 90 s"
}

# crivet restarted on $W1 while $W2 sends requests to the Service (half of
# whose pods are on $W1): $W1's pods keep their containers, restart counts
# and readiness, and no request fails.
check_restart_under_load() {
	log "check: systemctl restart crivet on $W1 under load"
	local before after ids_before ids_after load_out t_restart
	snapshot() { KC get pods -A --field-selector "spec.nodeName=$W1" -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name} {range .status.containerStatuses[*]}{.containerID} {.restartCount} {.ready}{end}{"\n"}{end}' | sort; }
	KC delete pod load --ignore-not-found >/dev/null
	KC apply -f "$LAB/manifests/load.yaml" >/dev/null
	wait_for 60 pod_ready default load || { fail "load pod not Ready"; return; }
	before=$(snapshot)
	ids_before=$(NX "$W1" crictl ps -q --no-trunc | sort)
	KC exec load -- touch /tmp/start
	sleep 5
	t_restart=$(now)
	NX "$W1" systemctl restart crivet || fail "systemctl restart crivet on $W1"
	wait_for 30 sh -c "docker exec $W1 crictl version >/dev/null 2>&1" || fail "crivet on $W1 not answering after restart"
	log "crivet on $W1 answering again $(since "$t_restart") s after systemctl restart (pid $(NX "$W1" systemctl show -p MainPID --value crivet))"
	KC wait --for=jsonpath='{.status.phase}'=Succeeded --timeout=$((${LOAD_SECONDS:-30} + 30))s pod/load >/dev/null 2>&1 || fail "load pod did not finish"
	sleep 5 # a kubelet sync on $W1 after the restart
	after=$(snapshot)
	ids_after=$(NX "$W1" crictl ps -q --no-trunc | sort)
	load_out=$(KC logs load 2>&1 | tail -1)
	if [ "$before" = "$after" ] && [ "$ids_before" = "$ids_after" ] && [ -n "$ids_after" ]; then
		pass "after crivet restart on $W1: its $(echo "$before" | wc -l) pods unchanged (same container IDs, restart counts, ready), crictl ps lists the same $(echo "$ids_after" | wc -l) containers"
	else
		fail "pods on $W1 changed across the restart: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | tr '\n' ' ') crictl: $(diff <(echo "$ids_before") <(echo "$ids_after") | grep -c '^[<>]') ids differ"
	fi
	if ! echo "$before" | awk '{for (i = 3; i <= NF; i += 3) if ($i != 0) exit 1}'; then fail "restart counts on $W1 not 0: $before"; else pass "restart counts on $W1 all 0"; fi
	case $load_out in
	"load: ok="*" failed=0") pass "load from $W2 to the Service during the restart: $load_out" ;;
	"load: ok="*) fail "load during the restart: $load_out ($(KC logs load | grep -c failed:) failures logged)" ;;
	*) fail "load pod: $load_out" ;;
	esac
	local out
	out=$(KC exec "$(KC get pods -l app=web --field-selector "spec.nodeName=$W1" -o jsonpath='{.items[0].metadata.name}')" -- cat /www/index.html 2>&1)
	case $out in web-*) pass "kubectl exec into a pod on $W1 after the restart: $out" ;; *) fail "exec on $W1 after restart: $out" ;; esac
	KC delete pod load --wait=false >/dev/null
}

check() {
	[ -s "$LAB/t0" ] || die "no cluster up: $0 up"
	write_manifests
	check_control_plane
	check_all_on_runtime "control plane"
	check_service
	check_streams
	check_job on-node
	check_signatures
	check_handlers
	check_restart_under_load
	check_scale "$LAB/scale-ready-s" spread
	check_all_on_runtime "end of checks"
	echo
	log "kind create: $(cat "$LAB/kind-create-s" 2>/dev/null || echo -) s; 3 nodes Ready: $(cat "$LAB/node-ready-s" 2>/dev/null || echo -) s after kind create started; 30 pods Ready: $(cat "$LAB/scale-ready-s" 2>/dev/null || echo -) s"
	printf '%s\t%s\t%s\t%s\n' "$(date -Is)" "$(cat "$LAB/kind-create-s" 2>/dev/null)" "$(cat "$LAB/node-ready-s" 2>/dev/null)" "$(cat "$LAB/scale-ready-s" 2>/dev/null)" >>"$LAB/timings.tsv"
	results_summary
}

# ---------------------------------------------------------------- down
down() {
	log "down"
	if docker version >/dev/null 2>&1; then
		node_logs
		"$LAB/bin/kind" delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" >/dev/null 2>&1
		docker network rm "$NET" >/dev/null 2>&1
	fi
	stop_pid "$LAB/registry/pid" 20
	stop_pid "$LAB/dockerd.pid" 60
	# dockerd normally removes these itself; make sure
	local l ch ipt t rule
	for l in "$NET_BRIDGE" docker0; do ip link show "$l" >/dev/null 2>&1 && ip link del "$l"; done
	for ipt in iptables ip6tables; do
		for t in filter nat mangle raw; do
			for ch in $($ipt -t $t -S 2>/dev/null | awk '$1=="-N" && $2 ~ /^DOCKER/ {print $2}'); do
				grep -q -- "-N $ch\$" "$LAB/state/$ipt" 2>/dev/null && continue
				$ipt -t $t -S | grep -E -- "-j $ch( |\$)" | sed 's/^-A/-D/' | while read -r rule; do eval "$ipt -t $t $rule"; done
				$ipt -t $t -F "$ch"
				$ipt -t $t -X "$ch"
			done
		done
	done
	[ -s "$LAB/state/iptables" ] && [ "$(iptables -S FORWARD | head -1)" != "$(grep -m1 '^-P FORWARD' "$LAB/state/iptables")" ] && iptables -P FORWARD "$(grep -m1 '^-P FORWARD' "$LAB/state/iptables" | awk '{print $3}')"
	awk -v l="$LAB/" 'index($5, l)==1 || $5 ~ "^/run/crivet-kind" {print $5}' /proc/self/mountinfo | sort -r | xargs -r umount -l
	rm -rf /run/crivet-kind-docker "$LAB/t0"
	leftovers_report
}

# What up could leave on the host, compared with what save_host_state saw.
# Only what is ours: other harnesses' bridges, veths and KUBE-*/CNI-*
# chains come and go meanwhile.
leftovers() {
	pgrep -f "dockerd --data-root $LAB/" | sed 's/^/process dockerd /'
	pgrep -f "docker-registry serve $LAB/" | sed 's/^/process registry /'
	awk -v l="$LAB/" 'index($5, l)==1 {print "mount " $5}' /proc/self/mountinfo
	[ -s "$LAB/state/links" ] || return 0
	ip -o link show | awk -F': ' '{sub("@.*", "", $2); print $2}' | grep -E "^($NET_BRIDGE|docker0|br-)" | sed 's/^/link /'
	local ipt t
	for ipt in iptables ip6tables; do
		for t in filter nat mangle raw; do $ipt -t "$t" -S; done | grep -E 'DOCKER|docker|172\.29\.0\.|crivetkind' | grep -vxF -f "$LAB/state/$ipt" | sed "s/^/$ipt /"
	done
	[ "$(iptables -S FORWARD | head -1)" = "$(grep -m1 '^-P FORWARD' "$LAB/state/iptables")" ] || echo "FORWARD policy $(iptables -S FORWARD | head -1)"
}
leftovers_report() {
	local l
	l=$(leftovers | sort -u)
	if [ -z "$l" ]; then
		log "down: nothing left (dockerd, registry, mounts, links, DOCKER chains; FORWARD policy $(iptables -S FORWARD | head -1 | awk '{print $3}'))"
		rm -rf "$LAB/state"
	else
		log "down: LEFT BEHIND:"
		echo "$l" | sed 's/^/  /'
		return 1
	fi
}

# ---------------------------------------------------------------- main
mkdir -p "$LAB/logs"
exec 9>"$LAB/.lock"
flock -n 9 || die "another run holds $LAB/.lock"
case ${1:-all} in
image)
	image
	[ "${KEEP:-0}" = 1 ] || down # the image stays in $LAB/docker
	;;
up) up ;;
check) check ;;
down) down ;;
all)
	[ "${KEEP:-0}" = 1 ] || trap 'down' EXIT
	trap 'exit 130' INT TERM
	up || exit 1
	check
	;;
*) die "usage: $0 [image|up|check|down|all]" ;;
esac
