"""The embedded backend answers to `python` (and `pip`, `nodejs`) like the default images do.

It runs the host's toolchain, and a Debian host has no `python` (only with python-is-python3):
the sandbox then gets its own link, last on PATH, to the interpreter it runs. The host's own
`python`, when there is one, wins.
"""

from __future__ import annotations

import os
import shutil

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.backends.local.sandbox import ALIAS_DIR, BASE_PATH, command_links
from support import open_or_skip


def test_links_are_made_only_for_missing_names(tmp_path: os.PathLike[str]) -> None:
    bin_dir = os.fspath(tmp_path)
    for name in ("python3", "pip3", "node", "nodejs"):
        path = os.path.join(bin_dir, name)
        with open(path, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(path, 0o755)
    links = command_links(bin_dir)
    assert links == {
        f"{ALIAS_DIR}/python": os.path.join(bin_dir, "python3"),
        f"{ALIAS_DIR}/pip": os.path.join(bin_dir, "pip3"),
    }


def test_python_answers_in_the_default_local_session() -> None:
    session = open_or_skip(SandboxSession(backend="local"), "the local backend")
    try:
        result = session.execute_command("python -c 'import sys; print(sys.version_info[0])'")
    finally:
        session.close()
    assert (result.exit_code, result.stdout) == (0, "3\n"), result.stderr


def test_a_host_without_python_gets_a_link_to_python3(monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian's own interpreter (/usr/bin/python3), which has no `python` beside it."""
    if not os.path.exists("/usr/bin/python3"):
        pytest.skip("no /usr/bin/python3 on this host")
    if shutil.which("python", path=BASE_PATH) is not None:
        pytest.skip("this host has a python on its base PATH (python-is-python3)")
    monkeypatch.setenv("LLM_SANDBOX_PYTHON_PREFIX", "/usr")
    session = open_or_skip(SandboxSession(backend="local"), "the local backend")
    try:
        ran = session.execute_command("python -c 'import sys; print(sys.prefix)'")
        tampered = session.execute_command(f"ln -s /bin/sh {ALIAS_DIR}/evil; ls {ALIAS_DIR}")
    finally:
        session.close()
    assert (ran.exit_code, ran.stdout) == (0, "/usr\n"), ran.stderr
    assert tampered.stdout.split() == ["python"]  # read-only: the code cannot add its own
    assert tampered.exit_code == 0
