# Shared helpers for the image recipe (sourced, not run).

log() { printf '[image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

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
