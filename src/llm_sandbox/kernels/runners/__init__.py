"""The kernel runners: programs that run inside the sandbox, one per language (package data).

Each speaks the protocol of `llm_sandbox.kernels.protocol` over the descriptors the launcher
sets up (`llm_sandbox.kernels.languages`). They never import llm_sandbox: the session copies
them into the sandbox's support directory, where only the language's own interpreter exists.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

FILES = ("python_runner.py", "node_runner.js", "r_runner.R")


def runner_file(name: str) -> bytes:
    """The content of one runner file."""
    return resources.files(__name__).joinpath(name).read_bytes()


def local_dir() -> str:
    """The directory of this package on the host (to run the runners as host processes)."""
    return str(Path(str(resources.files(__name__))).resolve())
