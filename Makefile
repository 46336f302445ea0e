# crivet — see README.md. Every target that needs host packages installs
# them first, so each works on a fresh Debian 12 machine (as root).

GO        ?= go
TAGS      := containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper
BIN       := $(CURDIR)/bin
CRIVET    := $(BIN)/crivet
CRICTL    := $(BIN)/crictl
CRI_TOOLS := v1.37.0
APT_PKGS  := runc criu libseccomp-dev conmon containernetworking-plugins iproute2 iptables docker-registry skopeo busybox-static containerd gnupg jq curl bc util-linux
# Semantic (kubelet parses the runtime version as semver): release + commit.
VERSION   := 0.2.0+$(shell git describe --always --dirty 2>/dev/null || echo unknown)

.PHONY: all build deps tools runc install-runc cosign criu install-criu run install test unit e2e vet fuzz conformance bench bench-smoke kubelet node-e2e node-e2e-smoke cluster cluster-down up check down systemd-test cgroupv2-test kind-deps kind-image kind kind-down clean

all: build

# crivet, the static infra program it runs for pods sharing a PID namespace,
# and the per-container monitor (both looked up beside crivet).
build:
	$(GO) build -tags "$(TAGS)" -ldflags "-X main.version=$(VERSION)" -o $(CRIVET) ./cmd/crivet
	CGO_ENABLED=0 $(GO) build -o $(BIN)/crivet-pause ./cmd/crivet-pause
	CGO_ENABLED=0 $(GO) build -o $(BIN)/crivet-monitor ./cmd/crivet-monitor

# A current runc (user namespaces and id-mapped mounts need runc >= 1.2;
# Debian 12 ships 1.1.5), built from the Go module proxy with seccomp
# (cgo + libseccomp-dev): bin/runc. `make install-runc` puts it in
# /usr/local/sbin, ahead of Debian's /usr/bin/runc on PATH.
RUNC_VERSION := v1.5.3
RUNC := $(BIN)/runc
runc: $(RUNC)
$(RUNC):
	@$(MAKE) --no-print-directory deps
	CGO_ENABLED=1 GOBIN=$(BIN) GOFLAGS=-buildvcs=false $(GO) install -tags seccomp -ldflags "-X main.version=$(RUNC_VERSION:v%=%)" github.com/opencontainers/runc@$(RUNC_VERSION)
install-runc: $(RUNC)
	install -D -m 0755 $(RUNC) /usr/local/sbin/runc

# cosign v3 for the real-cosign tests (signing with cosign's defaults:
# Sigstore bundles as OCI referrers), built from the module proxy into the
# cache the tests look in (test/fixtures/cosign.go); ~13-25 min cold on
# 2 cores, instant once built. Without it those tests skip and say so.
COSIGN_VERSION := v3.1.3
cosign:
	@dir="$$(dirname "$$($(GO) env GOCACHE)")/crivet-test-tools/cosign-$(COSIGN_VERSION)"; \
	if "$$dir/cosign" version 2>/dev/null | grep -q "$(COSIGN_VERSION:v%=%)"; then echo "cosign $(COSIGN_VERSION): $$dir/cosign"; \
	else mkdir -p "$$dir" && cd "$$dir" && GOBIN="$$dir" GOFLAGS= GOWORK=off flock .lock $(GO) install github.com/sigstore/cosign/v3/cmd/cosign@$(COSIGN_VERSION); fi

# CRIU for checkpoint/restore (KEP-2008). Debian 12's criu 3.17.1 fails
# `criu check` on kernels >= 6.13 ("Unexpected rt vDSO area bounds": the
# kernel split the vDSO data mapping into [vvar] and [vvar_vclock]);
# CRIU 4.1.1, from Debian trixie's source on the apt mirror (pinned by
# sha256), handles it. Built once per machine (~30 s on 2 cores plus its
# build packages from apt) into the cache the other test tools use;
# `make install-criu` puts it in /usr/local/sbin, ahead of Debian's
# /usr/sbin/criu on PATH, where both runc 1.1.5 and runc 1.5.x look.
# Without a working criu the checkpoint tests say so and skip.
CRIU_VERSION := 4.1.1
CRIU_SHA256  := f80a66cb3726bb2116266d4759ce3bcbfab7abdb6b6d430bf20dd41911717afe
CRIU_URL     := https://deb.debian.org/debian/pool/main/c/criu/criu_$(CRIU_VERSION).orig.tar.xz
CRIU_BUILD_PKGS := gcc make pkg-config curl xz-utils libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev \
	protobuf-compiler libnl-3-dev libnet1-dev libcap-dev libbsd-dev libnftables-dev libgnutls28-dev uuid-dev
