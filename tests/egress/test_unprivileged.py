"""The gate in the embedded backend when the caller is not root: it cannot enter the sandbox's
network namespace directly, so a helper process enters the owning user namespace first.

The suite runs as root here; this test runs a session as `nobody` (setpriv), from a copy of the
sources that user can read, with Debian's python3.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SCRIPT = """
from llm_sandbox import EgressPolicy, SandboxSession
with SandboxSession(backend="local", network=EgressPolicy(allow=["api.example.com"])) as s:
    r = s.run(
        "import urllib.request\\n"
        "try:\\n    urllib.request.urlopen('http://elsewhere.invalid/', timeout=5)\\n"
        "except Exception as exc:\\n    print(exc)"
    )
    print(r.stdout.strip(), r.egress_denied, [e.verdict for e in s.network_log])
"""


def test_an_unprivileged_caller_gets_the_gate() -> None:
    setpriv, python = shutil.which("setpriv"), "/usr/bin/python3"
    if os.geteuid() != 0 or setpriv is None or not os.path.exists(python):
        pytest.skip("needs root (to become nobody), setpriv and /usr/bin/python3")
    source = Path(__file__).resolve().parents[2] / "src"
    copy = Path(tempfile.mkdtemp(prefix="llm-sandbox-unprivileged-"))
    try:
        shutil.copytree(source, copy / "src")
        for path in [copy, *copy.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        done = subprocess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", SCRIPT],
            env={"PYTHONPATH": str(copy / "src"), "HOME": str(copy), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        shutil.rmtree(copy)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == ("HTTP Error 403: Forbidden by llm-sandbox egress policy 1 ['denied']\n")
