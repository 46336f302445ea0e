# shellcheck shell=bash
# Sourced by the harnesses that apply workloads to a cluster (test/cluster,
# test/kind): the manifests they share, printed as YAML. The caller sets
# REG (the lab registry, whose lab/busybox:1.0 is busybox-static). A NODE
# argument pins a pod to that node (nodeName); empty or absent, the
# scheduler places it.

# pod NAME NAMESPACE IMAGE COMMAND [SPEC [CONTAINER]]: a Pod of one
# container ($POD_CONTAINER, default c) running COMMAND (a JSON array),
# $POD_GRACE (default 1) seconds to stop. SPEC (pod spec fields, indented
# two spaces) and CONTAINER (container fields, indented four) are added.
pod() {
	printf 'apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s}\nspec:\n  terminationGracePeriodSeconds: %s\n' "$1" "$2" "${POD_GRACE:-1}"
	[ -z "${5:-}" ] || printf '%s\n' "$5"
	printf '  containers:\n  - name: %s\n    image: %s\n    command: %s\n' "${POD_CONTAINER:-c}" "$3" "$4"
	[ -z "${6:-}" ] || printf '%s\n' "$6"
}

# node_name NODE: the pod spec line pinning a pod to NODE, or nothing.
node_name() { [ -z "${1:-}" ] || echo "  nodeName: $1"; }

# sleep_pod NAME NAMESPACE IMAGE [NODE]: a pod that only sleeps, its image
# pulled only when not on the node (the signature cases' pods).
sleep_pod() {
	pod "$1" "$2" "$3" '["sh", "-c", "exec sleep 3600"]' "$(node_name "${4:-}")" "    imagePullPolicy: IfNotPresent"
}

# namespaces NAME...: a Namespace each.
namespaces() {
	local n sep=
	for n in "$@"; do
		printf '%sapiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n' "$sep" "$n"
		sep=$'---\n'
	done
}

# runtime_class NAME: a RuntimeClass of crivet's handler NAME.
runtime_class() { printf 'apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: %s}\nhandler: %s\n' "$1" "$1"; }

# deployment NAME REPLICAS GRACE: the head of Deployment NAME in default,
# REPLICAS pods labelled app=NAME with GRACE seconds to stop; the caller
# prints the rest of the pod spec, indented six spaces.
deployment() {
	printf 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: %s, namespace: default}\nspec:\n  replicas: %s\n' "$1" "$2"
	printf '  selector: {matchLabels: {app: %s}}\n  template:\n    metadata: {labels: {app: %s}}\n' "$1" "$1"
	printf '    spec:\n      terminationGracePeriodSeconds: %s\n' "$3"
}

# web_manifest [SPEC]: Deployment web (4 busybox httpd replicas serving
# their hostname, ready when GET /index.html answers) and Service web
# (port 80); SPEC (pod spec fields, indented six spaces) is added.
# shellcheck disable=SC2120 # its arguments are optional
web_manifest() {
	deployment web 4 2
	[ -z "${1:-}" ] || printf '%s\n' "$1"
	cat <<EOM
      containers:
      - name: httpd
        image: $REG/lab/busybox:1.0
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /index.html, port: 8080}
          periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
EOM
}

# client_pod [NODE]: pod client, which logs a marker and sleeps (the
# kubectl logs and exec checks, nslookup and wget from a pod).
# shellcheck disable=SC2120 # its arguments are optional
client_pod() {
	POD_CONTAINER=client pod client default "$REG/lab/busybox:1.0" '["sh", "-c", "echo client-log-marker; exec sleep 3600"]' "$(node_name "${1:-}")"
}

# job_manifest [DNS_SERVER]: Job once, which resolves Service web through
# CoreDNS (DNS_SERVER: the one to ask, else the pod's resolver) and
# fetches its page.
# shellcheck disable=SC2120 # its arguments are optional
job_manifest() {
	cat <<EOM
apiVersion: batch/v1
kind: Job
metadata: {name: once, namespace: default}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: once
        image: $REG/lab/busybox:1.0
        command: ["sh", "-c", "nslookup web.default.svc.cluster.local${1:+ $1} && wget -qO- http://web/index.html"]
EOM
}

# scale_manifest: Deployment scale, 30 sleeping replicas.
scale_manifest() {
	deployment scale 30 1
	printf '      containers:\n      - name: sleep\n        image: %s\n        command: ["sleep", "3600"]\n' "$REG/lab/busybox:1.0"
}
