#!/usr/bin/env bash
# Everything the tests need, installed and started, then the whole suite: lint, types, tests.
# As root it installs bubblewrap, Docker, Podman and gVisor (runsc), starts dockerd and the
# podman service, installs the language toolchains the embedded backend runs code with, and
# builds the default image of every language for both engines (offline, from Debian packages,
# when no registry is reachable; about 4 minutes from scratch, seconds once built).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="[dev,docker,podman,kubernetes]" bash scripts/bootstrap.sh

# Host toolchains for the embedded backend's language tests: "program:package", one apt-get for
# whatever is missing.
TOOLCHAINS=(node:nodejs npm:npm javac:default-jdk-headless g++:g++ go:golang-go ruby:ruby
  Rscript:r-base-core)
install_toolchains() {
  local missing=() pair
  for pair in "${TOOLCHAINS[@]}"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  echo "==> apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null
}

if [ "$(id -u)" -eq 0 ]; then
  bash scripts/engines.sh
  install_toolchains
  names="$(.venv/bin/python -c 'from llm_sandbox.images import LANGUAGES; print(*LANGUAGES)')"
  read -r -a languages <<<"$names"
  for engine in docker podman; do
    .venv/bin/llm-sandbox images build "${languages[@]}" --engine "$engine" --if-missing
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
