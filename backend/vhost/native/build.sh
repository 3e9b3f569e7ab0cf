#!/usr/bin/env bash
# Build build/native/libvhost-user.so from Debian's QEMU source, and the ABI probe output
# build/native/abi.json that backend/vhost checks its ctypes layout against.
#
# Idempotent: the source package is downloaded once into build/src/, only the
# libvhost-user subproject and the headers it includes are extracted, and nothing is
# rebuilt when the outputs are newer than their inputs. Neither QEMU's source nor the
# built library is ever committed (build/ is git-ignored).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
src="$root/build/src"
out="$root/build/native"
tree="$src/libvhost-user-tree"
lib="$out/libvhost-user.so"
abi="$out/abi.json"

log() { printf '[vhost-native] %s\n' "$*"; }

mkdir -p "$src" "$out"

# One build at a time (make -j, parallel pytest sessions).
exec 9>"$out/.lock"
flock 9

orig="$(ls "$src"/qemu_*.orig.tar.xz 2>/dev/null | head -n1 || true)"
if [ -z "$orig" ]; then
  log "downloading the qemu source package into $src"
  (cd "$src" && apt-get source --download-only -qq qemu >/dev/null)
  orig="$(ls "$src"/qemu_*.orig.tar.xz | head -n1)"
fi

stamp="$tree/.extracted-from"
if [ ! -f "$stamp" ] || [ "$(cut -d" " -f1 "$stamp")" != "$(basename "$orig")" ]; then
  log "extracting libvhost-user and its headers from $(basename "$orig")"
  rm -rf "$tree" && mkdir -p "$tree"
  # subprojects/libvhost-user/include/* are symlinks into include/qemu and
  # include/standard-headers: extract those folders too so the links resolve.
  tar -xJf "$orig" -C "$tree" --strip-components=1 --no-same-owner --wildcards \
    '*/subprojects/libvhost-user/*' '*/include/qemu/*' '*/include/standard-headers/*'
  # Debian's stable-release patches (v7.2.N.diff) fix libvhost-user too (a NULL check
  # after malloc in 7.2.1): apply the libvhost-user parts of the series, in order, so
  # the library matches the QEMU that Debian ships.
  debian="$(ls "$src"/qemu_*.debian.tar.xz | head -n1)"
  tar -xJOf "$debian" debian/patches/series | sed -e 's/#.*//' -e '/^[[:space:]]*$/d' |
    while read -r p _; do tar -xJOf "$debian" "debian/patches/$p"; done |
    awk '/^diff --git /{keep = ($3 ~ /^a\/subprojects\/libvhost-user\//)} keep' \
      >"$tree/libvhost-user.patch"
  if [ -s "$tree/libvhost-user.patch" ]; then
    patch -d "$tree" -p1 -s <"$tree/libvhost-user.patch"
  fi
  echo "$(basename "$orig") $(basename "$debian")" >"$stamp"
fi

vu="$tree/subprojects/libvhost-user"
if [ ! -f "$lib" ] || [ "$stamp" -nt "$lib" ] || [ "$here/build.sh" -nt "$lib" ]; then
  log "building $lib"
  (cd "$vu" && gcc -O2 -fPIC -shared -D_GNU_SOURCE -I. -Iinclude \
     -o "$lib.tmp" libvhost-user.c && mv "$lib.tmp" "$lib")
fi

if [ ! -f "$abi" ] || [ "$lib" -nt "$abi" ] || [ "$here/abi_probe.c" -nt "$abi" ]; then
  log "probing the ABI into $abi"
  gcc -O0 -D_GNU_SOURCE -I"$vu" -I"$vu/include" -o "$out/abi_probe" "$here/abi_probe.c"
  "$out/abi_probe" >"$abi.tmp" && mv "$abi.tmp" "$abi"
fi
log "ready: $lib"
