#!/usr/bin/env bash
# Build a static dmsetup from Debian's lvm2 source package and print the binary's path.
# Static so that the busybox guest needs no shared libraries; udev support stays in the
# binary but the guest runs it with DM_DISABLE_UDEV=1 (it has no udev). Cached by source
# version and recipe_key (this recipe and lib.sh).
# Usage: dmsetup.sh CACHE SRC VERSION
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cache=$1 src=$2 ver=$3
recipe=$(recipe_key "${BASH_SOURCE[0]}")
out=$cache/dmsetup/$ver-$recipe
if [ -x "$out/dmsetup" ]; then
  echo "$out/dmsetup"
  exit 0
fi

tree=$src/lvm2-$ver
fetch_source lvm2 "$ver" "$tree"

log "building static dmsetup from lvm2 $ver (about 1-2 min: configure is most of it)"
jobs=$(nproc); [ "$jobs" -gt 2 ] && jobs=2
(
  cd "$tree/tree"
  if [ ! -f "$tree/.vudm-configured-$recipe" ]; then
    ./configure --enable-static_link --disable-selinux --disable-readline \
      --disable-blkid_wiping --disable-systemd-journal \
      --disable-udev-systemd-background-jobs --disable-app-machineid \
      --disable-notify-dbus >"$tree/configure.log" 2>&1 ||
      die "lvm2 configure failed; see $tree/configure.log"
    touch "$tree/.vudm-configured-$recipe"
  fi
  make -j"$jobs" -C libdm >"$tree/make.log" 2>&1 &&
    make -j"$jobs" -C libdm/dm-tools dmsetup.static >>"$tree/make.log" 2>&1 ||
    die "dmsetup build failed; see $tree/make.log"
)
install_stripped "$tree/tree/libdm/dm-tools/dmsetup.static" "$out" dmsetup
