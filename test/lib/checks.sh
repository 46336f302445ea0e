# shellcheck shell=bash
# Sourced by the harnesses that check a cluster through its API server
# (test/cluster, test/kind): waits, pod and event queries, and the checks
# both run. The caller sets LAB (manifests in $LAB/manifests, written with
# test/lib/manifests.sh) and defines KC (its kubectl), log, pass and fail
# (test/lib/log.sh), and check_all_on_runtime (its own: where containers
# are listed differs).

# wait_for SECONDS COMMAND...: COMMAND succeeds within about SECONDS
# (tried once a second).
wait_for() {
	local t=$1
	shift
	for _ in $(seq "$t"); do "$@" && return 0; sleep 1; done
	return 1
}

# Queries by NAMESPACE POD (deployments: in default).
waiting_reason() { KC get pod -n "$1" "$2" -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}' 2>/dev/null; }
# has_reason NAMESPACE POD "REASON...": the first container waits for one of them.
has_reason() { case " $3 " in *" $(waiting_reason "$1" "$2") "*) [ -n "$(waiting_reason "$1" "$2")" ] ;; *) return 1 ;; esac; }
events_of() { KC get events -n "$1" --field-selector "involvedObject.name=$2" -o custom-columns=REASON:.reason,MESSAGE:.message --no-headers 2>/dev/null; }
event_has() { events_of "$1" "$2" | grep "$3" >/dev/null; }
pod_phase() { KC get pod -n "$1" "$2" -o jsonpath='{.status.phase}' 2>/dev/null; }
pod_ready() { KC wait --for=condition=Ready --timeout=2s pod -n "$1" "$2" >/dev/null 2>&1; }
ready_replicas() { KC get deploy -n default "$1" -o jsonpath='{.status.readyReplicas}' 2>/dev/null; }
deploy_ready() { [ "$(ready_replicas "$1")" = "$2" ]; }
# coredns_ready: both CoreDNS pods ready.
coredns_ready() { [ "$(KC get pods -n kube-system -l k8s-app=kube-dns -o jsonpath='{.items[*].status.containerStatuses[0].ready}' | grep -o true | wc -l)" = 2 ]; }
# kube_system_running: no pod of kube-system in another state than Running.
kube_system_running() { ! KC get pods -n kube-system --no-headers | grep -v ' Running '; }
# nodes_of LABEL: "node=count" of the pods with LABEL.
nodes_of() { KC get pods -l "$1" -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort | uniq -c | awk '{print $2 "=" $1}' | xargs; }

# check_logs_exec [WHERE]: kubectl logs and exec in pod client (WHERE
# says where it runs, in the logs line).
# shellcheck disable=SC2120 # its arguments are optional
check_logs_exec() {
	local out
	out=$(KC logs client 2>&1)
	if [ "$out" = client-log-marker ]; then pass "kubectl logs${1:+ ($1)}: $out"; else fail "kubectl logs: $out"; fi
	out=$(KC exec client -- sh -c 'echo exec-ok $(cat /etc/image-name) $(id -u)' 2>&1)
	if [ "$out" = "exec-ok lab-busybox 0" ]; then pass "kubectl exec: $out"; else fail "kubectl exec: $out"; fi
}

# check_job [NODE]: Job once completes (with NODE, its line names the
# node it ran on).
# shellcheck disable=SC2120 # its arguments are optional
check_job() {
	log "check: a Job completing"
	KC apply -f "$LAB/manifests/job.yaml" >/dev/null || { fail "apply job"; return; }
	if KC wait --for=condition=Complete --timeout=120s job/once >/dev/null 2>&1; then
		pass "Job once Complete${1:+ on $(KC get pods -l job-name=once -o jsonpath='{.items[0].spec.nodeName}')} (nslookup + wget of the Service): $(KC logs job/once 2>&1 | tail -1)"
	else fail "Job once: $(KC get job once -o jsonpath='{.status}' 2>&1) $(KC logs job/once 2>&1 | tail -3 | tr '\n' ' ')"; fi
}

scale_gone() { [ -z "$(KC get pods -l app=scale --no-headers 2>/dev/null)" ]; }

# check_scale READY_FILE [SPREAD]: Deployment scale's 30 pods Ready within
# 300 s (the seconds it took in READY_FILE; with SPREAD, the line says
# which nodes they run on), every container on the runtime, then all gone.
check_scale() {
	log "check: 30 pods"
	local t0
	t0=$(now)
	KC apply -f "$LAB/manifests/scale.yaml" >/dev/null || { fail "apply scale"; return; }
	if wait_for 300 deploy_ready scale 30; then
		since "$t0" >"$1"
		pass "Deployment scale: 30 pods Ready $(cat "$1") s after kubectl apply${2:+ ($(nodes_of app=scale))}"
	else fail "Deployment scale: $(ready_replicas scale)/30 Ready after 300 s"; fi
	check_all_on_runtime "with 30 more pods"
	t0=$(now)
	KC delete -f "$LAB/manifests/scale.yaml" --wait=false >/dev/null
	if wait_for 300 scale_gone; then
		pass "Deployment scale deleted: 30 pods gone in $(since "$t0") s"
	else fail "scale pods left: $(KC get pods -l app=scale --no-headers | wc -l)"; fi
}
