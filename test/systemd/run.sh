#!/bin/sh
# Runs crivet with cgroup_manager = "systemd" on a real systemd: a minimal
# Debian root filesystem booted as a node with systemd-nspawn (systemd as
# its PID 1, its own D-Bus), the way kind runs its nodes. Opt-in: root, a
# Debian/Ubuntu host with the apt mirror reachable, ~300 MB of disk.
#
#   test/systemd/run.sh            # or: make systemd-test
#
# CRIVET_SYSTEMD_ROOTFS (default /var/lib/machines/crivet-systemd) is made
# once with debootstrap and reused. The node shares the host's network
# (bridge crivetsd0, 10.197.0.0/24) to reach the test's registry.
set -eu
cd "$(dirname "$0")/../.."
ROOTFS=${CRIVET_SYSTEMD_ROOTFS:-/var/lib/machines/crivet-systemd}
GO=${GO:-go}
MIRROR=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p; s/^deb \(http[^ ]*\) .*/\1/p' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

t0=$(date +%s)
need=""
command -v systemd-nspawn >/dev/null || need="$need systemd-container"
command -v debootstrap >/dev/null || need="$need debootstrap"
if [ -n "$need" ]; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
if [ ! -x "$ROOTFS/usr/sbin/runc" ]; then
	echo "debootstrap $ROOTFS from $MIRROR"
	debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,runc,iproute2,iptables,util-linux \
		bookworm "$ROOTFS" "$MIRROR" >/dev/null
fi
t1=$(date +%s)
make build >/dev/null
echo "setup $((t1 - t0))s; running the node test"
CRIVET_SYSTEMD_ROOTFS=$ROOTFS CRIVET_BIN=$PWD/bin \
	$GO test -tags "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper" \
	-count=1 -v -run TestCrivetOnASystemdNode ./test/systemd
echo "total $(($(date +%s) - t0))s"