CRIU_DIR = $$(dirname "$$($(GO) env GOCACHE)")/crivet-test-tools/criu-$(CRIU_VERSION)
criu:
	@dir="$(CRIU_DIR)"; \
	if "$$dir/criu" --version 2>/dev/null | grep -qx "Version: $(CRIU_VERSION)"; then echo "criu $(CRIU_VERSION): $$dir/criu"; exit 0; fi; \
	$(MAKE) --no-print-directory deps APT_PKGS="$(CRIU_BUILD_PKGS)" && \
	mkdir -p "$$dir" && cd "$$dir" && flock .lock sh -euc ' \
		./criu --version 2>/dev/null | grep -qx "Version: $(CRIU_VERSION)" && exit 0; rm -rf src && mkdir src; \
		curl -fsSL -o src.tar.xz "$(CRIU_URL)"; \
		echo "$(CRIU_SHA256)  src.tar.xz" | sha256sum -c --quiet; \
		tar -xJf src.tar.xz -C src --strip-components=1; \
		start=$$(date +%s); \
		$(MAKE) -C src -j"$$(nproc)" criu >build.log 2>&1 || { tail -20 build.log; exit 1; }; \
		install -m 0755 src/criu/criu criu.new && mv criu.new criu && rm -rf src src.tar.xz; \
		echo "criu $(CRIU_VERSION) built in $$(( $$(date +%s) - start ))s: $$PWD/criu"'
install-criu: criu
	install -D -m 0755 "$(CRIU_DIR)/criu" /usr/local/sbin/criu
	@/usr/local/sbin/criu check || echo "install-criu: criu check fails on this host; the checkpoint tests will say so and skip"

# Host packages: installed only when one is missing, so repeated runs are quick.
deps:
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

tools: $(CRICTL)
$(CRICTL):
	GOBIN=$(BIN) $(GO) install sigs.k8s.io/cri-tools/cmd/crictl@$(CRI_TOOLS)

