# shellcheck shell=bash
# images.sh: the images the [NodeConformance] specs of k8s.io/kubernetes
# v1.37.2 run, built offline and pushed to $REGISTRY. Sourced by run.sh,
# which defines WORK, TOOLS_BIN, REGISTRY, log and die and sources
# test/lib/oci.sh (oci_layout).
#
# Each image is one layer made here: Debian's busybox (the dynamic one, whose
# ash execs /bin/<applet> as the busybox images do) with the host's libc,
# plus what the upstream Dockerfile in test/images/<name> adds: agnhost built
# from its source in the kubernetes module, nnp (setuid) for nonewprivs,
# USER 1234 for nonroot, util-linux's ipcs/ipcmk for ipc-utils, Debian's
# nginx for nginx, the host's perl for perl. Layers are sorted tars with
# fixed owners and mtime and gzip without name or time, so the digests are
# the same on every run.

IMG=$WORK/images
DEBS=$WORK/debs

# The registry paths below $REGISTRY, as KUBE_TEST_REPO_LIST maps them.
E2E=e2e-test-images

# deb_extract PACKAGE: Debian's package unpacked (never installed) in $DEBS/PACKAGE.
deb_extract() {
	local p=$1 deb
	mkdir -p "$DEBS"
	deb=$(ls "$DEBS/${p}"_*.deb 2>/dev/null | head -1 || true)
	if [ -z "$deb" ]; then
		(cd "$DEBS" && { apt-get download "$p" >&2 || { apt-get update -qq >&2 && apt-get download "$p" >&2; }; }) ||
			die "apt-get download $p failed"
		deb=$(ls "$DEBS/${p}"_*.deb | head -1)
	fi
	rm -rf "${DEBS:?}/$p" && dpkg-deb -x "$deb" "$DEBS/$p"
}

# copy_with_libs ROOT FILE [DEST]: FILE (a host or unpacked binary) into
# ROOT at DEST (default: the same path), with every library ldd names.
copy_with_libs() {
	local root=$1 f=$2 dest=${3:-$2} lib
	mkdir -p "$root/$(dirname "$dest")"
	cp -L "$f" "$root/$dest"
	for lib in $(ldd "$f" 2>/dev/null | awk '$2=="=>" && $3 ~ /^\//{print $3} $1 ~ /^\//{print $1}'); do
		[ -e "$root/$lib" ] && continue
		mkdir -p "$root/$(dirname "$lib")"
		cp -L "$lib" "$root/$lib"
	done
}

# base_rootfs DIR: busybox with every applet, root and nobody, /tmp.
base_rootfs() {
	local root=$1 a
	rm -rf "$root"
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,tmp,root,home,var/run,proc,sys,dev}
	chmod 1777 "$root/tmp"
	copy_with_libs "$root" "$DEBS/busybox/bin/busybox" /bin/busybox
	# Every applet where Debian puts it and in /bin, as the busybox image
	# has them (specs call /bin/sysctl, /bin/cat ...).
	for a in $("$DEBS/busybox/bin/busybox" --list-full); do
		[ -e "$root/$a" ] || ln -s /bin/busybox "$root/$a"
		[ -e "$root/bin/${a##*/}" ] || ln -s /bin/busybox "$root/bin/${a##*/}"
	done
	# nmeter: an applet Debian's busybox lacks and the lifecycle specs call.
	cp "$TOOLS_BIN/nmeter" "$root/bin/nmeter"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
}

