#!/usr/bin/env bash
# The main job: install, then run sample code in the embedded sandbox (no daemon needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python examples/quickstart.py
