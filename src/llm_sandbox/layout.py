"""The fixed layout every sandbox shares, whatever runs it, and the mark on what we create.

Inside a sandbox: our support directory (code to run, hooks, stdin), the directory installed
libraries go to, and where `commit_container=True` bakes them into an image. On the host: the
CA bundle installs are pointed at, and `LABEL`, the label (with the creating process's pid and
host) on every container, volume, pod and policy we create, which `llm-sandbox gc` looks for.
"""

from __future__ import annotations

from typing import Final

SUPPORT_DIR: Final = "/opt/llm-sandbox"
"""Directory inside every sandbox for our own files: the code to run and installed libraries."""
LIBS_DIR: Final = f"{SUPPORT_DIR}/libs"
"""Where `install()` puts libraries (one subdirectory per language)."""
BAKED_LIBS_DIR: Final = "/usr/local/lib/llm-sandbox/libs"
"""Libraries saved into an image by `commit_container=True`; read-only in later sessions."""
RUN_SCRIPT: Final = f"{SUPPORT_DIR}/run.sh"
"""Where the exec agent keeps the script of the command it is running."""

HOST_CA_BUNDLE: Final = "/etc/ssl/certs/ca-certificates.crt"
CA_ENV: Final = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")
"""Variables that point TLS clients with CA stores of their own at a bundle (for installs)."""

LABEL: Final = "io.llm-sandbox"
"""Marks every container, volume, pod and policy we create (value "1")."""
PID_LABEL: Final = f"{LABEL}.pid"
"""The pid of the process that created it (an orphan's creator is gone)."""
HOST_LABEL: Final = f"{LABEL}.host"
"""The host name of that process (pods may outlive the machine that made them)."""
