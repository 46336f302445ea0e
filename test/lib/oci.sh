# shellcheck shell=bash
# Sourced by the harnesses that make their own images (test/kubelet,
# test/cluster, test/node-e2e): one-layer OCI images from a root
# directory, reproducible (same tree, same digests). Needs tar, gzip, jq.

# oci_layout ROOT OUT [CONFIG]: the image of ROOT's tree (owned by root,
# mtimes 0) as a dir: layout in OUT (made anew), for skopeo's dir:
# transport. CONFIG is the image config's "config" object (JSON), merged
# over a PATH.
oci_layout() {
	local root=$1 out=$2 config=${3:-'{}'} diffid layer lsize cfg csize
	rm -rf "$out"
	mkdir -p "$out"
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$root" -cf "$out/layer.tar" . || return 1
	diffid=$(sha256sum <"$out/layer.tar" | cut -d' ' -f1)
	gzip -n -c "$out/layer.tar" >"$out/layer.tar.gz"
	rm -f "$out/layer.tar"
	layer=$(sha256sum <"$out/layer.tar.gz" | cut -d' ' -f1)
	lsize=$(stat -c %s "$out/layer.tar.gz")
	mv "$out/layer.tar.gz" "$out/$layer"
	jq -cn --arg d "sha256:$diffid" --argjson c "$config" '{architecture: "amd64", os: "linux",
		config: ({Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]} + $c),
		rootfs: {type: "layers", diff_ids: [$d]}}' >"$out/config.json"
	cfg=$(sha256sum <"$out/config.json" | cut -d' ' -f1)
	csize=$(stat -c %s "$out/config.json")
	mv "$out/config.json" "$out/$cfg"
	jq -cn --arg c "sha256:$cfg" --argjson cs "$csize" --arg l "sha256:$layer" --argjson ls "$lsize" '{schemaVersion: 2,
		mediaType: "application/vnd.oci.image.manifest.v1+json",
		config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
		layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $l, size: $ls}]}' >"$out/manifest.json"
	echo 'Directory Transport Version: 1.1' >"$out/version"
}
