# Shared helpers for the image recipe (sourced, not run).

log() { printf '[image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The cache key of what RECIPE builds (a 12-digit hash): RECIPE's text and this file's,
# which every recipe sources, so a change to a shared helper (fetch_source,
# install_stripped) rebuilds what was built with it, as a change to the recipe does.
recipe_key() {
  cat "$1" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-12
}

# The versioned kernel package that linux-image-amd64 depends on (linux-image-6.1.0-N-amd64).
resolve_kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-amd64$/ { print $2; exit }'
}

candidate_version() {
  apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2; exit }'
}

installed_version() {
  dpkg-query -W -f='${Version}' "$1" 2>/dev/null
}

# The newest source version apt knows for a source package (what `apt-get source` fetches).
source_version() {
  apt-cache showsrc --only-source "$1" 2>/dev/null |
    awk '$1 == "Version:" { print $2 }' | sort -V | tail -n1
}

# Debian source package PKG at VER unpacked once into TREE (apt-get source), with
# TREE/tree linking to the unpacked source (apt-get source unpacks into PKG-<upstream
# version>/ below the download dir). A marker says it finished: a half unpack is redone.
fetch_source() {
  local pkg=$1 ver=$2 tree=$3 unpacked
  [ -f "$tree/.vudm-unpacked" ] && return 0
  log "fetching $pkg $ver source (apt-get source)"
  rm -rf "$tree" && mkdir -p "$tree"
  chown _apt "$tree" 2>/dev/null || true
  (cd "$tree" && apt-get source -q "$pkg=$ver" >"$tree/apt-source.log" 2>&1) ||
    die "apt-get source $pkg=$ver failed (deb-src enabled? see scripts/setup-host.sh): $(tail -n3 "$tree/apt-source.log")"
  unpacked=$(find "$tree" -mindepth 1 -maxdepth 1 -type d -name "$pkg-*" | head -n1)
  [ -n "$unpacked" ] || die "apt-get source $pkg=$ver unpacked nothing"
  ln -sfn "$(basename "$unpacked")" "$tree/tree"
  touch "$tree/.vudm-unpacked"
}

# A built binary stripped into the cache as OUT/NAME (renamed into place, so a reader
# never sees half a file), its path printed.
install_stripped() {
  local built=$1 out=$2 name=$3
  mkdir -p "$out"
  strip -o "$out/$name.tmp" "$built"
  mv "$out/$name.tmp" "$out/$name"
  log "$name built: $(du -h "$out/$name" | cut -f1)"
  echo "$out/$name"
}