# Node configuration a fresh machine lacks; existing files are never overwritten.
install: build
	install -D -m 0755 $(CRIVET) /usr/local/bin/crivet
	install -D -m 0755 $(BIN)/crivet-pause /usr/local/bin/crivet-pause
	install -D -m 0755 $(BIN)/crivet-monitor /usr/local/bin/crivet-monitor
	@[ -e /etc/containers/policy.json ] || install -D -m 0644 contrib/policies/policy.json /etc/containers/policy.json
	@[ -e /etc/containers/registries.conf ] || install -D -m 0644 contrib/registries.conf /etc/containers/registries.conf
	@[ -e /etc/crivet/crivet.toml ] || install -D -m 0644 contrib/crivet.toml /etc/crivet/crivet.toml
	@mkdir -p /etc/crivet/policies.d /etc/containers/registries.d /etc/cni/net.d
	@ls /etc/cni/net.d/*.conf* >/dev/null 2>&1 || install -D -m 0644 contrib/cni/10-crivet-bridge.conflist /etc/cni/net.d/10-crivet-bridge.conflist
	@mkdir -p /etc/crivet/crivet.toml.d /usr/local/share/man/man8 /usr/local/share/man/man5 /usr/share/bash-completion/completions
	@$(CRIVET) man $(BIN)/man >/dev/null && install -m 0644 $(BIN)/man/*.8 /usr/local/share/man/man8/ && install -m 0644 $(BIN)/man/*.5 /usr/local/share/man/man5/
	@$(CRIVET) completion bash > /usr/share/bash-completion/completions/crivet
	@[ -e /etc/crictl.yaml ] || printf 'runtime-endpoint: unix:///run/crivet/crivet.sock\nimage-endpoint: unix:///run/crivet/crivet.sock\ntimeout: 60\n' > /etc/crictl.yaml

# Runs crivet in the foreground with its defaults (/etc/crivet/crivet.toml).
run: deps tools install
	/usr/local/bin/crivet

vet:
	$(GO) vet -tags "$(TAGS)" ./...

# The whole suite: unit and integration tests (real registry, real
# signatures, real overlay mounts: needs root), then the crictl end-to-end test.
# runc: the runtime-handler tests run Debian's runc and bin/runc side by side.
test: deps tools vet runc
	CRIVET_CRICTL=$(CRICTL) $(GO) test -tags "$(TAGS)" -count=1 -p 1 -timeout 20m ./...

# Every Go fuzz target in the tree, each for FUZZTIME (CI: a short run that
# catches regressions on the seed corpus and a little beyond).
FUZZTIME ?= 10s
fuzz:
	GO=$(GO) TAGS="$(TAGS)" FUZZTIME=$(FUZZTIME) test/fuzz/run.sh

conformance: deps build runc
	test/conformance/run.sh

bench: deps build
	test/bench/run.sh

# A real kubelet v1.37.2 (built offline, ~6-12 min the first time) running
# static pods on crivet, signature cases included. Not in CI: the build is long.
# The same harness in smoke mode (one sample per row, crivet and containerd),
# for CI: it proves the benchmark still runs end to end from a clean clone
# and produces every lifecycle row for both runtimes; its numbers mean nothing.
# Every row named (a prefix; all rows starting with it) must have a number
# in both runtime columns.
SMOKE_RESULTS := $(CURDIR)/test/bench/_work/smoke
SMOKE_ROWS := 'crictl pull 1 MiB' 'crictl pull realistic (6 layers, ~100 MiB) cold' \
	'crictl pull realistic (6 layers, ~100 MiB) shared base present' \
	'RunPodSandbox' 'CreateContainer' 'runp+create+start' \
	'ListContainers (4 containers)' 'ListContainers (8 containers)' 'ContainerStatus (' \
	'scale: 4 pods x 2 start (2 in flight)' 'scale: 4 pods x 2 remove (2 in flight)' \
	'scale: RunPodSandbox p' 'scale: CreateContainer p' 'scale: StartContainer p' \
	'scale: StopPodSandbox p' 'scale: RemovePodSandbox p' \
	'scale: daemon CPU s' 'scale: daemon + shims/monitors CPU s' 'scale: daemon peak RSS'
bench-smoke: deps build
	RESULTS=$(SMOKE_RESULTS) RUNS=1 N=1 SKIP_CRITEST=1 SKIP_SIGNATURE_BENCH=1 RSS_PODS=2 LIST_CONTAINERS="4 8" LIST_PODS=1 \
		REALISTIC_WARMUP=0 SCALE_PODS=4 SCALE_PARALLEL=2 SCALE_ROUNDS=1 test/bench/run.sh
	@for row in $(SMOKE_ROWS); do \
		lines=$$(grep -F "| $$row" $(SMOKE_RESULTS)/latest.md); \
		[ -n "$$lines" ] && ! printf '%s\n' "$$lines" | grep -Evq '^\| [^|]+\| [0-9.]+ [a-zA-Z]+ [^|]*\| [0-9.]+ [a-zA-Z]+' || \
			{ echo "bench-smoke: no numbers for both runtimes in row '$$row'"; exit 1; }; \
	done; echo "bench-smoke: every checked row has numbers for crivet and containerd"

kubelet: deps build runc
	test/kubelet/run.sh

# Kubernetes' node conformance suite (test/e2e_node of v1.37.2, focus
# [NodeConformance]) against a crivet started for the run, offline. Not in
# CI: the first build takes ~30 min, a run about as long. POLICY=signed
# requires the test images' signatures; RUNTIME=containerd compares.
node-e2e: deps runc
	test/node-e2e/run.sh

# A handful of node e2e specs (run.sh's SMOKE_FOCUS, signed policy) so the
# harness cannot rot: builds what the cache lacks (~22 min cold), a few
# minutes warm. Exits non-zero when a spec fails.
node-e2e-smoke: deps runc
	test/node-e2e/run.sh smoke

# A kubeadm cluster (v1.37.2, everything built offline: ~30 min the first
# time) whose every pod runs on crivet: up, check, down. `make cluster down`
# (or cluster-down) only cleans up; `make cluster up` / `make cluster check`
# run one step; KEEP=1 leaves it running; RUNTIME=containerd for comparison.
CLUSTER_STEP := $(firstword $(filter up check down,$(MAKECMDGOALS)))
cluster: $(if $(filter down,$(CLUSTER_STEP)),,deps runc)
	test/cluster/run.sh $(CLUSTER_STEP)
cluster-down:
	test/cluster/run.sh down
# Steps of `make cluster <step>`: nothing by themselves.
up check down:
	@$(if $(filter cluster,$(MAKECMDGOALS)),:,echo "use: make cluster $@")

# crivet with cgroup_manager = "systemd" on a real systemd: a Debian root
# filesystem booted as a node with systemd-nspawn (opt-in; see the script).
systemd-test: deps
	test/systemd/run.sh

# crivet's real-cgroup tests on a cgroup-v2 node: a Debian guest with
# systemd booted under QEMU (software emulation), its root built once per
# machine from apt (test/cgroupv2/README.md). Fails if the tests fail or
# the guest hangs.
cgroupv2-test: deps
	test/cgroupv2/run.sh

# A kind cluster (1 control-plane + 2 workers) whose nodes run crivet,
# offline: its own dockerd (Debian's docker.io) and node image built from a
# debootstrapped Debian (contrib/kind/README.md). Opt-in, not in CI.
KIND_PKGS := docker.io debootstrap
kind-deps: deps
	@missing=$$(for p in $(KIND_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

kind-image: kind-deps
	test/kind/run.sh image

kind: kind-deps
	test/kind/run.sh

kind-down:
	test/kind/run.sh down

clean:
	rm -rf $(BIN)
