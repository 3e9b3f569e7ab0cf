#!/usr/bin/env bash
# Assemble the guest initramfs (gzip'd newc cpio): busybox-static with its applet links,
# the kernel modules from kernel.sh, the static fio, and everything under images/rootfs/
# (init configuration, the agent, the mdev disk hook).
# Usage: initramfs.sh IMAGES_DIR KERNEL_DIR FIO_BIN OUT
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

images_dir=$1 kernel_dir=$2 fio_bin=$3 out=$4
root=$(mktemp -d "$(dirname "$out")/.root.XXXXXX")
trap 'rm -rf "$root"' EXIT

mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,root,lib/modules/vudm}
cp -a "$images_dir/rootfs/." "$root/"

busybox=/bin/busybox
[ -x "$busybox" ] && [ -n "$(installed_version busybox-static)" ] ||
  die "busybox-static not installed; run scripts/setup-host.sh"
cp "$busybox" "$root/bin/busybox"
"$busybox" --list-full | while read -r applet; do
  [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
# PID 1 is busybox init (reads /etc/inittab): it reaps orphans and respawns the agent.
ln -s bin/busybox "$root/init"

cp "$kernel_dir"/modules/*.ko "$kernel_dir/modules/order" "$root/lib/modules/vudm/"
install -m 755 "$fio_bin" "$root/usr/bin/fio"

(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
  cpio -o -H newc --owner=0:0 --quiet) | gzip -n -6 >"$out"
log "initramfs: $(du -h "$out" | cut -f1)"
