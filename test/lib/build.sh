# shellcheck shell=bash
# Sourced by the harnesses that run crivet under a real kubelet
# (test/kubelet, test/cluster): building crivet, crictl and sigtool into
# $LAB/bin. The caller defines REPO, LAB, TAGS, CRI_TOOLS, log and die.

# crivet_version: as `make build` stamps it (the Makefile's release +
# the commit): kubelet parses the runtime's version as semver.
crivet_version() {
	local base
	base=$(sed -n 's/^VERSION *:= *\([0-9][0-9.]*\)+.*/\1/p' "$REPO/Makefile")
	echo "${base:-0.0.0}+$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
}

# build_crivet: crivet, crivet-pause and crivet-monitor from $REPO, or
# copied from $CRIVET_BIN_DIR when it is set.
build_crivet() {
	if [ -n "${CRIVET_BIN_DIR:-}" ]; then
		cp "$CRIVET_BIN_DIR"/crivet "$CRIVET_BIN_DIR"/crivet-pause "$CRIVET_BIN_DIR"/crivet-monitor "$LAB/bin/" || die "copy from $CRIVET_BIN_DIR"
		return
	fi
	local v
	v=$(crivet_version)
	log "building crivet $v from $REPO into $LAB/bin"
	(cd "$REPO" &&
		nice go build -tags "$TAGS" -ldflags "-X main.version=$v" -o "$LAB/bin/crivet" ./cmd/crivet &&
		CGO_ENABLED=0 nice go build -o "$LAB/bin/crivet-pause" ./cmd/crivet-pause &&
		CGO_ENABLED=0 nice go build -o "$LAB/bin/crivet-monitor" ./cmd/crivet-monitor) || die "crivet build failed"
}

build_crictl() {
	[ -x "$LAB/bin/crictl" ] && return
	if [ -x "$REPO/bin/crictl" ]; then cp "$REPO/bin/crictl" "$LAB/bin/"; return; fi
	GOBIN=$LAB/bin go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS" || die "crictl install failed"
}

# build_cdiplugin: the kubelet lab's device plugin handing out a CDI
# device (a module of its own, test/tools/cdiplugin).
build_cdiplugin() {
	(cd "$REPO/test/tools/cdiplugin" && nice go build -o "$LAB/bin/cdiplugin" .) \
		>"$LAB/logs/cdiplugin-build.log" 2>&1 || die "cdiplugin build failed, see $LAB/logs/cdiplugin-build.log"
}

# build_sigtool: sigstore key pairs and signing with go.podman.io/image/v5,
# the library crivet verifies with (Debian's skopeo 1.9.3 has sigstore
# signing switched off).
build_sigtool() {
	[ -x "$LAB/bin/sigtool" ] && return
	(cd "$REPO" && nice go build -tags "$TAGS" -o "$LAB/bin/sigtool" ./test/tools/sigtool) \
		>"$LAB/logs/sigtool-build.log" 2>&1 || die "sigtool build failed, see $LAB/logs/sigtool-build.log"
}
