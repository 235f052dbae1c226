"""The session API against real sandboxes: results, lifecycle, files, installs."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.exceptions import (
    InvalidPackageError,
    SandboxRuntimeError,
    SessionStateError,
    UnsafeArchiveError,
)

SessionFactory = Callable[..., SandboxSession]


def test_hello_world(session: SandboxSession) -> None:
    result = session.run("print('Hello, World!')")
    assert result.stdout == "Hello, World!\n"
    assert result.stderr == ""
    assert result.exit_code == 0
    assert result.success()
    assert result.wall_time > 0


@pytest.mark.parametrize("code", [0, 1, 3, 42, 255])
def test_exit_code_is_exactly_the_programs(session: SandboxSession, code: int) -> None:
    assert session.run(f"import sys; sys.exit({code})").exit_code == code


def test_signal_death_reports_128_plus_signal(session: SandboxSession) -> None:
    result = session.run("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert result.exit_code == 128 + 9


def test_stderr_is_separate_and_traceback_kept(session: SandboxSession) -> None:
    result = session.run("import sys\nprint('out')\nprint('err', file=sys.stderr)\n1/0\n")
    assert result.stdout == "out\n"
    assert "err\n" in result.stderr
    assert "ZeroDivisionError" in result.stderr
    assert "line 4" in result.stderr
    assert result.exit_code == 1
    assert result.verdict.value == "error"


def test_invalid_utf8_is_replaced_not_fatal(session: SandboxSession) -> None:
    result = session.run("import sys; sys.stdout.buffer.write(b'a\\xffb'); sys.stdout.flush()")
    assert result.stdout == "a\ufffdb"


def test_unicode_round_trip(session: SandboxSession) -> None:
    result = session.run("print('héllo wörld ✓ 日本')")
    assert result.stdout == "héllo wörld ✓ 日本\n"


def test_stdin_is_delivered(session: SandboxSession) -> None:
    result = session.run("import sys; print(sys.stdin.read().upper())", stdin="abc")
    assert result.stdout == "ABC\n"


def test_workdir_persists_within_a_session(session: SandboxSession) -> None:
    assert session.run("open('state.txt', 'w').write('kept')").exit_code == 0
    assert session.run("print(open('/sandbox/state.txt').read())").stdout == "kept\n"


def test_runs_start_in_the_workdir(make_session: SessionFactory) -> None:
    session = make_session(workdir="/work")
    assert session.run("import os; print(os.getcwd())").stdout == "/work\n"


def test_execute_command_string_uses_shell(session: SandboxSession) -> None:
    result = session.execute_command("echo $((6 * 7)) && exit 5")
    assert result.stdout == "42\n"
    assert result.exit_code == 5


def test_execute_command_list_is_argv(session: SandboxSession) -> None:
    result = session.execute_command(["echo", "$HOME; rm -rf /"])
    assert result.stdout == "$HOME; rm -rf /\n"


def test_streaming_callbacks_and_exit_code(session: SandboxSession) -> None:
    out: list[str] = []
    err: list[str] = []
    result = session.run(
        "import sys\nfor i in range(3): print(i, flush=True)\nprint('e', file=sys.stderr)\n"
        "sys.exit(3)",
        on_stdout=out.append,
        on_stderr=err.append,
    )
    assert "".join(out) == "0\n1\n2\n"
    assert "".join(err) == "e\n"
    assert result.exit_code == 3


def test_raising_callback_does_not_break_the_run(session: SandboxSession) -> None:
    def boom(_: str) -> None:
        raise RuntimeError("callback bug")

    result = session.run("print('x')", on_stdout=boom)
    assert result.stdout == "x\n"
    assert session.run("print('y')").stdout == "y\n"


def test_copy_file_round_trip(session: SandboxSession, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("payload")
    session.copy_to_runtime(str(src), "/sandbox/data/in.txt")
    assert session.run("print(open('/sandbox/data/in.txt').read())").stdout == "payload\n"
    session.run("open('out.txt', 'w').write('result')")
    session.copy_from_runtime("out.txt", tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_text() == "result"


def test_copy_directory_round_trip(session: SandboxSession, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("A")
    (tree / "sub" / "b.txt").write_text("B")
    session.copy_to_runtime(tree, "/sandbox/tree")
    listing = session.run(
        "import os\nfor r, d, f in sorted(os.walk('tree')):\n  print(r, sorted(f))"
    ).stdout
    assert "tree ['a.txt']" in listing
    assert "tree/sub ['b.txt']" in listing
    session.run("import os; os.makedirs('res/x'); open('res/x/c.txt','w').write('C')")
    session.copy_from_runtime("/sandbox/res", tmp_path / "dest")
    assert (tmp_path / "dest" / "res" / "x" / "c.txt").read_text() == "C"


def test_copy_from_missing_path(session: SandboxSession, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        session.copy_from_runtime("/sandbox/nope", tmp_path / "nope")


def test_symlink_planted_in_sandbox_cannot_read_host_files(
    session: SandboxSession, tmp_path: Path
) -> None:
    session.run("import os; os.symlink('/etc/hostname', 'link'); os.symlink('/etc', 'dir')")
    with pytest.raises(UnsafeArchiveError):
        session.copy_from_runtime("link", tmp_path / "link")
    assert not (tmp_path / "link").exists()


def test_malicious_tar_from_sandbox_is_refused(session: SandboxSession, tmp_path: Path) -> None:
    """The code builds a tar with '..' members; copying it out must not write outside dest."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("evil/../../escaped.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"pwnd"))
    session.copy_to_runtime(_write(tmp_path / "evil.tar", buffer.getvalue()), "evil.tar")
    session.execute_command("mkdir -p out && tar -xf evil.tar -C out 2>/dev/null; true")
    dest = tmp_path / "dest"
    session.copy_from_runtime("out", dest)
    assert not (tmp_path / "escaped.txt").exists()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "name", ["x; rm -rf /", "--index-url=https://evil.example", "-e .", "a b", "pkg @ http://x", ""]
)
def test_install_rejects_injection(session: SandboxSession, name: str) -> None:
    with pytest.raises(InvalidPackageError):
        session.install([name])


def test_lifecycle_misuse_is_a_clear_error() -> None:
    session = SandboxSession(lang="python")
    with pytest.raises(SessionStateError, match="not open"):
        session.run("print(1)")
    with session:
        assert session.run("print(1)").stdout == "1\n"
    with pytest.raises(SessionStateError, match="closed"):
        session.run("print(1)")
    session.close()  # closing twice is harmless


def test_program_that_kills_its_parent_gets_a_clear_error(
    session: SandboxSession, backend: str
) -> None:
    """Locally the parent is the namespace's init (immune); on containers it is the run agent."""
    code = "import os, signal; os.kill(os.getppid(), signal.SIGKILL)"
    if backend == "local":
        assert session.run(code).exit_code == 0
    else:
        with pytest.raises(SandboxRuntimeError, match="exit status is unknown"):
            session.run(code)
    assert session.run("print('recovered')").stdout == "recovered\n"
