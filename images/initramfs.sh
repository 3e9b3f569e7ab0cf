#!/usr/bin/env bash
# Assemble the guest initramfs (gzip'd newc cpio): busybox-static with its applet links,
# the kernel modules from kernel.sh, the static fio, and everything under images/rootfs/
# (init configuration, the agent, the mdev disk hook), and for the kernel oracle the dm
# module tree from dm.sh (/lib/modules/<version>, with modules.dep) and a static dmsetup.
# Usage: initramfs.sh IMAGES_DIR KERNEL_DIR FIO_BIN OUT DM_TREE DMSETUP_BIN
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

images_dir=$1 kernel_dir=$2 fio_bin=$3 out=$4 dm_tree=$5 dmsetup_bin=$6
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
cp -a "$dm_tree/lib/modules/." "$root/lib/modules/"
install -m 755 "$dmsetup_bin" "$root/sbin/dmsetup"

(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
  cpio -o -H newc --owner=0:0 --quiet) | gzip -n -6 >"$out"
log "initramfs: $(du -h "$out" | cut -f1)"
