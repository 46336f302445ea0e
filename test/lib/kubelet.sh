# shellcheck shell=sh
# Sourced by the harnesses that run a real kubelet (test/kubelet,
# test/cgroupv2): where a kubelet of the version under test is found, and
# how one is built from the Go module proxy. POSIX sh (test/cgroupv2 is
# run by dash). The caller may define log; nothing here exits.

KUBELET_VERSION=${KUBELET_VERSION:-v1.37.2}
# The staging modules (k8s.io/api, client-go, …) are published as v0.x of
# the same minor and patch.
KUBELET_STAGING_VERSION=v0.${KUBELET_VERSION#v1.}

# kubelet_is PATH: PATH is an executable kubelet of $KUBELET_VERSION.
kubelet_is() {
	[ -x "$1" ] && "$1" --version 2>/dev/null | grep -qx "Kubernetes $KUBELET_VERSION"
}

# kubelet_cache: the per-machine build cache, beside Go's own (it survives
# fresh clones, as the Go build cache does).
kubelet_cache() {
	echo "$(go env GOCACHE)/../crivet-test-tools/kubelet-$KUBELET_VERSION"
}

# kubelet_find: print the path of a kubelet of $KUBELET_VERSION that a
# harness already built ($KUBELET first), or fail.
kubelet_find() {
	for k in ${KUBELET:-} "$(kubelet_cache)/kubelet" \
		"$(go env GOCACHE)/../crivet-test-tools/node-e2e-$KUBELET_VERSION/bin/kubelet" \
		/var/tmp/crivet-cluster/bin/kubelet /var/tmp/kubelet-lab/bin/kubelet; do
		if kubelet_is "$k"; then
			echo "$k"
			return 0
		fi
	done
	return 1
}

# kubelet_build OUT LOGFILE: build kubelet $KUBELET_VERSION into OUT from
# the module proxy (6-12 minutes on 2 cores): a throwaway module requiring
# k8s.io/kubernetes, with every staging module kubernetes replaces by
# ./staging/src/... replaced by its published version, as kubernetes'
# own go.mod lists them.
kubelet_build() {
	out=$1 logf=$2
	d=$(mktemp -d)
	minor=${KUBELET_VERSION#v1.}
	minor=${minor%%.*}
	(
		set -e
		cd "$d"
		gomod=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBELET_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
		[ -s "$gomod" ]
		{
			printf 'module kbuild\n\n%s\n\n%s\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' \
				"$(grep -m1 '^go ' "$gomod")" "$(grep -m1 '^godebug ' "$gomod" || true)" "$KUBELET_VERSION"
			sed -n "s#^	\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#	\1 => \1 $KUBELET_STAGING_VERSION#p" "$gomod"
			printf ')\n'
		} >go.mod
		printf '//go:build tools\n\npackage kbuild\n\nimport _ "k8s.io/kubernetes/cmd/kubelet"\n' >tools.go
		nice -n 10 go mod tidy
		nice -n 10 go build -tags tools -buildvcs=false \
			-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBELET_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean" \
			-o "$out.tmp" k8s.io/kubernetes/cmd/kubelet
		mv "$out.tmp" "$out"
	) >"$logf" 2>&1
	rc=$?
	rm -rf "$d"
	return $rc
}

# kubelet_get: print the path of a kubelet of $KUBELET_VERSION, building
# it into the cache when no harness has one.
kubelet_get() {
	kubelet_find && return 0
	c=$(kubelet_cache)
	mkdir -p "$c"
	command -v log >/dev/null 2>&1 && log "building kubelet $KUBELET_VERSION into $c (6-12 min the first time)" >&2
	kubelet_build "$c/kubelet" "$c/build.log" || { tail -20 "$c/build.log" >&2; return 1; }
	echo "$c/kubelet"
}
