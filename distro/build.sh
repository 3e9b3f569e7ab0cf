#!/usr/bin/env bash
# A small Debian guest whose root file system a vudm disk serves: debootstrap minbase from
# the Debian registry (the host's apt sources), systemd, Debian's kernel, fio, and the vudm
# guest agent as a systemd service. Booted by direct kernel boot (the image's own vmlinuz
# and initrd, root=/dev/vda).
#
# Output: build/distro/<hash>/{rootfs.img,vmlinuz,initrd.img,manifest.txt,ready}, <hash>
# over this recipe, the agent and the suite's package versions; build/distro/current
# points at it. A ready image is reused (the check takes a second).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
out=${VUDM_BUILD_DIR:-$root/build}/distro
suite=bookworm
mirror=http://deb.debian.org/debian
packages=systemd,systemd-sysv,udev,linux-image-amd64,initramfs-tools,fio,util-linux,procps,kmod
size_mb=1024

log() { printf '[distro] %s\n' "$*" >&2; }
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9

for p in debootstrap e2fsprogs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 "$p" >/dev/null
done

versions=$(apt-cache policy linux-image-amd64 systemd fio 2>/dev/null | awk '/^[a-z]/{p=$1} $1=="Candidate:"{print p, $2}')
hash=$( { echo "$suite $mirror $packages $size_mb"; echo "$versions";
          sha256sum "$here/build.sh" "$here/vudm-agent.service" "$root/images/rootfs/sbin/vudm-agent"; } |
        sha256sum | cut -c1-16)
dest=$out/$hash
if [ -f "$dest/ready" ]; then
  ln -sfn "$hash" "$out/current"
  log "image $hash is up to date: $dest"
  exit 0
fi

started=$SECONDS
work=$(mktemp -d "$out/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree=$work/root
log "debootstrap --variant=minbase $suite ($packages)"
nice -n 10 debootstrap --variant=minbase --include="$packages" "$suite" "$tree" "$mirror" \
  >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log"; exit 1; }

log "configuring"
echo vudm-guest >"$tree/etc/hostname"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$tree/etc/fstab"
chroot "$tree" passwd -d root >/dev/null
install -m 0755 "$root/images/rootfs/sbin/vudm-agent" "$tree/sbin/vudm-agent"
install -m 0644 "$here/vudm-agent.service" "$tree/etc/systemd/system/vudm-agent.service"
ln -sf /etc/systemd/system/vudm-agent.service \
  "$tree/etc/systemd/system/multi-user.target.wants/vudm-agent.service"
# No network, no timers: a boot under TCG is slow enough; nothing may fail at boot
# (is-system-running must say "running").
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
            fstrim.timer dpkg-db-backup.timer systemd-timesyncd.service \
            getty@tty1.service; do
  ln -sf /dev/null "$tree/etc/systemd/system/$unit"
done
# The guest's virtio drivers must be in the initrd (the root disk is vhost-user-blk).
printf 'virtio_pci\nvirtio_blk\nvirtio_console\next4\n' >>"$tree/etc/initramfs-tools/modules"
chroot "$tree" update-initramfs -u -k all >"$work/initramfs.log" 2>&1
cp "$tree"/boot/vmlinuz-* "$work/vmlinuz"
cp "$tree"/boot/initrd.img-* "$work/initrd.img"
rm -rf "$tree"/var/cache/apt/archives/*.deb "$tree"/var/lib/apt/lists/*

log "ext4 image (${size_mb} MiB)"
mkfs.ext4 -q -F -L root -d "$tree" "$work/rootfs.img" "${size_mb}M"
{ echo "suite $suite"; echo "$versions"; echo "built in $((SECONDS - started)) s"; } \
  >"$work/manifest.txt"
mkdir -p "$dest"
mv "$work/rootfs.img" "$work/vmlinuz" "$work/initrd.img" "$work/manifest.txt" "$dest/"
touch "$dest/ready"
ln -sfn "$hash" "$out/current"
log "image ready in $((SECONDS - started)) s: $dest"
