#!/usr/bin/env bash
# Build the container images without an image registry (air-gapped, as CI does):
#   1. a Debian 12 base image from debootstrap (python3, python3-venv);
#   2. a wheelhouse (deploy/wheelhouse/) made on this host with pip: the project's pinned
#      dependencies (constraints.txt), the CPU torch wheel from this host's pip
#      configuration, setuptools for building the project;
#   3. the fednode image from deploy/Dockerfile -- the same file Docker users build --
#      with build arguments only (base image, no index, the wheelhouse);
#   4. a Prometheus image from Debian's `prometheus` package on the same base.
# Each image is tagged with the hash of its inputs; when that tag exists the build is
# skipped (a warm run takes seconds). `:latest` tags point at the images just checked.
#
# Usage: deploy/build-images.sh            (as root, or a user podman works for)
# Environment:
#   ENGINE            podman (default) or docker
#   DEBIAN_MIRROR     debootstrap mirror (default http://deb.debian.org/debian)
#   FEDNODE_IMAGE     fednode image name (default fednode:latest)
#   PROMETHEUS_IMAGE  Prometheus image name (default fednode-prometheus:latest)
#   BASE_IMAGE        base image name (default fednode-base:bookworm)
#   PIP               pip used for the wheelhouse (default: python3 -m pip)
set -euo pipefail

# The whole script is one function, read before it runs: editing the file meanwhile is safe.
main() {
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
cd "$repo"

ENGINE="${ENGINE:-podman}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
FEDNODE_IMAGE="${FEDNODE_IMAGE:-fednode:latest}"
PROMETHEUS_IMAGE="${PROMETHEUS_IMAGE:-fednode-prometheus:latest}"
BASE_IMAGE="${BASE_IMAGE:-fednode-base:bookworm}"
read -r -a PIP <<<"${PIP:-python3 -m pip}"
wheelhouse="$here/wheelhouse"
# Bump when this script changes what it produces for the same inputs.
recipe=2

log() { printf '==> %s\n' "$*" >&2; }
hash_of() { sha256sum | cut -c1-16; }
image_exists() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }
image_id() { "$ENGINE" image inspect --format '{{.Id}}' "$1"; }
repo_of() { printf '%s' "${1%:*}"; }
t0=$(date +%s)

# --- 1. base image -----------------------------------------------------------------------
base_repo="$(repo_of "$BASE_IMAGE")"
base_key="$(printf 'recipe=%s bookworm minbase python3,python3-venv %s' "$recipe" "$DEBIAN_MIRROR" | hash_of)"
if image_exists "$base_repo:$base_key"; then
    log "base image $base_repo:$base_key exists (cached)"
else
    command -v debootstrap >/dev/null || { echo "debootstrap missing: apt-get install debootstrap" >&2; exit 1; }
    root="$(mktemp -d /var/tmp/fednode-rootfs.XXXXXX)"
    trap 'rm -rf "$root"' EXIT
    log "debootstrap Debian 12 into $root"
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" "$DEBIAN_MIRROR" >/dev/null
    # An image needs no package caches; apt in derived images fetches its own lists.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | "$ENGINE" import - "$base_repo:$base_key" >/dev/null
    rm -rf "$root"
    trap - EXIT
fi
"$ENGINE" tag "$base_repo:$base_key" "$BASE_IMAGE"

# --- 2. wheelhouse -----------------------------------------------------------------------
wh_key="$(cat pyproject.toml constraints.txt | { cat; printf 'recipe=%s' "$recipe"; } | hash_of)"
if [ -f "$wheelhouse/.stamp" ] && [ "$(cat "$wheelhouse/.stamp")" = "$wh_key" ]; then
    log "wheelhouse $wheelhouse matches pyproject.toml and constraints.txt (cached)"
else
    log "pip wheel: the project's pinned dependencies into $wheelhouse"
    find "$wheelhouse" -maxdepth 1 -name '*.whl' -delete 2>/dev/null || true
    mkdir -p "$wheelhouse"
    # pip wheel downloads wheels and builds the few sdists; setuptools is the project's
    # build backend, needed by `pip install .` in the image without an index.
    "${PIP[@]}" wheel --quiet -c constraints.txt -w "$wheelhouse" . 'setuptools>=68' wheel
    # The project's own wheel is not used (the Dockerfile installs from the sources).
    rm -f "$wheelhouse"/fednode-*.whl
    printf '%s' "$wh_key" >"$wheelhouse/.stamp"
fi

# --- 3. fednode image --------------------------------------------------------------------
sources_hash() {
    # Everything deploy/Dockerfile copies (see Dockerfile.dockerignore), by content.
    {
        find node aggregation privacy fednode_proto -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 |
            sort -z | xargs -0 sha256sum
        sha256sum pyproject.toml README.md constraints.txt deploy/Dockerfile \
            deploy/Dockerfile.dockerignore deploy/entrypoint.sh
    } | hash_of
}
fed_repo="$(repo_of "$FEDNODE_IMAGE")"
fed_key="$(printf '%s docker-format %s %s %s' "$recipe" "$(image_id "$BASE_IMAGE")" "$wh_key" "$(sources_hash)" | hash_of)"
if image_exists "$fed_repo:$fed_key"; then
    log "fednode image $fed_repo:$fed_key exists (cached)"
else
    log "build $fed_repo:$fed_key from deploy/Dockerfile (base $BASE_IMAGE, wheelhouse, no index)"
    podman_args=()
    # podman reads <Dockerfile>.dockerignore only when told to (BuildKit finds it itself),
    # and keeps HEALTHCHECK only in Docker's image format (OCI images have no such field).
    if [ "$ENGINE" = podman ]; then
        podman_args=(--ignorefile deploy/Dockerfile.dockerignore --format docker)
    fi
    "$ENGINE" build "${podman_args[@]}" -f deploy/Dockerfile -t "$fed_repo:$fed_key" \
        --build-arg PYTHON_IMAGE="$BASE_IMAGE" \
        --build-arg PIP_NO_INDEX=1 \
        --build-arg PIP_FIND_LINKS=/wheels \
        .
fi
"$ENGINE" tag "$fed_repo:$fed_key" "$FEDNODE_IMAGE"

# --- 4. Prometheus image -----------------------------------------------------------------
prom_repo="$(repo_of "$PROMETHEUS_IMAGE")"
prom_key="$(printf '%s %s %s' "$recipe" "$(image_id "$BASE_IMAGE")" "$(sha256sum deploy/prometheus.Dockerfile)" | hash_of)"
if image_exists "$prom_repo:$prom_key"; then
    log "Prometheus image $prom_repo:$prom_key exists (cached)"
else
    log "build $prom_repo:$prom_key from Debian's prometheus package"
    ctx="$(mktemp -d)"  # the Dockerfile copies nothing: an empty build context
    "$ENGINE" build -f deploy/prometheus.Dockerfile -t "$prom_repo:$prom_key" \
        --build-arg BASE_IMAGE="$BASE_IMAGE" "$ctx"
    rmdir "$ctx"
fi
"$ENGINE" tag "$prom_repo:$prom_key" "$PROMETHEUS_IMAGE"

log "images ready in $(($(date +%s) - t0)) s: $FEDNODE_IMAGE ($fed_key), $PROMETHEUS_IMAGE ($prom_key), $BASE_IMAGE ($base_key)"
}

main "$@"
