#!/usr/bin/env bash
# Container tooling for the compose testnet tests (tests/deploy/test_containers*.py):
# podman, docker-compose (Debian's, talking to podman's API socket), debootstrap; the
# containers.conf fix without which no container starts here; then the images
# (deploy/build-images.sh: cached by input hash, seconds when nothing changed).
# Idempotent. Needs root (rootful podman, debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
if ! command -v podman >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    $SUDO apt-get update -qq >&2
    # With recommends: netavark and aardvark-dns (service-name DNS between containers).
    $SUDO apt-get install -y -qq podman podman-compose debootstrap iptables runc >&2
fi
if ! command -v docker-compose >/dev/null 2>&1; then
    # Without recommends: docker-compose recommends the Docker engine, not used here.
    $SUDO apt-get install -y -qq --no-install-recommends docker-compose >&2
fi
command -v runc >/dev/null 2>&1 || $SUDO apt-get install -y -qq runc >&2
# podman's default ulimits ask for more open files than the hard limit of these machines;
# the runtime then refuses every container: an empty list keeps the process's own limits.
# crun 1.8 (Debian 12's default runtime) refuses hybrid cgroups (v1 controllers with a v2
# mount, as on our CI machines): "cgroups in hybrid mode not supported"; runc runs there.
conf=/etc/containers/containers.conf
$SUDO mkdir -p /etc/containers
# set_key SECTION KEY VALUE: add KEY = VALUE under [SECTION] unless KEY is set already.
set_key() {
    if grep -qs "^$2 *=" "$conf"; then return; fi
    if grep -qs "^\[$1\]" "$conf"; then
        $SUDO sed -i "/^\[$1\]/a $2 = $3" "$conf"
    else
        printf '\n[%s]\n%s = %s\n' "$1" "$2" "$3" | $SUDO tee -a "$conf" >/dev/null
    fi
}
set_key containers default_ulimits '[]'
set_key engine runtime '"runc"'
echo "containers: $(podman --version), docker-compose $(docker-compose version --short)"
$SUDO env PIP="${PIP:-python3 -m pip}" bash deploy/build-images.sh
