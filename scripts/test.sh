#!/usr/bin/env bash
# Set up .venv and run the whole test suite (lint, types, unit, integration, multi-process).
# PostgreSQL storage tests run when FEDNODE_TEST_PG_URL is set (.ci/run starts a server).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy node aggregation privacy
echo "==> import contracts (DESIGN.md layering)"
.venv/bin/lint-imports --no-cache
echo "==> pytest"
# Two workers (the CI machine has 2 cores; most of the suite waits on daemon processes);
# loadfile keeps each file's network fixture in one worker. FEDNODE_TEST_WORKERS=0: serial.
# --durations: the slowest tests, printed at the end, so the 15-minute budget can be watched.
WORKERS="${FEDNODE_TEST_WORKERS:-2}"
if [ "$WORKERS" = "0" ]; then
    exec .venv/bin/python -m pytest -q "$@"
fi
exec .venv/bin/python -m pytest -q -n "$WORKERS" --dist loadfile --durations=30 "$@"
