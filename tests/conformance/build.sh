#!/usr/bin/env bash
# Build what `make conformance` needs from Debian's QEMU source, under build/conformance/:
#   qos/tests/qtest/qos-test        QEMU's own qos test binary (vhost-user-blk tests in it)
#   modules/accel-qtest-x86_64.so   the qtest accelerator, which Debian's QEMU ships without;
#                                   built with the installed QEMU's --with-pkgversion, so
#                                   QEMU_MODULE_DIR=build/conformance/modules loads it.
# Only these two targets are built (not QEMU itself): about 150 s on 2 idle cores.
# Cached: nothing is rebuilt when the outputs exist and the source stamp matches.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
src="$root/build/src"
out="$root/build/conformance"
tree="$out/qemu"
log() { printf '[conformance] %s\n' "$*"; }

mkdir -p "$src" "$out"
exec 9>"$out/.lock"
flock 9

need=()
for p in meson ninja-build libglib2.0-dev libpixman-1-dev libfdt-dev dpkg-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 \
    "${need[@]}" >/dev/null
fi

dsc="$(ls "$src"/qemu_*.dsc 2>/dev/null | head -n1 || true)"
if [ -z "$dsc" ]; then
  log "downloading the qemu source package into $src"
  (cd "$src" && apt-get source --download-only -qq qemu >/dev/null)
  dsc="$(ls "$src"/qemu_*.dsc | head -n1)"
fi

# The installed QEMU's package version string, e.g. "Debian 1:7.2+dfsg-7+deb12u18+b3":
# a module only loads into a QEMU built with the same version and pkgversion.
pkgversion="$(qemu-system-x86_64 --version | sed -n '1s/.*(\(.*\)).*/\1/p')"
stamp_want="$(basename "$dsc") $pkgversion"
if [ ! -f "$tree/.vudm-stamp" ] || [ "$(cat "$tree/.vudm-stamp")" != "$stamp_want" ]; then
  log "unpacking $(basename "$dsc") with Debian's patches"
  rm -rf "$tree" "$out/qos" "$out/mod"
  dpkg-source --no-check -x "$dsc" "$tree" >/dev/null
  echo "$stamp_want" >"$tree/.vudm-stamp"
fi

common=(--target-list=x86_64-softmmu --without-default-features --enable-tools
        --enable-vhost-user --enable-vhost-user-blk-server --enable-fdt=system
        --disable-werror --disable-install-blobs "--with-pkgversion=$pkgversion")

qos="$out/qos/tests/qtest/qos-test"
if [ ! -x "$qos" ]; then
  log "building qos-test"
  mkdir -p "$out/qos"
  (cd "$out/qos" && "$tree/configure" "${common[@]}" >configure.log 2>&1) ||
    { tail -20 "$out/qos/configure.log"; exit 1; }
  nice -n 10 ninja -C "$out/qos" tests/qtest/qos-test >"$out/qos/ninja.log" 2>&1 ||
    { tail -30 "$out/qos/ninja.log"; exit 1; }
fi

mod="$out/modules/accel-qtest-x86_64.so"
if [ ! -f "$mod" ]; then
  log "building accel-qtest-x86_64.so (--enable-modules, pkgversion $pkgversion)"
  mkdir -p "$out/mod" "$out/modules"
  (cd "$out/mod" && "$tree/configure" "${common[@]}" --enable-modules >configure.log 2>&1) ||
    { tail -20 "$out/mod/configure.log"; exit 1; }
  nice -n 10 ninja -C "$out/mod" accel-qtest-x86_64.so >"$out/mod/ninja.log" 2>&1 ||
    { tail -30 "$out/mod/ninja.log"; exit 1; }
  cp "$out/mod/accel-qtest-x86_64.so" "$mod.tmp" && mv "$mod.tmp" "$mod"
fi
log "ready: $qos, $mod"