# mkimage REF ROOT CONFIG: a one-layer image from ROOT with CONFIG (the
# "config" object of the image config, JSON) pushed as $REGISTRY/REF.
mkimage() {
	local ref=$1 root=$2 cfgobj=$3 out=$IMG/dirs/${1//[\/:]/_}
	# Every tag its own image ID, as upstream: kubelet reports a running
	# container's image by the image's tags, and specs that switch between
	# two tags (agnhost 2.55/2.66.1, busybox, nginx) check which one runs.
	mkdir -p "$root/etc" && echo "$ref" >"$root/etc/e2e-image"
	oci_layout "$root" "$out" "$cfgobj" || die "image $ref"
	skopeo copy -q --dest-tls-verify=false "dir:$out" "docker://$REGISTRY/$ref" || die "push $REGISTRY/$ref"
	echo "$REGISTRY/$ref" >>"$IMG/pushed.txt"
}

# build_test_images: every image, pushed; $IMG/pushed.txt lists them.
build_test_images() {
	local r=$IMG/rootfs t
	[ -x "$TOOLS_BIN/agnhost" ] || die "$TOOLS_BIN/agnhost missing (build step)"
	[ -x "$TOOLS_BIN/nnp" ] || die "$TOOLS_BIN/nnp missing (build step)"
	[ -x "$TOOLS_BIN/nmeter" ] || die "$TOOLS_BIN/nmeter missing (build step)"
	[ -x "$TOOLS_BIN/crivet-pause" ] || die "$TOOLS_BIN/crivet-pause missing (build step)"
	mkdir -p "$IMG"
	: >"$IMG/pushed.txt"
	deb_extract busybox
	log "building the test images and pushing them to $REGISTRY"

	# busybox: the tags the suite names (1.36.1-1 is hard-coded in some specs).
	base_rootfs "$r"
	# Their sh is the host's bash: Debian's busybox 1.35 ash drops every
	# environment variable whose name is not a shell identifier (data-1),
	# and the ConfigMap and Secret "consumable via the environment" specs
	# print such variables with `sh -c env`, as the upstream image's sh
	# keeps them.
	copy_with_libs "$r" /bin/bash
	ln -sfn bash "$r/bin/sh"
	for t in 1.37.0-2 1.36.1-1; do
		mkimage "$E2E/busybox:$t" "$r" '{"Cmd": ["sh"]}'
	done

	# pause: crivet's own infra program (the sandbox image too).
	rm -rf "$r" && mkdir -p "$r"
	cp "$TOOLS_BIN/crivet-pause" "$r/pause"
	mkimage "pause:3.10.2" "$r" '{"Entrypoint": ["/pause"]}'

	# agnhost (and the old tag the suite also pulls): the upstream layout,
	# the user and group the image defines, the porter test key pair.
	base_rootfs "$r"
	# The tools upstream's Dockerfile adds that specs exec in it: curl and
	# bash (the host's, with their libraries), and netcat-openbsd.
	copy_with_libs "$r" /usr/bin/curl
	copy_with_libs "$r" /bin/bash
	# netcat-openbsd ahead of busybox's nc on PATH: the UDP specs use -u.
	deb_extract netcat-openbsd
	copy_with_libs "$r" "$DEBS/netcat-openbsd/bin/nc.openbsd" /usr/local/bin/nc
	cp "$TOOLS_BIN/agnhost" "$r/agnhost"
	ln -s agnhost "$r/agnhost-2"
	mkdir -p "$r/uploads"
	cp "$K8S_SRC/test/images/agnhost/porter/localhost.crt" "$K8S_SRC/test/images/agnhost/porter/localhost.key" "$r/"
	echo 'user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh' >>"$r/etc/passwd"
	printf 'user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n' >>"$r/etc/group"
	for t in 2.66.1 2.55; do
		mkimage "$E2E/agnhost:$t" "$r" '{"Entrypoint": ["/agnhost"], "Cmd": ["pause"]}'
	done
	# kitten and nautilus: agnhost's test-webserver with their own content,
	# so the two images differ.
	for t in kitten nautilus; do
		echo "{\"image\": \"$t\"}" >"$r/data.json"
		mkimage "$E2E/$t:1.8" "$r" '{"Entrypoint": ["/agnhost"], "Cmd": ["test-webserver"]}'
	done

	# nonewprivs: nnp setuid root; it prints its effective uid.
	base_rootfs "$r"
	install -m 4755 "$TOOLS_BIN/nnp" "$r/usr/local/bin/nnp"
	mkimage "$E2E/nonewprivs:1.4" "$r" '{"Cmd": ["nnp"]}'

	# nonroot: busybox as user 1234.
	base_rootfs "$r"
	mkimage "$E2E/nonroot:1.5" "$r" '{"User": "1234", "Cmd": ["sh"]}'

	# ipc-utils: util-linux's ipcs and ipcmk.
	base_rootfs "$r"
	copy_with_libs "$r" /usr/bin/ipcs
	copy_with_libs "$r" /usr/bin/ipcmk
	mkimage "$E2E/ipc-utils:1.4" "$r" '{"Cmd": ["sh"]}'

	# glibc-dns-testing: a glibc resolver behind `hostname -f` (busybox's
	# hostname with the host's libc and NSS files module).
	base_rootfs "$r"
	for t in /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libnss_dns.so.2; do
		[ -e "$t" ] && copy_with_libs "$r" "$t"
	done
	printf 'hosts: files dns\npasswd: files\ngroup: files\n' >"$r/etc/nsswitch.conf"
	mkimage "$E2E/glibc-dns-testing:2.1.1" "$r" '{"Cmd": ["sh"]}'

	# perl: the host's perl (perl-base) and its core modules.
	base_rootfs "$r"
	copy_with_libs "$r" /usr/bin/perl
	[ -d /usr/lib/x86_64-linux-gnu/perl-base ] && mkdir -p "$r/usr/lib/x86_64-linux-gnu" &&
		cp -a /usr/lib/x86_64-linux-gnu/perl-base "$r/usr/lib/x86_64-linux-gnu/"
	mkimage "$E2E/perl:5.26" "$r" '{"Cmd": ["perl"]}'

	# nginx: Debian's nginx binary serving a static page on :80, with its
	# pid file where the specs read it (/var/run/nginx.pid).
	deb_extract nginx
	deb_extract nginx-common
	base_rootfs "$r"
	copy_with_libs "$r" "$DEBS/nginx/usr/sbin/nginx" /usr/sbin/nginx
	mkdir -p "$r/etc/nginx" "$r/var/log/nginx" "$r/var/lib/nginx" "$r/usr/share/nginx/html"
	cp "$DEBS/nginx-common/etc/nginx/mime.types" "$r/etc/nginx/"
	cat >"$r/etc/nginx/nginx.conf" <<'EOF'
user root;
worker_processes 1;
pid /var/run/nginx.pid;
error_log stderr;
events { worker_connections 256; }
http {
	include /etc/nginx/mime.types;
	access_log off;
	client_body_temp_path /tmp/nginx-body;
	proxy_temp_path /tmp/nginx-proxy;
	fastcgi_temp_path /tmp/nginx-fastcgi;
	uwsgi_temp_path /tmp/nginx-uwsgi;
	scgi_temp_path /tmp/nginx-scgi;
	server { listen 80; root /usr/share/nginx/html; }
}
EOF
	echo '<html><body>Welcome to nginx!</body></html>' >"$r/usr/share/nginx/html/index.html"
	for t in 1.27.0-2 1.28.0-2; do
		mkimage "$E2E/nginx:$t" "$r" '{"Cmd": ["nginx", "-g", "daemon off;"], "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGQUIT"}'
	done
	rm -rf "$r"
	log "pushed $(wc -l <"$IMG/pushed.txt") images (list: $IMG/pushed.txt)"
}

# repo_list FILE: the KUBE_TEST_REPO_LIST that sends every registry the
# suite names to $REGISTRY (the invalid one stays invalid: specs expect its
# pull to fail).
repo_list() {
	cat >"$1" <<EOF
promoterE2eRegistry: $REGISTRY/$E2E
buildImageRegistry: $REGISTRY/build-image
invalidRegistry: invalid.registry.k8s.io/invalid
gcEtcdRegistry: $REGISTRY
gcRegistry: $REGISTRY
sigStorageRegistry: $REGISTRY/sig-storage
privateRegistry: $REGISTRY/k8s-authenticated-test
dockerLibraryRegistry: $REGISTRY/library
cloudProviderGcpRegistry: $REGISTRY/cloud-provider-gcp
EOF
}
