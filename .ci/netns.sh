#!/usr/bin/env bash
# Install what the network-namespace fault testnet needs (tests/netns): iproute2 (`ip`)
# and nftables (`nft`). Idempotent: does nothing when both are on PATH. It removes no
# namespaces: testnets of other jobs may be running (`fednode testnet cleanup` does that).
# The tests need root (creating namespaces requires CAP_NET_ADMIN).
set -euo pipefail
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
if [ "${#need[@]}" -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >&2
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
for tool in ip nft; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "$tool could not be installed" >&2
        exit 1
    fi
done
echo "netns testnet tools: $(command -v ip) $(command -v nft)"
