#!/usr/bin/env bash
# Linux's own device-mapper for the guest: the dm modules of the Debian kernel package
# (dm-modules.list) plus dm-dust.ko, which Debian does not build, compiled out of tree from
# the matching linux-source package against the installed linux-headers of the same
# kernel. Lays out DEST/lib/modules/<kver>/{kernel/...,extra/dm-dust.ko} and runs depmod
# on it, so the guest's modprobe resolves dependencies (dm-multipath needs scsi_mod).
# dm-dust.ko is cached by kernel version and recipe_key (this recipe and lib.sh).
# Usage: dm.sh CACHE KERNEL_DEB KERNEL_VERSION MODULES_LIST DEST
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cache=$1 deb=$2 ver=$3 modules_list=$4 dest=$5
kver=$(dpkg-deb --fsys-tarfile "$deb" | tar -t --wildcards './lib/modules/*/modules.builtin' |
  sed -n 's|^\./lib/modules/\([^/]*\)/modules.builtin$|\1|p' | head -n1)
[ -n "$kver" ] || die "no /lib/modules/<version> in $deb"
moddir=$dest/lib/modules/$kver
mkdir -p "$moddir/kernel" "$moddir/extra"

tree=$(mktemp -d "$dest/.tree.XXXXXX")
trap 'rm -rf "$tree"' EXIT
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tree" --wildcards \
  './lib/modules/*/kernel/drivers/md/*' './lib/modules/*/kernel/drivers/scsi/*' \
  './lib/modules/*/modules.builtin' './lib/modules/*/modules.builtin.modinfo' \
  './lib/modules/*/modules.order'
src=$tree/lib/modules/$kver
cp "$src"/modules.builtin* "$src/modules.order" "$moddir/"
while read -r path; do
  case $path in ''|'#'*) continue ;; esac
  found=$(find "$src/kernel/$(dirname "$path")" -maxdepth 1 -name "$(basename "$path").ko*" |
    head -n1)
  [ -n "$found" ] || die "module $path not found in $deb"
  mkdir -p "$moddir/kernel/$(dirname "$path")"
  out=$moddir/kernel/$path.ko
  # busybox modprobe loads plain .ko only
  case $found in
    *.ko) cp "$found" "$out" ;;
    *.ko.xz) xz -dc "$found" >"$out" ;;
    *.ko.zst) zstd -qdc "$found" >"$out" ;;
    *.ko.gz) gzip -dc "$found" >"$out" ;;
    *) die "unknown module format: $found" ;;
  esac
done <"$modules_list"

# -- dm-dust, out of tree -------------------------------------------------------------
recipe=$(recipe_key "${BASH_SOURCE[0]}")
dust=$cache/dm-dust/$kver-$ver-$recipe/dm-dust.ko
if [ ! -f "$dust" ]; then
  headers=/usr/src/linux-headers-$kver
  [ -f "$headers/Makefile" ] ||
    die "no kernel headers at $headers (package linux-headers-$kver); run scripts/setup-host.sh"
  hver=$(installed_version "linux-headers-$kver")
  [ "$hver" = "$ver" ] ||
    die "linux-headers-$kver is $hver, the guest kernel is $ver; run scripts/setup-host.sh"
  series=${kver%%.0-*}                        # 6.1.0-56-amd64 -> 6.1
  srcpkg=linux-source-$series
  srcdeb=$cache/debs/${srcpkg}_${ver//:/%3a}_all.deb
  mkdir -p "$cache/debs"
  if [ ! -f "$srcdeb" ]; then
    log "downloading $srcpkg $ver (for drivers/md/dm-dust.c)"
    dl=$(mktemp -d "$cache/debs/.dl.XXXXXX")
    chown _apt "$dl" 2>/dev/null || true
    (cd "$dl" && apt-get download -qq "$srcpkg=$ver" >&2)
    mv "$dl"/*.deb "$srcdeb"
    rm -rf "$dl"
  fi
  build=$tree/dust
  mkdir -p "$build"
  log "extracting dm-dust.c from $srcpkg (the tarball is decompressed: about 20 s)"
  dpkg-deb --fsys-tarfile "$srcdeb" | tar -xO "./usr/src/$srcpkg.tar.xz" | xz -dc |
    tar -xO "$srcpkg/drivers/md/dm-dust.c" >"$build/dm-dust.c"
  [ -s "$build/dm-dust.c" ] || die "no drivers/md/dm-dust.c in $srcpkg $ver"
  echo 'obj-m := dm-dust.o' >"$build/Kbuild"
  log "building dm-dust.ko against $headers"
  make -s -C "$headers" M="$build" modules >"$build/make.log" 2>&1 ||
    die "dm-dust build failed: $(tail -n5 "$build/make.log")"
  mkdir -p "$(dirname "$dust")"
  cp "$build/dm-dust.ko" "$dust.tmp"
  mv "$dust.tmp" "$dust"
fi
cp "$dust" "$moddir/extra/dm-dust.ko"
# the out-of-tree module is the last in the guest's load order
{ grep -v '^#' "$modules_list" | sed '/^$/d'; echo extra/dm-dust; } >"$moddir/vudm-dm.order"

depmod -b "$dest" "$kver" || die "depmod failed"
[ -s "$moddir/modules.dep" ] || die "depmod wrote no modules.dep"
echo "$kver"
