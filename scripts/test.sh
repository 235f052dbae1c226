#!/usr/bin/env bash
# Everything the tests need, installed and started, then the whole suite: lint, types, tests.
# As root it installs bubblewrap, Docker, Podman and gVisor (runsc), starts dockerd and the
# podman service, and builds the default python image for both engines (offline, from Debian
# packages, when no registry is reachable).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="[dev,docker,podman]" bash scripts/bootstrap.sh
if [ "$(id -u)" -eq 0 ]; then
  bash scripts/engines.sh
  for engine in docker podman; do
    .venv/bin/llm-sandbox images build python --engine "$engine" --if-missing
  done
else
  echo "==> not root: container engines are used only if already running"
fi
echo "==> ruff"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
exec .venv/bin/python -m pytest "$@"
