# shellcheck shell=bash
# Sourced by the harnesses that run crivet with signature policies
# (test/kubelet, test/cluster, test/kind): the containers/image
# configuration crivet reads from $LAB/etc, and signing with sigtool
# (test/tools/sigtool, built into $LAB/bin by test/lib/build.sh). The
# caller sets LAB and REG (the lab registry, host:port) and defines die.

# write_registries_d: sigstore signatures stored as attachments in the
# registry, for crivet (verifying) and skopeo/sigtool (pushing, signing).
write_registries_d() {
	mkdir -p "$LAB/etc/registries.d"
	printf 'default-docker:\n  use-sigstore-attachments: true\n' >"$LAB/etc/registries.d/default.yaml"
}

# write_image_config: the global policy.json (anything goes: namespaces
# tighten it with policy files of their own) and a registries.conf that
# reaches $REG over plain HTTP and searches no registry for short names.
write_image_config() {
	mkdir -p "$LAB/etc"
	printf '{"default": [{"type": "insecureAcceptAnything"}]}\n' >"$LAB/etc/policy.json"
	printf 'unqualified-search-registries = []\n\n[[registry]]\nprefix = "%s"\nlocation = "%s"\ninsecure = true\n' "$REG" "$REG" >"$LAB/etc/registries.conf"
	write_registries_d
}

# signed_only_policy: a policy (printed) that admits only images of $REG
# with a sigstore signature by $LAB/keys/cosign.pub for their own
# repository (matchRepository: a signed image under another name is refused).
signed_only_policy() {
	cat <<EOP
{
  "default": [{"type": "reject"}],
  "transports": {
    "docker": {
      "$REG": [{"type": "sigstoreSigned", "keyPath": "$LAB/keys/cosign.pub", "signedIdentity": {"type": "matchRepository"}}]
    }
  }
}
EOP
}

# sigtool_keygen PASSPHRASE: $LAB/keys/cosign.{key,pub}, unless there.
sigtool_keygen() {
	[ -s "$LAB/keys/cosign.key" ] || "$LAB/bin/sigtool" keygen "$LAB/keys" "$1" || die "sigtool keygen"
}

# sigtool_sign PASSPHRASE REF...: a sigstore signature by
# $LAB/keys/cosign.key for each REF, attached in the registry.
sigtool_sign() {
	local pass=$1
	shift
	"$LAB/bin/sigtool" sign "$LAB/keys/cosign.key" "$pass" "$LAB/etc/registries.d" "$@" || die "sigtool sign $*"
}
