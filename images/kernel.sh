#!/usr/bin/env bash
# Fetch a Debian kernel package (apt-get download, never installed) and extract from it
# the vmlinuz and the guest's modules (modules.list order) into DEST:
#   DEST/vmlinuz  DEST/modules/<name>.ko  DEST/modules/order
# Compressed modules are decompressed here, because busybox insmod cannot load them.
# Usage: kernel.sh CACHE PACKAGE VERSION MODULES_LIST DEST
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cache=$1 pkg=$2 ver=$3 modules_list=$4 dest=$5
debs=$cache/debs
mkdir -p "$debs" "$dest/modules"

deb=$debs/${pkg}_${ver//:/%3a}_amd64.deb
if [ ! -f "$deb" ]; then
  log "downloading $pkg $ver"
  tmp=$(mktemp -d "$debs/.dl.XXXXXX")
  # apt downloads as user _apt when it can write the directory (else it warns).
  chown _apt "$tmp" 2>/dev/null || true
  (cd "$tmp" && apt-get download -qq "$pkg=$ver" >&2)
  mv "$tmp"/*.deb "$deb"
  rm -rf "$tmp"
fi

log "extracting $pkg"
tree=$(mktemp -d "$dest/.tree.XXXXXX")
trap 'rm -rf "$tree"' EXIT
dpkg-deb --fsys-tarfile "$deb" |
  tar -x -C "$tree" --wildcards './boot/vmlinuz-*' './lib/modules/*/kernel/drivers/*' \
    './lib/modules/*/modules.builtin'
cp "$tree"/boot/vmlinuz-* "$dest/vmlinuz"
moddir=$(echo "$tree"/lib/modules/*)

: >"$dest/modules/order"
while read -r name; do
  case $name in ''|'#'*) continue ;; esac
  if grep -q "/$name\.ko\$" "$moddir/modules.builtin"; then
    log "module $name is built in"
    continue
  fi
  src=$(find "$moddir/kernel" -name "$name.ko*" | head -n1)
  [ -n "$src" ] || die "module $name not found in $pkg"
  case $src in
    *.ko) cp "$src" "$dest/modules/$name.ko" ;;
    *.ko.xz) xz -dc "$src" >"$dest/modules/$name.ko" ;;
    *.ko.zst) zstd -qdc "$src" >"$dest/modules/$name.ko" ;;
    *.ko.gz) gzip -dc "$src" >"$dest/modules/$name.ko" ;;
    *) die "unknown module format: $src" ;;
  esac
  echo "$name" >>"$dest/modules/order"
done <"$modules_list"
