"""Helpers for the kernel tests (importable as `kernel_support`): real interpreters, run as plain
host processes through `SubprocessChannel`.

The runners run without any sandbox here: these tests check the runners and the protocol,
not isolation (the backend suites do that once the kernels are wired into sessions). An
interpreter that is missing is a skip locally and a failure under CI.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence

import pytest

from llm_sandbox.kernels import Kernel
from llm_sandbox.kernels.subprocess_channel import SubprocessChannel
from llm_sandbox.language_handlers.python import host_python_prefix
from support import IN_CI

PYTHON = os.path.join(host_python_prefix(), "bin", "python3")


def interpreter(lang: str) -> list[str]:
    """The command of `lang`'s interpreter on this host (skips, or fails under CI, if absent)."""
    if lang == "python":
        command, probe = [PYTHON], [PYTHON, "-c", "import IPython"]
    elif lang == "javascript":
        command = probe = [shutil.which("node") or "node"]
        probe = [*probe, "-e", "0"]
    else:
        command = probe = [shutil.which("Rscript") or "Rscript"]
        probe = [*probe, "-e", "0"]
    import subprocess

    try:
        ok = subprocess.run(probe, capture_output=True, timeout=60, check=False).returncode == 0
    except OSError:
        ok = False
    if not ok:
        message = f"the {lang} interpreter for kernel tests is missing here ({' '.join(probe)})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return command


SCRATCH: list[str] = []
"""The temporary directory kernels of this test run use as TMPDIR (set by a fixture): files a
killed kernel leaves behind go with it."""


def launcher(
    cwd: str | None = None, env: dict[str, str] | None = None
) -> Callable[[Sequence[str]], SubprocessChannel]:
    if env is None and SCRATCH:
        env = {**os.environ, "TMPDIR": SCRATCH[0]}

    def launch(argv: Sequence[str]) -> SubprocessChannel:
        return SubprocessChannel(argv, cwd=cwd, env=env)

    return launch


KernelFactory = Callable[..., Kernel]
