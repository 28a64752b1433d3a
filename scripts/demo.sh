#!/usr/bin/env bash
# Set up .venv and run the main job: a local testnet of real node processes on loopback
# that find each other by gossip through the first node's address, train, and print results.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
exec .venv/bin/fednode testnet up "$@"
