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
exec .venv/bin/python -m pytest -q "$@"
