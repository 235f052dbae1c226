"""The session's own logic, on the test double backend (`fake_backend.py`): milliseconds each.

Deadlines, session expiry, the state machine, callbacks, output capping, exit codes, compile
failures, installs and policy checks are the session's work whatever the backend; the real
backends' suites (`tests/backends/`) prove the same against real sandboxes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fake_backend import FakeBackend, FakeSandbox, Script
from llm_sandbox import ResourceLimits, SandboxSession
from llm_sandbox.exceptions import (
    ConfigurationError,
    PackageInstallError,
    SandboxTimeoutError,
    SecurityViolationError,
    SessionStateError,
)
from llm_sandbox.security import get_security_policy
from llm_sandbox.session import State

pytestmark = pytest.mark.usefixtures("fake_backend")


@pytest.fixture
def session() -> Iterator[SandboxSession]:
    with SandboxSession(lang="python", backend="fake") as opened:
        yield opened


def sandbox_of(session: SandboxSession) -> FakeSandbox:
    return FakeBackend.opened[-1]


# --- lifecycle ----------------------------------------------------------------------------------
def test_state_machine_and_misuse_errors() -> None:
    session = SandboxSession(backend="fake")
    assert session.state is State.NEW
    with pytest.raises(SessionStateError, match="not open"):
        session.run("out x")
    session.open()
    assert session.is_open
    with pytest.raises(SessionStateError, match="open\\(\\) called on a session that is open"):
        session.open()
    session.close()
    session.close()  # closing twice is fine
    assert session.state.value == "closed"
    assert sandbox_of(session).closed == 1
    with pytest.raises(SessionStateError, match="closed"):
        session.run("out x")


def test_context_manager_closes_on_error() -> None:
    with pytest.raises(RuntimeError), SandboxSession(backend="fake") as session:
        raise RuntimeError("boom")
    assert session.state is State.CLOSED
    assert sandbox_of(session).closed == 1


def test_the_backend_gets_the_sessions_config() -> None:
    with SandboxSession(backend="fake", workdir="/work") as session:
        assert session.config.backend == "fake"
        assert sandbox_of(session).config is session.config
        assert sandbox_of(session).config.workdir == "/work"


# --- results ------------------------------------------------------------------------------------
def test_output_and_exit_code(session: SandboxSession) -> None:
    result = session.run("out hello\nerr oops\nexit 3")
    assert (result.stdout, result.stderr, result.exit_code) == ("hello\n", "oops\n", 3)
    assert result.verdict.value == "error"
    assert not result.success()


def test_out_of_memory_verdict(session: SandboxSession) -> None:
    result = session.run("out before\noom")
    assert result.exit_code == 137
    assert result.out_of_memory
    assert result.verdict.value == "out_of_memory"


def test_output_is_capped_per_stream() -> None:
    with SandboxSession(backend="fake", limits=ResourceLimits(output=10)) as session:
        result = session.run("bytes 25\nerr e")
    assert result.stdout == "x" * 10
    assert result.stdout_truncated
    assert not result.stderr_truncated
    assert result.truncated


def test_callbacks_get_output_live_and_in_order(session: SandboxSession) -> None:
    seen: list[tuple[str, float]] = []
    started = time.monotonic()
    result = session.run(
        "out one\nsleep 0.2\nout two",
        on_stdout=lambda text: seen.append((text, time.monotonic() - started)),
    )
    assert [text for text, _ in seen] == ["one\n", "two\n"]
    assert seen[0][1] < 0.15 <= seen[1][1]
    assert result.stdout == "one\ntwo\n"


def test_a_raising_callback_is_dropped_and_the_run_goes_on(session: SandboxSession) -> None:
    def explode(text: str) -> None:
        raise ValueError(text)

    result = session.run("out one\nout two\nexit 4", on_stdout=explode)
    assert result.stdout == "one\ntwo\n"
    assert result.exit_code == 4


def test_compile_failure_is_a_result_not_an_error() -> None:
    with SandboxSession(lang="cpp", backend="fake") as session:
        result = session.run("compile-error")
    assert result.compile_failed
    assert result.verdict.value == "compile_error"
    assert "compile error" in result.stderr


# --- deadlines ------------------------------------------------------------------------------
def test_timeout_kills_and_keeps_the_output_so_far(session: SandboxSession) -> None:
    started = time.monotonic()
    with pytest.raises(SandboxTimeoutError) as info:
        session.run("out partial\nhang", timeout=0.3)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 1.0
    assert info.value.stdout == "partial\n"
    assert not info.value.session_expired
    assert sandbox_of(session).kills == 1
    assert session.run("out again").stdout == "again\n"  # still usable


def test_execution_timeout_then_default_timeout_then_per_run() -> None:
    with (
        SandboxSession(backend="fake", default_timeout=0.2) as session,
        pytest.raises(SandboxTimeoutError, match=r"after 0\.2 s"),
    ):
        session.run("hang")
    with SandboxSession(backend="fake", default_timeout=5, execution_timeout=0.2) as session:
        with pytest.raises(SandboxTimeoutError, match=r"after 0\.2 s"):
            session.run("hang")
        assert session.run("sleep 0.3\nout ok", timeout=2).stdout == "ok\n"


def test_bad_timeouts_are_configuration_errors(session: SandboxSession) -> None:
    for bad in (0, -1, float("inf"), float("nan"), True, "1"):
        with pytest.raises(ConfigurationError):
            session.run("out x", timeout=bad)  # type: ignore[arg-type]


def test_session_expiry_kills_the_run_and_tears_down() -> None:
    session = SandboxSession(backend="fake", session_timeout=0.3)
    session.open()
    sandbox = sandbox_of(session)
    with pytest.raises(SandboxTimeoutError) as info:
        session.run("out started\nhang", timeout=10)
    assert info.value.session_expired
    assert info.value.stdout == "started\n"
    assert sandbox.kills == 1
    assert sandbox.closed == 1
    assert session.state is State.EXPIRED
    with pytest.raises(SandboxTimeoutError, match="expired"):
        session.run("out x")
    session.close()
    assert session.state is State.EXPIRED
    assert sandbox.closed == 1


def test_idle_session_expires_on_its_own() -> None:
    session = SandboxSession(backend="fake", session_timeout=0.1)
    session.open()
    time.sleep(0.3)
    assert session.state is State.EXPIRED
    assert sandbox_of(session).closed == 1
    session.close()


# --- what reaches the sandbox ---------------------------------------------------------------
def test_blocked_code_never_reaches_the_sandbox() -> None:
    policy = get_security_policy("production")
    with SandboxSession(backend="fake", security_policy=policy) as session:
        with pytest.raises(SecurityViolationError):
            session.run("import subprocess\nsubprocess.run(['id'])")
        assert sandbox_of(session).execs == []


def test_installs_go_through_the_gate_with_writable_libraries(session: SandboxSession) -> None:
    """Not the whole network: the egress gate, allowing the package index (pip's here)."""
    session.install(["numpy"])
    request = sandbox_of(session).execs[-1]
    assert not request.network
    assert request.egress is not None
    assert request.env["HTTPS_PROXY"] == "http://127.0.0.1:3128"
    assert request.writable_libs
    assert "numpy" in request.argv
    run = session.run("out x")
    assert run.stdout == "x\n"
    assert not sandbox_of(session).execs[-1].network
    assert sandbox_of(session).execs[-1].egress is None


def test_installs_of_a_session_with_network_use_it() -> None:
    with SandboxSession(backend="fake", network=True) as session:
        session.install(["numpy"])
        request = sandbox_of(session).execs[-1]
        assert request.network
        assert request.egress is None


def test_failed_install_keeps_its_output(session: SandboxSession) -> None:
    sandbox_of(session).next_result = Script.parse("err no such package\nexit 1")
    with pytest.raises(PackageInstallError, match="no such package") as info:
        session.install(["nothing-here"])
    assert info.value.exit_code == 1
    assert info.value.stderr == "no such package\n"


def test_execute_command_runs_a_shell_line_or_an_argv(session: SandboxSession) -> None:
    assert session.execute_command("out via-shell").stdout == "via-shell\n"
    session.execute_command(["ls", "-l"])
    assert sandbox_of(session).execs[-1].argv == ["ls", "-l"]
    for bad in ("", "   ", [], [1]):
        with pytest.raises(ConfigurationError):
            session.execute_command(bad)  # type: ignore[arg-type]


def test_files_round_trip(session: SandboxSession, tmp_path: Path) -> None:
    source = tmp_path / "data.txt"
    source.write_text("payload")
    session.copy_to_runtime(str(source), "data.txt")
    assert sandbox_of(session).files["/sandbox/data.txt"] == b"payload"
    written = session.copy_from_runtime("data.txt", str(tmp_path / "out"))
    assert [p.read_text() for p in written] == ["payload"]


def test_run_args_follow_the_program_and_are_checked() -> None:
    with SandboxSession(backend="fake") as session:
        with pytest.raises(ConfigurationError, match="args must be a list of strings"):
            session.run("out x", args="a")
        assert session.run("out x", args=["a b"]).exit_code == 0
