#!/usr/bin/env bash
# Install the Debian packages vudm needs and fetch the QEMU / fio sources it builds from.
# Idempotent: on a ready machine it checks and returns in a second or two.
set -euo pipefail

PKGS=(qemu-system-x86 qemu-utils busybox-static cpio gzip xz-utils dpkg-dev
      libaio-dev zlib1g-dev gcc make pkg-config
      libc6-dev binutils kmod)

log() { printf '[setup-host] %s\n' "$*"; }

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# deb-src is needed for `apt-get source` of qemu (libvhost-user) and fio (static guest fio).
src_changed=0
if [ -f /etc/apt/sources.list.d/debian.sources ] && \
   ! grep -q '^Types: deb deb-src' /etc/apt/sources.list.d/debian.sources; then
  log "enabling deb-src in /etc/apt/sources.list.d/debian.sources"
  sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources
  src_changed=1
fi

stamp=/var/lib/apt/periodic/vudm-update-stamp
if [ ${#missing[@]} -gt 0 ] || [ $src_changed = 1 ] || [ ! -f "$stamp" ]; then
  log "apt-get update"
  apt-get update -qq
  mkdir -p "$(dirname "$stamp")" && touch "$stamp"
fi
# The guest kernel's headers, to build dm-dust.ko out of tree (images/dm.sh): the versioned
# package linux-image-amd64 points at (known once the package lists are), so headers and
# guest kernel always match.
abi=$(apt-cache depends linux-image-amd64 2>/dev/null |
  awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-amd64$/ { sub(/^linux-image-/, "", $2); print $2; exit }')
[ -n "$abi" ] || { log "error: cannot resolve the kernel behind linux-image-amd64"; exit 1; }
dpkg-query -W -f='${Status}' "linux-headers-$abi" 2>/dev/null | grep -q "install ok installed" ||
  missing+=("linux-headers-$abi")
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
log "host packages ready"
