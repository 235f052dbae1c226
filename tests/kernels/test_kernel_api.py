"""The host side on its own: result types, settings, runner choice, and a Kernel driven by a
scripted runner that misbehaves on purpose."""

from __future__ import annotations

import base64
import json
import shutil
import textwrap
import threading
import time
from pathlib import Path

import pytest

from kernel_support import PYTHON, KernelFactory, interpreter, launcher
from llm_sandbox.exceptions import KernelError, LanguageNotSupportedError
from llm_sandbox.kernels import (
    InteractiveSettings,
    Kernel,
    KernelType,
    kernel_argv,
    runner_files,
    runner_spec,
)
from llm_sandbox.kernels.languages import LAUNCHER, RUNNERS_DIR
from llm_sandbox.kernels.runners import local_dir
from llm_sandbox.results import CellError, CellResult, FileType

# --- results and settings -------------------------------------------------------------------------


def test_cell_result_is_a_console_output_with_rich_results() -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    result = CellResult(
        exit_code=1,
        stdout="out",
        execution_count=3,
        results=[
            {"text/plain": "x"},
            {"image/png": png, "text/plain": "<Figure>"},
            {"image/svg+xml": "<svg/>"},
        ],
        error=CellError("ValueError", "bad", ["Traceback", "ValueError: bad"]),
    )
    assert not result.success()
    assert [p.format for p in result.plots] == [FileType.PNG, FileType.SVG]
    assert result.plots[0].content.startswith(b"\x89PNG")
    assert result.plots[1].content == b"<svg/>"
    data = json.loads(result.to_json())
    assert data["error"] == {
        "name": "ValueError",
        "value": "bad",
        "traceback": ["Traceback", "ValueError: bad"],
    }
    assert data["results"][0] == {"text/plain": "x"}
    assert data["execution_count"] == 3


def test_interactive_settings_keep_the_previous_generation_fields() -> None:
    settings = InteractiveSettings()
    assert (settings.kernel_type, settings.max_memory, settings.history_size) == (
        KernelType.IPYTHON,
        None,
        1000,
    )
    assert (settings.timeout, settings.poll_interval) == (300.0, 0.1)
    assert InteractiveSettings(kernel_type="IPython").kernel_type is KernelType.IPYTHON  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="history_size"):
        InteractiveSettings(history_size=-1)
    with pytest.raises(ValueError, match="poll_interval"):
        InteractiveSettings(poll_interval=0)
    with pytest.raises(ValueError, match="not a valid KernelType"):
        InteractiveSettings(kernel_type="jupyter")  # type: ignore[arg-type]
    assert KernelType("IPYTHON") == "ipython"


def test_runners_by_language() -> None:
    assert runner_spec("Python").file == "python_runner.py"
    assert runner_spec("js").language == runner_spec("nodejs").language == "javascript"
    assert runner_spec("R").file == "r_runner.R"
    with pytest.raises(LanguageNotSupportedError, match="interactive kernels exist for"):
        runner_spec("ruby")
    argv = kernel_argv("python")
    assert argv == [
        "sh",
        "-c",
        LAUNCHER,
        "llm-sandbox-kernel",
        "python3",
        f"{RUNNERS_DIR}/python_runner.py",
    ]
    assert kernel_argv("r", runner_dir="/x", interpreter=["/opt/R/bin/Rscript"])[-2:] == [
        "/opt/R/bin/Rscript",
        "/x/r_runner.R",
    ]
    files = runner_files()
    assert sorted(files) == ["node_runner.js", "python_runner.py", "r_runner.R"]
    assert all(len(content) > 1000 for content in files.values())


