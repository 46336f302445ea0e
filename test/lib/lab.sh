# shellcheck shell=bash
# Sourced by the harnesses that run crivet, a registry and a kubelet on
# this host (test/kubelet, test/cluster): the libraries both use. The
# caller sets REPO (the repository's root); what each library needs of
# it is said at the top of that library.

# log, die, pass, fail, gap, note, now, since, results_summary
# shellcheck source=test/lib/log.sh
. "$REPO/test/lib/log.sh"
# build_crivet, build_crictl, build_sigtool, build_cdiplugin
# shellcheck source=test/lib/build.sh
. "$REPO/test/lib/build.sh"
# stop_pid
# shellcheck source=test/lib/proc.sh
. "$REPO/test/lib/proc.sh"
# port_free, registry_running, registry_start, push
# shellcheck source=test/lib/registry.sh
. "$REPO/test/lib/registry.sh"
# write_registries_d, write_image_config, signed_only_policy, sigtool_keygen, sigtool_sign
# shellcheck source=test/lib/sign.sh
. "$REPO/test/lib/sign.sh"
# debian_handler_toml, cni_bridge_conflist, crivet_start, crivet_kill_leftovers
# shellcheck source=test/lib/crivet.sh
. "$REPO/test/lib/crivet.sh"
# oci_layout
# shellcheck source=test/lib/oci.sh
. "$REPO/test/lib/oci.sh"
# host_sysctls, host_chains
# shellcheck source=test/lib/host.sh
. "$REPO/test/lib/host.sh"
# pod, sleep_pod, deployment, namespaces, runtime_class, and the manifests of test/lib/manifests.sh
# shellcheck source=test/lib/manifests.sh
. "$REPO/test/lib/manifests.sh"
