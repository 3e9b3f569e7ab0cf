#!/usr/bin/env bash
# Build the vudm guest (Debian kernel + busybox initramfs with static fio and the agent,
# plus Linux's own dm modules, an out-of-tree dm-dust.ko and a static dmsetup for the
# kernel oracle).
#
# Output: build/images/<hash>/{vmlinuz,initrd.img,manifest.txt}, where <hash> covers every
# recipe file under images/ and the Debian package versions it is made from, and
# build/images/current -> <hash>. A ready image is reused, so a second run only resolves
# the package versions (about a second). Nothing is fetched but Debian packages (apt).
set -euo pipefail

IMAGES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$IMAGES_DIR")
BUILD=${VUDM_BUILD_DIR:-$ROOT/build}
OUT=$BUILD/images
CACHE=$OUT/cache
SRC=$BUILD/src

# shellcheck source=images/lib.sh
. "$IMAGES_DIR/lib.sh"

mkdir -p "$OUT" "$CACHE"
# Parallel builders (make image, pytest-xdist workers) take turns; the loser reuses.
exec 9>"$OUT/.lock"
flock 9

kernel_pkg=$(resolve_kernel_package)
kernel_ver=$(candidate_version "$kernel_pkg")
busybox_ver=$(installed_version busybox-static)
fio_ver=$(source_version fio)
lvm2_ver=$(source_version lvm2)
kmod_ver=$(installed_version kmod)
[ -n "$kernel_ver" ] && [ -n "$busybox_ver" ] && [ -n "$fio_ver" ] && [ -n "$lvm2_ver" ] &&
  [ -n "$kmod_ver" ] ||
  die "cannot resolve package versions (kernel=$kernel_ver busybox=$busybox_ver fio=$fio_ver lvm2=$lvm2_ver kmod=$kmod_ver); run scripts/setup-host.sh"

inputs=$( {
  printf 'kernel %s %s\nbusybox %s\nfio %s\nlvm2 %s\nkmod %s\n' "$kernel_pkg" "$kernel_ver" \
    "$busybox_ver" "$fio_ver" "$lvm2_ver" "$kmod_ver"
  cd "$IMAGES_DIR" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
} )
hash=$(printf '%s\n' "$inputs" | sha256sum | cut -c1-16)
dest=$OUT/$hash

if [ -f "$dest/ready" ]; then
  ln -sfn "$hash" "$OUT/current"
  log "image $hash is up to date: $dest"
  exit 0
fi

started=$SECONDS
log "building image $hash (kernel $kernel_pkg $kernel_ver, busybox $busybox_ver, fio $fio_ver)"
work=$(mktemp -d "$OUT/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

bash "$IMAGES_DIR/kernel.sh" "$CACHE" "$kernel_pkg" "$kernel_ver" "$IMAGES_DIR/modules.list" \
  "$work/kernel"
fio_bin=$(bash "$IMAGES_DIR/fio.sh" "$CACHE" "$SRC" "$fio_ver")
bash "$IMAGES_DIR/dm.sh" "$CACHE" "$CACHE/debs/${kernel_pkg}_${kernel_ver//:/%3a}_amd64.deb" \
  "$kernel_ver" "$IMAGES_DIR/dm-modules.list" "$work/dm" >/dev/null
dmsetup_bin=$(bash "$IMAGES_DIR/dmsetup.sh" "$CACHE" "$SRC" "$lvm2_ver")
bash "$IMAGES_DIR/initramfs.sh" "$IMAGES_DIR" "$work/kernel" "$fio_bin" "$work/initrd.img" \
  "$work/dm" "$dmsetup_bin"

mv "$work/kernel/vmlinuz" "$work/vmlinuz"
# The guest's fio, also for host-side tests of job rendering and result parsing.
cp "$fio_bin" "$work/fio"
rm -rf "$work/kernel" "$work/dm"
printf '%s\n' "$inputs" >"$work/manifest.txt"
chmod 755 "$work"
touch "$work/ready"
rm -rf "$dest"
mv "$work" "$dest"
trap - EXIT
ln -sfn "$hash" "$OUT/current"
# Keep the three newest images (a running guest may still use an older one).
find "$OUT" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9a-f]\{16\}' -printf '%T@ %p\n' |
  sort -rn | tail -n +4 | cut -d' ' -f2- | xargs -r rm -rf
log "image ready in $((SECONDS - started)) s: $dest ($(du -sh "$dest" | cut -f1))"
