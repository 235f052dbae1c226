#!/usr/bin/env bash
# Everything the tests need, installed and started, then the whole suite: lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="[dev]" bash scripts/bootstrap.sh
echo "==> ruff"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
exec .venv/bin/python -m pytest "$@"
