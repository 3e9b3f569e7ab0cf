#!/usr/bin/env bash
# QEMU's own vhost-user-blk qtest (tests/qtest/vhost-user-blk-test.c in qos-test) against
# `vudm serve`, launched by the test exactly as it launches qemu-storage-daemon: no
# wrapper. The test hands vudm QSD's --blockdev/--export arguments with a listening fd.
#
# The qtest exits 0 having run nothing when its storage daemon variable is unset or the
# test path is wrong, so every expected test must be reported "ok" by name.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
bash tests/conformance/build.sh
out="$root/build/conformance"
mkdir -p "$out/results"

base=/x86_64/pc/i440FX-pcihost/pci-bus-pc/pci-bus/vhost-user-blk-pci
tests=(vhost-user-blk/vhost-user-blk-tests/basic vhost-user-blk/vhost-user-blk-tests/indirect
       vhost-user-blk-pci-tests/idx vhost-user-blk-pci-tests/nxvirtq
       vhost-user-blk-pci-tests/hotplug vhost-user-blk-pci-tests/multiqueue)
args=()
for t in "${tests[@]}"; do args+=(-p "$base/$t"); done

log="$out/results/qos-test.tap"
# "vudm serve" has no slash: the qtest then looks the command up in PATH (a path with
# arguments would fail its access() check); .venv/bin comes first.
PATH="$root/.venv/bin:$PATH" \
QTEST_QEMU_STORAGE_DAEMON_BINARY="vudm serve" \
QTEST_QEMU_BINARY="$(command -v qemu-system-x86_64)" \
QEMU_MODULE_DIR="$out/modules" \
  timeout 600 "$out/qos/tests/qtest/qos-test" --tap -k "${args[@]}" \
  >"$log" 2>"$out/results/qos-test.stderr" || true

status=0
for t in "${tests[@]}"; do
  if grep -Eq "^ok [0-9]+ $base/$t\$" "$log"; then
    echo "[conformance] ok   $t"
  else
    echo "[conformance] FAIL $t"
    status=1
  fi
done
if [ "$status" -ne 0 ]; then
  echo "[conformance] QEMU's vhost-user-blk qtest failed against vudm serve; TAP: $log," \
       "daemon logs: $out/results/qos-test.stderr" >&2
  tail -20 "$log" >&2
fi
exit "$status"
