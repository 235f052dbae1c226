#!/usr/bin/env bash
# Shared set-up: system packages the embedded backend needs, and a virtualenv with the package.
# Sourced by run-example.sh and test.sh; safe to run again (a no-op when all is present).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing: ${need_apt[*]} — install them (e.g. sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
  echo "==> apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
echo "==> pip install -e .${EXTRAS:-}"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${EXTRAS:-}"
