# shellcheck shell=bash
# Sourced by test/kubelet/run.sh: case 11, checkpoint and restore through
# kubelet (KEP-2008) with real runc and CRIU. Uses run.sh's LAB, NODE,
# REG, CRICTL, log/pass/fail/note, wait_for, pod_q, pod_running,
# show_pod, add_pod, del_pod and pod_gone.
#
# kubelet's POST /checkpoint/{ns}/{pod}/{container} (authenticated port
# 10250) makes crivet write an archive into kubelet's checkpoints
# directory; the counter is then restored in a new pod from that archive
# made into a checkpoint image (the archive as its one layer, a
# checkpoint annotation on the manifest, as checkpointctl build makes),
# and goes on counting from where it was. A pod naming the archive's
# path as its image is tried too: kubelet itself decides whether such a
# name reaches crivet.

# ckpt_pod name image: a static pod whose container "counter" counts once
# a second into /count and onto stdout, from its own memory.
ckpt_pod() {
	cat >"$LAB/pods/$1.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $1
  namespace: default
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: counter
    image: $2
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "i=0; while true; do i=\$((i+1)); echo \$i > /count; echo count \$i; sleep 1; done"]
EOF
}

ckpt_cid() { CRICTL ps -q --name '^counter$' --label io.kubernetes.pod.name="$1-$NODE" 2>/dev/null | head -1; }
ckpt_count() { local c; c=$(CRICTL exec "$1" cat /count 2>/dev/null) && echo "${c:-0}" || echo 0; }
ckpt_count_at_least() { [ "$(ckpt_count "$1")" -ge "$2" ]; }
# ckpt_logged pod: the counts the pod's counter printed, as kubelet keeps them.
ckpt_logged() { cat /var/log/pods/default_"$1-$NODE"_*/counter/0.log 2>/dev/null | awk '$2=="stdout" && $4=="count" {print $5}'; }
# ckpt_decided pod: running, or waiting for a reason other than creating.
ckpt_decided() {
	local st
	st=$(pod_q "$1" '.status.containerStatuses[0].state | if .running then "running" else (.waiting.reason // "") end')
	[ -n "$st" ] && [ "$st" != ContainerCreating ]
}
ckpt_logged_at_least() { [ "$(ckpt_logged "$1" | tail -1)" -ge "$2" ] 2>/dev/null; }

# ckpt_image archive repo:tag: pushes an OCI image whose one layer is the
# archive (uncompressed, so its digest is its diff ID) to the lab registry.
ckpt_image() {
	local out="$LAB/images/checkpoint.dir" layer lsize cfg csize
	rm -rf "$out" && mkdir -p "$out"
	layer=$(sha256sum <"$1" | cut -d' ' -f1)
	lsize=$(stat -c %s "$1")
	cp "$1" "$out/$layer"
	jq -cn --arg l "sha256:$layer" '{architecture: "amd64", os: "linux", rootfs: {type: "layers", diff_ids: [$l]}}' >"$out/config.json"
	cfg=$(sha256sum <"$out/config.json" | cut -d' ' -f1)
	csize=$(stat -c %s "$out/config.json")
	mv "$out/config.json" "$out/$cfg"
	jq -cn --arg c "sha256:$cfg" --argjson cs "$csize" --arg l "sha256:$layer" --argjson ls "$lsize" '{schemaVersion: 2,
		mediaType: "application/vnd.oci.image.manifest.v1+json",
		config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
		layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $l, size: $ls}],
		annotations: {"org.criu.checkpoint.container.name": "counter"}}' >"$out/manifest.json"
	echo 'Directory Transport Version: 1.1' >"$out/version"
	skopeo copy -q --dest-tls-verify=false "dir:$out" "docker://$REG/$2"
}

