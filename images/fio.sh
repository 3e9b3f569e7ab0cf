#!/usr/bin/env bash
# Build a static fio from Debian's source package and print the path of the binary.
# The binary is cached by source version and this recipe's hash, so a change elsewhere in
# the image does not rebuild it. libaio (libaio.a) and io_uring engines are in; optional
# engines with extra libraries are off.
# Usage: fio.sh CACHE SRC VERSION
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cache=$1 src=$2 ver=$3
recipe=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)
out=$cache/fio/$ver-$recipe
if [ -x "$out/fio" ]; then
  echo "$out/fio"
  exit 0
fi

tree=$src/fio-$ver
if [ ! -f "$tree/.vudm-unpacked" ]; then
  log "fetching fio $ver source (apt-get source)"
  rm -rf "$tree" && mkdir -p "$tree"
  chown _apt "$tree" 2>/dev/null || true
  (cd "$tree" && apt-get source -q "fio=$ver" >"$tree/apt-source.log" 2>&1) ||
    die "apt-get source fio=$ver failed (deb-src enabled? see scripts/setup-host.sh): $(tail -n3 "$tree/apt-source.log")"
  # apt-get source unpacks into fio-<upstream version>/ below the download dir.
  unpacked=$(find "$tree" -mindepth 1 -maxdepth 1 -type d -name 'fio-*' | head -n1)
  [ -n "$unpacked" ] || die "apt-get source fio=$ver unpacked nothing"
  ln -sfn "$(basename "$unpacked")" "$tree/tree"
  touch "$tree/.vudm-unpacked"
fi

log "building static fio $ver (about 20-60 s)"
jobs=$(nproc); [ "$jobs" -gt 2 ] && jobs=2
(
  cd "$tree/tree"
  make -s clean >/dev/null 2>&1 || true
  ./configure --build-static --disable-native \
    --disable-numa --disable-rdma --disable-rados --disable-rbd --disable-http \
    --disable-gfapi --disable-libnfs --disable-pmem --disable-xnvme --disable-libzbc \
    --disable-tcmalloc --disable-dfs --disable-lex >"$tree/configure.log" 2>&1 ||
    die "fio configure failed; see $tree/configure.log"
  grep -q '^Linux AIO support *yes' "$tree/configure.log" ||
    die "fio configure found no libaio (libaio-dev missing?); see $tree/configure.log"
  make -j"$jobs" fio >"$tree/make.log" 2>&1 || die "fio build failed; see $tree/make.log"
)
mkdir -p "$out"
strip -o "$out/fio.tmp" "$tree/tree/fio"
mv "$out/fio.tmp" "$out/fio"
log "fio built: $(du -h "$out/fio" | cut -f1)"
echo "$out/fio"
