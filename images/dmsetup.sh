#!/usr/bin/env bash
# Build a static dmsetup from Debian's lvm2 source package and print the binary's path.
# Static so that the busybox guest needs no shared libraries; udev support stays in the
# binary but the guest runs it with DM_DISABLE_UDEV=1 (it has no udev). Cached by source
# version and this recipe's hash.
# Usage: dmsetup.sh CACHE SRC VERSION
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cache=$1 src=$2 ver=$3
recipe=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)
out=$cache/dmsetup/$ver-$recipe
if [ -x "$out/dmsetup" ]; then
  echo "$out/dmsetup"
  exit 0
fi

tree=$src/lvm2-$ver
if [ ! -f "$tree/.vudm-unpacked" ]; then
  log "fetching lvm2 $ver source (apt-get source)"
  rm -rf "$tree" && mkdir -p "$tree"
  chown _apt "$tree" 2>/dev/null || true
  (cd "$tree" && apt-get source -q "lvm2=$ver" >"$tree/apt-source.log" 2>&1) ||
    die "apt-get source lvm2=$ver failed (deb-src enabled? see scripts/setup-host.sh): $(tail -n3 "$tree/apt-source.log")"
  unpacked=$(find "$tree" -mindepth 1 -maxdepth 1 -type d -name 'lvm2-*' | head -n1)
  [ -n "$unpacked" ] || die "apt-get source lvm2=$ver unpacked nothing"
  ln -sfn "$(basename "$unpacked")" "$tree/tree"
  touch "$tree/.vudm-unpacked"
fi

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
mkdir -p "$out"
strip -o "$out/dmsetup.tmp" "$tree/tree/libdm/dm-tools/dmsetup.static"
mv "$out/dmsetup.tmp" "$out/dmsetup"
log "dmsetup built: $(du -h "$out/dmsetup" | cut -f1)"
echo "$out/dmsetup"
