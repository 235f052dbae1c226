"""Interactive sessions on every backend: real kernels in real sandboxes, attacked the way a
hostile cell would.

One session per backend serves the tests that leave it usable (each checks it still is);
the tests that must end a kernel check the session afterwards too. Nothing is mocked.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import time
import uuid
import xml.dom.minidom
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import backend_options
from llm_sandbox import InteractiveSandboxSession
from llm_sandbox.exceptions import (
    CellTimeoutError,
    SandboxRuntimeError,
    SandboxTimeoutError,
    SecurityViolationError,
)
from llm_sandbox.results import CellResult
from llm_sandbox.security import get_security_policy

ALSO_GVISOR = True


def host_processes_with(token: str) -> list[int]:
    """Pids of host processes whose environment holds `token` (kernels in containers and
    bubblewrap are host processes; gVisor's are not, its container's removal covers it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if token.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def open_session(backend: str, token: str, **options: Any) -> InteractiveSandboxSession:
    selected = backend_options(backend)
    session = InteractiveSandboxSession(
        environment={"KERNEL_TEST_TOKEN": token}, **selected, **options
    )
    session.open()
    return session


def close_and_check(session: InteractiveSandboxSession, token: str) -> None:
    """Close the session; then no process of it may be left on the host."""
    session.close()
    deadline = time.monotonic() + 10
    while host_processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert host_processes_with(token) == [], "kernel processes outlived close()"


@pytest.fixture(scope="module")
def token() -> str:
    return f"kt-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def shared(backend: str, token: str) -> Iterator[InteractiveSandboxSession]:
    session = open_session(backend, token, max_memory="512MB", timeout=60.0)
    yield session
    close_and_check(session, token)


@pytest.fixture
def isession(shared: InteractiveSandboxSession) -> Iterator[InteractiveSandboxSession]:
    """The shared session, checked usable after the test."""
    yield shared
    assert shared.run("print('still here')").stdout == "still here\n"


def test_state_persists_across_cells_commands_and_copies(
    isession: InteractiveSandboxSession, tmp_path: Any
) -> None:
    isession.run(
        "import math\nvalue = 41\ndef bump(v):\n    return v + 1\nf = open('kept.txt', 'w')"
    )
    assert isession.execute_command("echo between").stdout == "between\n"
    (tmp_path / "data.txt").write_text("copied")
    isession.copy_to_runtime(str(tmp_path / "data.txt"), "data.txt")
    result = isession.run("f.write('x'); f.flush(); bump(value) + math.floor(0.5)")
    assert result.error is None, result
    assert result.results == [{"text/plain": "42"}]
    assert isinstance(result.execution_count, int)
    assert isession.run("print(open('data.txt').read())").stdout == "copied\n"
    assert [h.code for h in isession.history][-1] == "print(open('data.txt').read())"


def test_a_command_timing_out_leaves_the_kernel(isession: InteractiveSandboxSession) -> None:
    isession.run("through_timeout = 3")
    with pytest.raises(SandboxTimeoutError):
        isession.execute_command("sleep 30", timeout=1.0)
    assert isession.run("print(through_timeout)").stdout == "3\n"


def test_a_command_killing_every_process_of_its_user(
    isession: InteractiveSandboxSession,
) -> None:
    """`kill -9 -1` in a command: in a container it reaches the kernel (same user); the next
    cell then runs in a fresh kernel and says so. On the embedded backend the kernel has a
    pid namespace of its own and keeps its state."""
    isession.run("hunted = 4")
    with contextlib.suppress(SandboxRuntimeError):  # in a container it kills its agent too
        isession.execute_command("kill -9 -1; true")
    result = isession.run("print(globals().get('hunted'))")
    if result.kernel_restarted:
        # Noticed before the cell (it ran in the fresh kernel), or while it ran (it did not).
        if result.error is None:
            assert result.stdout == "None\n", result
            assert any("fresh kernel" in w for w in result.warnings), result
        else:
            assert result.error.name == "KernelDied", result
    else:
        assert result.stdout == "4\n"


def test_mime_types_decode(isession: InteractiveSandboxSession) -> None:
    png = isession.run("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]); plt.show()")
    images = [b["image/png"] for b in png.results if "image/png" in b]
    assert images, png
    assert base64.b64decode(str(images[0])).startswith(b"\x89PNG\r\n\x1a\n")
    svg = isession.run(
        "from IPython.display import SVG, JSON, HTML, display\n"
        'display(SVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4">'
        '<rect width="4" height="4"/></svg>\'))\n'
        "display(JSON({'a': [1, 2]}))\n"
        "display(HTML('<b>bold</b>'))"
    )
    by_type = {mime: data for bundle in svg.results for mime, data in bundle.items()}
    root = xml.dom.minidom.parseString(str(by_type["image/svg+xml"])).documentElement
    assert root is not None
    assert root.tagName == "svg"
    data = by_type["application/json"]
    assert (json.loads(data) if isinstance(data, str) else data) == {"a": [1, 2]}
    assert by_type["text/html"] == "<b>bold</b>"
    frame = isession.run("import pandas as pd\npd.DataFrame({'n': range(1000)})")
    assert frame.error is None, frame
    assert "<table" in str(frame.results[-1]["text/html"])
    assert "text/plain" in frame.results[-1]


def test_error_keeps_the_kernel(isession: InteractiveSandboxSession) -> None:
    isession.run("kept = 'yes'")
    result = isession.run("1 / 0")
    assert result.exit_code == 1
    assert result.error is not None
    assert result.error.name == "ZeroDivisionError"
    assert "ZeroDivisionError: division by zero" in result.stderr
    assert not result.kernel_restarted
    assert isession.run("print(kept)").stdout == "yes\n"


def test_timeout_interrupts_and_keeps_state(isession: InteractiveSandboxSession) -> None:
    isession.run("survivor = 7")
    with pytest.raises(CellTimeoutError) as caught:
        isession.run("import time\nprint('started', flush=True)\ntime.sleep(30)", timeout=1.0)
    assert isinstance(caught.value, SandboxTimeoutError)
    assert caught.value.kernel_restarted is False
    assert "started" in caught.value.stdout
    assert isession.run("print(survivor)").stdout == "7\n"


def test_interrupt_from_another_thread_keeps_state(isession: InteractiveSandboxSession) -> None:
    isession.run("other = 8")
    timer = threading.Timer(0.5, isession.interrupt)
    timer.start()
    result = isession.run("import time\ntime.sleep(20)", timeout=30)
    timer.join()
    assert result.error is not None
    assert result.error.name == "KeyboardInterrupt"
    assert isession.run("print(other)").stdout == "8\n"


def test_restart_from_another_thread_ends_the_running_cell(
    isession: InteractiveSandboxSession,
) -> None:
    isession.run("before_restart = 1")
    timer = threading.Timer(0.5, isession.restart)
    timer.start()
    started = time.monotonic()
    result = isession.run("import time\ntime.sleep(20)", timeout=30)
    timer.join()
    assert time.monotonic() - started < 15
    assert result.kernel_restarted
    assert result.error is not None
    assert result.error.name == "KernelRestarted"
    assert isession.run("print('before_restart' in globals())").stdout == "False\n"


def test_hard_hang_restarts_the_kernel(isession: InteractiveSandboxSession) -> None:
    isession.run("doomed = 1")
    before = isession.kernel_restarts
    swallow = (
        "import time\nwhile True:\n    try:\n        time.sleep(10)\n"
        "    except KeyboardInterrupt:\n        pass"
    )
    started = time.monotonic()
    with pytest.raises(CellTimeoutError) as caught:
        isession.run(swallow, timeout=1.0)
    assert caught.value.kernel_restarted is True
    assert time.monotonic() - started < 15
    assert isession.kernel_restarts == before + 1
    result = isession.run("print('doomed' in globals())")
    assert result.stdout == "False\n"


def test_c_level_sleep_restarts_the_kernel(isession: InteractiveSandboxSession) -> None:
    # A C call that no signal interrupts: SIGINT blocked, then sleep(3) in libc.
    code = (
        "import ctypes, signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})\n"
        "ctypes.CDLL(None).sleep(60)"
    )
    with pytest.raises(CellTimeoutError) as caught:
        isession.run(code, timeout=1.0)
    assert caught.value.kernel_restarted is True


@pytest.fixture
def fresh(backend: str) -> Iterator[InteractiveSandboxSession]:
    """A session of its own (for cells that may take the whole sandbox down: under gVisor
    running out of memory ends the sandbox); nothing of it may outlive close()."""
    mark = f"kt-{uuid.uuid4().hex}"
    session = open_session(backend, mark, max_memory="256MB", timeout=60.0)
    yield session
    close_and_check(session, mark)


def outcome(session: InteractiveSandboxSession, code: str, timeout: float) -> object:
    """The cell's result, or the error it raised (to look at outside an except block)."""
    try:
        return session.run(code, timeout=timeout)
    except (CellTimeoutError, SandboxRuntimeError) as exc:
        return exc


SANDBOX_MAY_END = {
    "docker+runsc": "gvisor",  # out of memory ends the whole sandbox
    "kubernetes": "deleted",  # a fork bomb can starve the killer (the code's own user)
}
"""Where a bomb may end the sandbox itself, and what the error then says."""


def ended_clearly(backend: str, error: Exception) -> None:
    assert backend in SANDBOX_MAY_END, error
    assert SANDBOX_MAY_END[backend] in str(error).lower(), error


def usable_or_sandbox_ended(session: InteractiveSandboxSession, backend: str) -> None:
    """The session runs cells again, or (see SANDBOX_MAY_END) says clearly that its sandbox
    ended."""
    after = outcome(session, "print('alive')", 30.0)
    if isinstance(after, SandboxRuntimeError):
        ended_clearly(backend, after)
    else:
        assert getattr(after, "stdout", None) == "alive\n", after


def test_memory_bomb_is_contained(fresh: InteractiveSandboxSession, backend: str) -> None:
    fresh.run("kept = 1")
    got = outcome(fresh, "hog = bytearray(2 * 1024**3)\nhog[::4096] = b'x' * len(hog[::4096])", 60)
    if isinstance(got, SandboxRuntimeError):  # gVisor: the sandbox ran out as a whole
        assert backend == "docker+runsc", got
        # The engine reports the stop as out of memory, as a plain stop (exit code 137, when
        # it did not flag the OOM) or (when it removed the container first) as gone: each
        # says the sandbox ended and what to do.
        assert "open a new session" in str(got), got
        return
    assert isinstance(got, CellResult), got
    assert got.error is not None
    assert got.error.name in ("MemoryError", "KernelDied"), got.error
    if got.error.name == "KernelDied":
        assert got.kernel_restarted, got
        assert got.out_of_memory, got
        assert "memory" in got.error.value
    usable_or_sandbox_ended(fresh, backend)


def test_fork_bomb_is_contained(fresh: InteractiveSandboxSession, backend: str) -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    got = outcome(fresh, bomb, 3.0)
    if isinstance(got, CellTimeoutError):
        assert got.kernel_restarted
    else:
        assert isinstance(got, SandboxRuntimeError), got
        ended_clearly(backend, got)
    usable_or_sandbox_ended(fresh, backend)


def test_output_flood_is_capped(isession: InteractiveSandboxSession) -> None:
    result = isession.run("import sys\nfor _ in range(64):\n    sys.stdout.write('x' * 2**20)")
    assert result.stdout_truncated
    assert len(result.stdout) <= isession.config.limits.output + 1024


def test_invalid_utf8_is_replaced(isession: InteractiveSandboxSession) -> None:
    result = isession.run(
        "import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe\\n'); sys.stdout.flush()"
    )
    assert result.stdout == "ok \ufffd\ufffd\n"


def test_cell_closing_stdout(isession: InteractiveSandboxSession) -> None:
    isession.run("import os\nos.close(1); os.close(2)")
    assert isession.run("print('after')").stdout == "after\n"


def test_cell_killing_its_kernel(isession: InteractiveSandboxSession) -> None:
    before = isession.kernel_restarts
    result = isession.run("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert result.kernel_restarted
    assert result.error is not None
    assert result.error.name == "KernelDied"
    assert isession.kernel_restarts == before + 1


def test_cell_exiting_the_kernel(isession: InteractiveSandboxSession) -> None:
    result = isession.run("import os\nos._exit(3)")
    assert result.kernel_restarted


def test_concurrent_cells_are_serialized(isession: InteractiveSandboxSession) -> None:
    results: dict[int, str] = {}

    def cell(n: int) -> None:
        code = (
            f"import time\nfor i in range(5):\n    print('{n}', end='', flush=True)\n"
            "    time.sleep(0.02)"
        )
        results[n] = isession.run(code).stdout

    threads = [threading.Thread(target=cell, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {n: str(n) * 5 for n in range(3)}


def test_policy_is_checked_per_cell(backend: str, token: str) -> None:
    policy = get_security_policy("production")
    session = open_session(backend, token, security_policy=policy)
    try:
        ok, violations = session.is_safe("import os\nos.system('ls')")
        assert not ok
        assert violations
        with pytest.raises(SecurityViolationError):
            session.run("import os\nos.system('ls')")
        assert session.run("print(1 + 1)").stdout == "2\n"
    finally:
        session.close()


def test_second_context_shares_files_not_state(isession: InteractiveSandboxSession) -> None:
    isession.run("open('shared.txt', 'w').write('from main'); mine = 1")
    other = isession.create_context(lang="python")
    try:
        assert other.run("print(open('shared.txt').read())").stdout == "from main\n"
        assert other.run("print('mine' in globals())").stdout == "False\n"
        assert isession.run("print(mine)").stdout == "1\n"
    finally:
        other.close()


def test_pip_install_goes_through_install(backend: str, token: str) -> None:
    if backend not in ("local", "docker"):
        pytest.skip("one container engine is enough for the install path")
    session = open_session(backend, token, network=backend == "docker")
    try:
        result = session.run("%pip install --quiet six\nimport six\nprint(six.__name__)")
        assert "six" in result.stdout, result
    finally:
        session.close()


@pytest.mark.parametrize(
    ("lang", "cells", "expected"),
    [
        ("javascript", ["let x = 41", "await Promise.resolve(x + 1)"], "42"),
        ("r", ["x <- 41", "x + 1"], "[1] 42"),
    ],
)
def test_javascript_and_r_kernels(
    backend: str, token: str, lang: str, cells: list[str], expected: str
) -> None:
    session = open_session(backend, token, lang=lang)
    try:
        session.run(cells[0])
        assert session.execute_command("echo between").stdout == "between\n"
        result = session.run(cells[1])
        assert result.error is None, result
        assert result.results == [{"text/plain": expected}]
        if lang == "r":
            plot = session.run("plot(1:10)")
            png = next(b["image/png"] for b in plot.results if "image/png" in b)
            assert base64.b64decode(str(png)).startswith(b"\x89PNG")
    finally:
        session.close()