# ckpt_restored pod at: the restored pod runs, its counter goes on from
# the checkpoint (never from 1) in /count and in kubelet's log of it.
ckpt_restored() {
	local pod=$1 at=$2 cid first
	if ! wait_for 120 running pod_running "$pod"; then
		fail "11 $pod not Running: $(show_pod "$pod") $(kubelet_lines "$pod" 2)"; return 1
	fi
	cid=$(ckpt_cid "$pod")
	first=$(ckpt_count "$cid")
	if [ "$first" -lt "$at" ]; then fail "11 $pod: counter reads $first, checkpointed at $at or later"; return 1; fi
	if ! wait_for 60 counting ckpt_count_at_least "$cid" $((first + 2)); then
		fail "11 $pod: counter stuck at $(ckpt_count "$cid")"; return 1
	fi
	if ! wait_for 60 logged ckpt_logged_at_least "$pod" $((first + 1)) || [ "$(ckpt_logged "$pod" | head -1)" -lt "$at" ]; then
		fail "11 $pod: kubelet's log of the counter: $(ckpt_logged "$pod" | tr '\n' ' ')"; return 1
	fi
	pass "11 $pod restored: counter checkpointed at >= $at goes on ($first, then $(ckpt_count "$cid")); kubelet's log: $(ckpt_logged "$pod" | head -3 | tr '\n' ' ')..."
}

case_checkpoint_restore() {
	log "case 11: checkpoint through kubelet, restore in a new pod"
	local why body code archive cid at
	if ! why=$(criu check 2>&1); then
		note "11 skipped: criu check fails here (make install-criu): $(echo "$why" | tail -1)"; return
	fi
	ckpt_pod ckpt-src "$REG/lab/busybox:1.0"
	add_pod ckpt-src
	if ! wait_for 90 running pod_running ckpt-src; then fail "11 ckpt-src not Running: $(show_pod ckpt-src)"; del_pod ckpt-src; return; fi
	cid=$(ckpt_cid ckpt-src)
	wait_for 60 counting ckpt_count_at_least "$cid" 3 || fail "11 ckpt-src does not count: $(ckpt_count "$cid")"
	body=$(mktemp)
	code=$(curl -sk -o "$body" -w '%{http_code}' -X POST "https://127.0.0.1:10250/checkpoint/default/ckpt-src-$NODE/counter?timeout=60")
	archive=$(jq -r '.items[0] // empty' "$body" 2>/dev/null)
	if [ "$code" != 200 ] || [ ! -f "$archive" ]; then
		fail "11 checkpoint: HTTP $code $(head -c 400 "$body")"; rm -f "$body"; del_pod ckpt-src; return
	fi
	rm -f "$body"
	at=$(ckpt_count "$cid")
	pass "11 kubelet's checkpoint API wrote $archive ($(stat -c %s "$archive") bytes) of a counter at $at; it goes on running: $(wait_for 30 counting ckpt_count_at_least "$cid" $((at + 1)) && echo yes || echo NO)"
	del_pod ckpt-src
	wait_for 120 gone pod_gone ckpt-src || fail "11 ckpt-src still there: $(show_pod ckpt-src)"

	# The archive's path as the pod's image.
	ckpt_pod ckpt-archive "$archive"
	add_pod ckpt-archive
	if wait_for 60 decided ckpt_decided ckpt-archive; then
		if pod_running ckpt-archive; then ckpt_restored ckpt-archive "$at"
		else note "11 a pod whose image is the archive path: kubelet stops it before crivet: $(pod_q ckpt-archive '.status.containerStatuses[0].state.waiting | "\(.reason): \(.message)"')"; fi
	else fail "11 ckpt-archive: no state after 60 s: $(show_pod ckpt-archive)"; fi
	del_pod ckpt-archive
	wait_for 120 gone pod_gone ckpt-archive || fail "11 ckpt-archive still there: $(show_pod ckpt-archive)"

	# The archive as a checkpoint image, pulled by kubelet like any image.
	if ckpt_image "$archive" lab/counter-checkpoint:1; then
		ckpt_pod ckpt-image "$REG/lab/counter-checkpoint:1"
		add_pod ckpt-image
		ckpt_restored ckpt-image "$at"
		del_pod ckpt-image
		wait_for 120 gone pod_gone ckpt-image || fail "11 ckpt-image still there: $(show_pod ckpt-image)"
	else fail "11 push of the checkpoint image failed"; fi
}
