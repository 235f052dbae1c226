"""The previous generation's layouts and environment, on every backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SessionFactory

ALSO_GVISOR = True


@pytest.mark.parametrize("exists", [False, True])
def test_a_copied_directory_lands_in_dest_under_its_own_name(
    make_session: SessionFactory, tmp_path: Path, exists: bool
) -> None:
    session = make_session()
    session.execute_command("mkdir -p out/sub && echo a > out/a.txt && echo b > out/sub/b.txt")
    dest = tmp_path / "dest"
    if exists:
        dest.mkdir()
    session.copy_from_runtime("out", str(dest))
    assert (dest / "out" / "a.txt").read_text() == "a\n"
    assert (dest / "out" / "sub" / "b.txt").read_text() == "b\n"
    session.copy_from_runtime(f"{session.config.workdir}/out/a.txt", str(tmp_path / "x" / "f"))
    assert (tmp_path / "x" / "f").read_text() == "a\n"


def test_the_users_pythonpath_is_kept_and_ours_follows(
    backend: str, make_session: SessionFactory
) -> None:
    env = {"PYTHONPATH": "/app", "GREETING": "hi"}
    if backend == "kubernetes":
        session = make_session(env_vars=env)
    else:
        session = make_session(runtime_config={"environment": env})
    result = session.run(
        "import os, sys; print(os.environ['PYTHONPATH']); print(os.environ['GREETING'])"
    )
    assert result.exit_code == 0, result.stderr
    path, greeting = result.stdout.split()
    assert path.split(":")[0] == "/app"
    assert len(path.split(":")) > 1  # our library directories follow
    assert greeting == "hi"