# --- a scripted runner ----------------------------------------------------------------------------
FAKE_RUNNER = textwrap.dedent(
    """\
    import json, os, sys
    control = os.fdopen(3, "rb")
    nonce = control.readline().split(b"nonce=")[1].split()[0]
    mark = b"\\0llmk:" + nonce + b":"

    def frame(fd, message, flag=b"."):
        data = json.dumps(message).encode()
        os.write(fd, mark + flag + b":%04x:" % len(data) + data)

    frame(4, {"type": "log", "message": "noise before ready"})
    os.write(1, b"startup chatter\\n")
    frame(4, {"type": "ready", "language": "fake", "protocol": 1, "pid": os.getpid()})
    for line in control:
        kind, _, rest = line.partition(b" ")
        if kind != b"execute":
            continue
        cell = rest.split(b"id=")[1].split()[0].decode()
        code = line.partition(b"\\t")[2].strip().decode()
        if code == "garble":
            os.write(1, mark + b"?:0002:{}")  # our nonce, a broken header
            frame(4, {"type": "execute_reply", "id": "stale", "status": "ok"})
            frame(4, {"type": "display_data", "data": {"text/plain": "x" * 2000}})
            frame(4, {"type": "display_data", "data": {"text/plain": "small"}})
        if code == "update":
            progress = {"transient": {"display_id": "p"}}
            frame(4, {"type": "display_data", "data": {"text/plain": "0%"}, **progress})
            frame(4, {"type": "update_display_data", "data": {"text/plain": "100%"}, **progress})
            os.write(1, b"gone soon\\n")
            frame(4, {"type": "clear_output", "wait": False})
            os.write(1, b"kept\\n")
            frame(4, {"type": "display_data", "data": {"text/plain": "after clear"}})
        if code == "hang":
            continue  # never replies
        frame(4, {"type": "execute_reply", "id": cell, "status": "ok", "execution_count": 1})
        frame(5, {"type": "sync", "id": cell})
    """
)


@pytest.fixture
def fake_kernel(tmp_path: Path) -> Kernel:
    path = tmp_path / "fake_runner.py"
    path.write_text(FAKE_RUNNER)
    argv = ["sh", "-c", LAUNCHER, "fake", PYTHON, str(path)]
    return Kernel(launcher(), argv, language="fake", max_results=1000, interrupt_grace=0.5)


def test_a_misbehaving_runner_is_contained(fake_kernel: Kernel) -> None:
    with fake_kernel:
        info = fake_kernel.info
        assert info is not None
        assert info.language == "fake"
        result = fake_kernel.execute("garble")
        assert result.results == [{"text/plain": "small"}]  # the big one was over max_results
        assert result.stdout.startswith("startup chatter\n")  # printed before ready: first cell
        assert "kernel protocol: malformed frame header" in result.warnings
        assert any("dropped" in w for w in result.warnings)
        assert result.execution_count == 1


def test_display_updates_and_clear_output(fake_kernel: Kernel) -> None:
    with fake_kernel:
        result = fake_kernel.execute("update")
        assert result.stdout == "kept\n"
        assert result.results == [{"text/plain": "after clear"}]


def test_a_runner_that_never_answers_is_killed_and_replaced(fake_kernel: Kernel) -> None:
    from llm_sandbox.exceptions import CellTimeoutError

    with fake_kernel:
        first = fake_kernel.info
        with pytest.raises(CellTimeoutError) as caught:
            fake_kernel.execute("hang", timeout=0.3)
        assert caught.value.kernel_restarted
        second = fake_kernel.info
        assert first is not None
        assert second is not None
        assert first.pid != second.pid
        assert fake_kernel.execute("fine").error is None


def test_a_runner_that_never_gets_ready_is_a_clear_error() -> None:
    argv = ["sh", "-c", LAUNCHER, "slow", "sh", "-c", "echo waiting; sleep 30", "x"]
    kernel = Kernel(launcher(), argv, language="slow", start_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(KernelError) as caught:
        kernel.start()
    assert time.monotonic() - started < 5
    assert "did not start within 0.5 s" in str(caught.value)
    assert "waiting" in caught.value.output


# --- real runners ---------------------------------------------------------------------------------
def test_restart_ends_a_running_cell(make_kernel: KernelFactory) -> None:
    kernel = make_kernel("python")
    kernel.execute("x = 1")
    timer = threading.Timer(0.5, kernel.restart)
    timer.start()
    result = kernel.execute("import time\ntime.sleep(30)")
    timer.join()
    assert result.error is not None
    assert result.error.name == "KernelRestarted"
    assert kernel.execute("x").error is not None  # a fresh kernel


def test_a_memory_limit_is_an_error_not_a_death() -> None:
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.skip("prlimit is not installed")
    argv = kernel_argv(
        "python",
        runner_dir=local_dir(),
        interpreter=[prlimit, f"--as={1 << 30}", *interpreter("python")],
    )
    with Kernel(launcher(), argv, language="python") as limited:
        result = limited.execute("kept = 1\nblock = bytearray(2 << 30)")
        assert result.error is not None
        assert result.error.name == "MemoryError"
        assert not result.kernel_restarted
        assert limited.execute("kept").results == [{"text/plain": "1"}]
