#!/usr/bin/env bash
# Install Debian's chromium for the dashboard test (tests/dashboard), once.
# Idempotent: does nothing when a chromium binary is already on PATH. Prints its path.
set -euo pipefail
find_chromium() {
    command -v chromium || command -v chromium-browser || command -v google-chrome || true
}
bin="$(find_chromium)"
if [ -z "$bin" ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >&2
    $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
    bin="$(find_chromium)"
fi
if [ -z "$bin" ]; then
    echo "chromium could not be installed" >&2
    exit 1
fi
echo "$bin"
