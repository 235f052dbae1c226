#!/usr/bin/env bash
# Everything the tests need, installed and started, then the whole suite: lint, types, tests.
# As root it installs bubblewrap, Docker, Podman and gVisor (runsc), starts dockerd and the
# podman service, installs the language toolchains the embedded backend runs code with, and
# builds the default image of every language for both engines (offline, from Debian packages,
# when no registry is reachable; about 4 minutes from scratch, seconds once built).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="[dev,async,service,mcp,docker,podman,kubernetes]" bash scripts/bootstrap.sh

apt_install() {
  echo "==> apt-get install $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Host toolchains for the embedded backend's language tests (and openssl, which makes the egress
# tests' certificate; ip and perl, with which tests/egress/test_relay.py runs the gate's relays;
# chromium and its driver, in which tests/service/test_playground.py drives the web playground):
# "program:package", one apt-get for whatever is missing.
TOOLCHAINS=(node:nodejs npm:npm javac:default-jdk-headless g++:g++ go:golang-go ruby:ruby
  Rscript:r-base-core openssl:openssl ip:iproute2 perl:perl-base chromium:chromium
  chromedriver:chromium-driver)
install_toolchains() {
  local missing=() pair
  for pair in "${TOOLCHAINS[@]}"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  apt_install "${missing[@]}"
}

# Plotting libraries for the embedded backend, which runs the host's interpreters: R's from
# Debian; Python's into the interpreter the sandbox runs (the base of .venv), from Debian when that
# is Debian's python3, else with its own pip.
install_host_plotting() {
  local prefix
  dpkg -s r-cran-ggplot2 >/dev/null 2>&1 || apt_install r-cran-ggplot2
  prefix="$(.venv/bin/python -c 'import sys; print(sys.base_prefix)')"
  if "$prefix/bin/python3" -c 'import matplotlib, seaborn, plotly, PIL' 2>/dev/null; then
    return 0
  fi
  if [ "$prefix" = /usr ]; then
    apt_install python3-matplotlib python3-seaborn python3-plotly python3-pil
  else
    echo "==> pip install plotting libraries into $prefix"
    "$prefix/bin/python3" -m pip install -q --disable-pip-version-check \
      matplotlib seaborn plotly pillow
  fi
}

# IPython for the Python kernel runner, which the kernel tests run on the same interpreter
# (the base of .venv); R and Node need nothing beyond their toolchains (R's runner encodes JSON
# itself, without jsonlite).
install_host_kernels() {
  local prefix
  prefix="$(.venv/bin/python -c 'import sys; print(sys.base_prefix)')"
  if "$prefix/bin/python3" -c 'import IPython' 2>/dev/null; then
    return 0
  fi
  if [ "$prefix" = /usr ]; then
    apt_install python3-ipython
  else
    echo "==> pip install ipython into $prefix"
    "$prefix/bin/python3" -m pip install -q --disable-pip-version-check ipython
  fi
}

if [ "$(id -u)" -eq 0 ]; then
  bash scripts/engines.sh
  install_toolchains
  install_host_plotting
  install_host_kernels
  names="$(.venv/bin/python -c 'from llm_sandbox.images import LANGUAGES; print(*LANGUAGES)')"
  read -r -a languages <<<"$names"
  for engine in docker podman; do
    .venv/bin/llm-sandbox images build "${languages[@]}" --engine "$engine" --if-missing
  done
else
  echo "==> not root: container engines are used only if already running"
fi
echo "==> ruff"
.venv/bin/ruff check src tests bench scripts
.venv/bin/ruff format --check src tests bench scripts
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
status=0
.venv/bin/python -m pytest -m "not engine_faults" "$@" || status=$?
# Engine faults restart daemons and fill their storage: alone, after everything else (the
# whole run only: a run of chosen tests, an argument that is not an option, leaves them out).
chosen=0
for arg in "$@"; do
  case "$arg" in -*) ;; *) chosen=1 ;; esac
done
if [ "$chosen" -eq 0 ]; then
  echo "==> pytest (engine faults, alone)"
  .venv/bin/python -m pytest -m engine_faults tests/backends/test_engine_faults.py || status=$?
fi
exit "$status"
