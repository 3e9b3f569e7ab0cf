#!/usr/bin/env bash
# Build a static fio from Debian's source package and print the path of the binary.
# The binary is cached by source version and recipe_key (this recipe and lib.sh), so a
# change elsewhere in the image does not rebuild it. libaio (libaio.a) and io_uring
# engines are in; optional engines with extra libraries are off.
# Usage: fio.sh CACHE SRC VERSION
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cache=$1 src=$2 ver=$3
recipe=$(recipe_key "${BASH_SOURCE[0]}")
out=$cache/fio/$ver-$recipe
if [ -x "$out/fio" ]; then
  echo "$out/fio"
  exit 0
fi

tree=$src/fio-$ver
fetch_source fio "$ver" "$tree"

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
install_stripped "$tree/tree/fio" "$out" fio
