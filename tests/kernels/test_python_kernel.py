"""The Python runner (IPython) on the host's interpreter: state, rich results, errors, limits."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from kernel_support import PYTHON, KernelFactory
from llm_sandbox.exceptions import CellTimeoutError, KernelError, SessionStateError
from llm_sandbox.kernels import InstallReply, InstallRequest, Kernel, kernel_argv
from llm_sandbox.kernels.protocol import marker
from llm_sandbox.kernels.runners import local_dir
from llm_sandbox.kernels.subprocess_channel import SubprocessChannel
from llm_sandbox.results import CellResult

PNG = b"\x89PNG\r\n\x1a\n"


def has(module: str) -> bool:
    probe = [PYTHON, "-c", f"import {module}"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def ok(result: CellResult) -> CellResult:
    assert result.error is None, result.error
    return result


# --- state ----------------------------------------------------------------------------------------
def test_state_persists_between_cells(py: Kernel) -> None:
    ok(py.execute("x = 41\nimport math\ndef twice(v):\n    return 2 * v"))
    result = ok(py.execute("x += 1\nprint(twice(x), math.pi > 3)\nx"))
    assert result.stdout == "84 True\n"
    assert result.results == [{"text/plain": "42"}]
    assert result.exit_code == 0
    assert result.success()


def test_open_files_persist(py: Kernel, tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "notes.txt")
    ok(py.execute(f"f = open({path!r}, 'w')\nf.write('one ')"))
    ok(py.execute("f.write('two')\nf.close()"))
    with open(path) as f:
        assert f.read() == "one two"


def test_execution_count_counts_cells(py: Kernel) -> None:
    first = py.execute("1")
    second = py.execute("2")
    assert first.execution_count is not None
    assert second.execution_count == first.execution_count + 1
    assert second.results == [{"text/plain": "2"}]


def test_ipython_semantics_magics_and_top_level_await(py: Kernel) -> None:
    timed = ok(py.execute("%time total = sum(range(1000))"))
    assert "Wall time" in timed.stdout
    awaited = ok(py.execute("import asyncio\nawait asyncio.sleep(0.01)\ntotal"))
    assert awaited.results == [{"text/plain": "499500"}]
    quiet = ok(py.execute("total;"))
    assert quiet.results == []
    assert ok(py.execute("_ + 1")).results == [{"text/plain": "499501"}]


# --- rich results ---------------------------------------------------------------------------------
def test_display_and_last_value_in_order_with_prints(py: Kernel) -> None:
    result = ok(
        py.execute(
            "from IPython.display import display, HTML, Markdown, Latex\n"
            "print('a')\n"
            "display(HTML('<b>bold</b>'))\n"
            "print('b')\n"
            "display(Markdown('*md*'), Latex(r'$x^2$'))\n"
            "'last'"
        )
    )
    assert result.stdout == "a\nb\n"
    assert [sorted(b) for b in result.results] == [
        ["text/html", "text/plain"],
        ["text/markdown", "text/plain"],
        ["text/latex", "text/plain"],
        ["text/plain"],
    ]
    assert result.results[0]["text/html"] == "<b>bold</b>"
    assert result.results[1]["text/markdown"] == "*md*"
    assert result.results[2]["text/latex"] == "$x^2$"
    assert result.results[3] == {"text/plain": "'last'"}


def test_json_svg_png_jpeg_bundles(py: Kernel) -> None:
    png = base64.b64encode(PNG + b"\0\0\0\rIHDR" + b"\0" * 17).decode()
    jpeg = base64.b64encode(b"\xff\xd8\xff\xe0\0\x10JFIF\0" + b"\0" * 20 + b"\xff\xd9").decode()
    result = ok(
        py.execute(
            "import base64\n"
            "from IPython.display import JSON, SVG, Image, display\n"
            "display(JSON({'a': [1, 2], 'b': None}))\n"
            'display(SVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4">'
            '<rect width="4" height="4"/></svg>\'))\n'
            f"display(Image(data=base64.b64decode('{png}'), format='png'))\n"
            f"display(Image(data=base64.b64decode('{jpeg}'), format='jpeg'))\n"
        )
    )
    as_json, svg, image, photo = result.results
    assert as_json["application/json"] == {"a": [1, 2], "b": None}
    json.dumps(as_json["application/json"])
    root = ET.fromstring(str(svg["image/svg+xml"]))
    assert root.tag.endswith("svg")
    assert base64.b64decode(str(image["image/png"])).startswith(PNG)
    assert base64.b64decode(str(photo["image/jpeg"])).startswith(b"\xff\xd8")
    assert [p.format for p in result.plots] == ["svg", "png", "jpeg"]


@pytest.mark.skipif(not has("matplotlib"), reason="matplotlib is not installed for the kernel")
def test_matplotlib_figures_come_back_as_png(py: Kernel) -> None:
    result = ok(
        py.execute(
            "import matplotlib.pyplot as plt\n"
            "plt.plot([1, 2, 3])\n"
            "print('before show')\n"
            "plt.show()\n"
            "print('after show')\n"
            "fig = plt.figure()\n"
            "plt.bar([1, 2], [3, 4])\n"
        )
    )
    assert result.stdout == "before show\nafter show\n"
    images = [b for b in result.results if "image/png" in b]
    assert len(images) == 2  # the one shown, and the one left open at the end of the cell
    for bundle in images:
        assert base64.b64decode(str(bundle["image/png"])).startswith(PNG)
        assert str(bundle["text/plain"]).startswith("<Figure size")
    assert ok(py.execute("len(plt.get_fignums())")).results == [{"text/plain": "0"}]


@pytest.mark.skipif(not has("pandas"), reason="pandas is not installed for the kernel")
def test_a_dataframe_is_html_and_plain_text(py: Kernel) -> None:
    result = ok(py.execute("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})"))
    (bundle,) = result.results
    assert "<table" in str(bundle["text/html"])
    assert "a  b" in str(bundle["text/plain"])


def test_callbacks_receive_output_and_results_as_they_come(py: Kernel) -> None:
    seen: list[tuple[str, object]] = []
    result = py.execute(
        "import sys, time\nprint('one', flush=True)\ntime.sleep(0.2)\n"
        "print('err', file=sys.stderr)\ndisplay({'text/plain': 'shown'}, raw=True)\n7",
        on_stdout=lambda text: seen.append(("out", text)),
        on_stderr=lambda text: seen.append(("err", text)),
        on_result=lambda bundle: seen.append(("result", bundle)),
    )
    merged: list[tuple[str, object]] = []
    for kind, value in seen:  # text may come in several pieces
        if merged and kind != "result" and merged[-1][0] == kind:
            merged[-1] = (kind, str(merged[-1][1]) + str(value))
        else:
            merged.append((kind, value))
    assert merged == [
        ("out", "one\n"),
        ("err", "err\n"),
        ("result", {"text/plain": "shown"}),
        ("result", {"text/plain": "7"}),
    ]
    assert result.stdout == "one\n"


# --- errors ---------------------------------------------------------------------------------------
def test_an_error_is_reported_and_the_kernel_lives_on(py: Kernel) -> None:
    ok(py.execute("kept = 'still here'"))
    result = py.execute("print('partial')\ndef f():\n    return 1 / 0\nf()")
    assert result.error is not None
    assert result.error.name == "ZeroDivisionError"
    assert result.error.value == "division by zero"
    assert any("1 / 0" in line for line in result.error.traceback)
    assert "\x1b[" not in "".join(result.error.traceback)  # no colours
    assert result.exit_code == 1
    assert not result.success()
    assert result.stdout == "partial\n"
    assert ok(py.execute("kept")).results == [{"text/plain": "'still here'"}]


def test_a_syntax_error_is_an_error_result(py: Kernel) -> None:
    result = py.execute("def broken(:\n    pass")
    assert result.error is not None
    assert result.error.name == "SyntaxError"
    ok(py.execute("1"))


def test_system_exit_and_input_are_errors_not_deaths(py: Kernel) -> None:
    exited = py.execute("raise SystemExit(3)")
    assert exited.error is not None
    assert exited.error.name == "SystemExit"
    asked = py.execute("input('name? ')")
    assert asked.error is not None
    assert asked.error.name == "EOFError"
    assert not asked.kernel_restarted
    ok(py.execute("1"))


# --- output ---------------------------------------------------------------------------------------
def test_subprocess_output_belongs_to_its_cell(py: Kernel) -> None:
    result = ok(py.execute("import os\nos.system('echo out; echo err >&2')\nprint('py')"))
    assert result.stdout == "out\npy\n"
    assert result.stderr == "err\n"


def test_forged_frames_in_output_are_just_output(py: Kernel) -> None:
    forged = marker("0" * 32).decode() + '.:0020:{"type":"execute_reply"}'
    result = ok(py.execute(f"print({forged!r})\nimport os\nos.system('printf \"\\\\0llmk:x\"')"))
    assert result.stdout == forged + "\n" + "\0llmk:x"
    assert result.warnings == []


def test_invalid_utf8_output_is_replaced(py: Kernel) -> None:
    result = ok(py.execute("import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe end\\n')"))
    assert result.stdout == "ok \ufffd\ufffd end\n"


def test_a_closed_or_replaced_stdout_is_repaired_for_the_next_cell(py: Kernel) -> None:
    for breakage in (
        "import os\nos.close(1)",
        "import sys\nsys.stdout = None",
        "sys.stdout.close()",
    ):
        py.execute(breakage)
        assert ok(py.execute("print('back')")).stdout == "back\n"
    py.execute("import os\nos.close(2)")
    assert ok(py.execute("import sys\nprint('e', file=sys.stderr)")).stderr == "e\n"


def test_a_flood_is_capped_and_the_kernel_stays_usable(make_kernel: KernelFactory) -> None:
    kernel = make_kernel("python", max_output=1 << 20)
    result = ok(
        kernel.execute("import sys\nfor _ in range(50):\n    sys.stdout.write('x' * (1 << 20))")
    )
    assert result.stdout_truncated
    assert result.stdout == "x" * (1 << 20)
    assert ok(kernel.execute("print('after')")).stdout == "after\n"


# --- interrupts, timeouts, deaths -----------------------------------------------------------------
@pytest.mark.parametrize(
    "code",
    ["while True:\n    pass", "import time\ntime.sleep(100)", "import os\nos.system('sleep 100')"],
    ids=["busy-loop", "sleep", "subprocess"],
)
def test_a_timeout_interrupts_and_keeps_state(py: Kernel, code: str) -> None:
    ok(py.execute("survivor = 123"))
    started = time.monotonic()
    with pytest.raises(CellTimeoutError) as caught:
        py.execute(f"print('started')\n{code}", timeout=1)
    assert time.monotonic() - started < 2.5
    assert not caught.value.kernel_restarted
    assert caught.value.timeout == 1
    assert caught.value.stdout == "started\n"
    assert "kept its state" in str(caught.value)
    assert ok(py.execute("survivor")).results == [{"text/plain": "123"}]


def test_a_cell_that_swallows_interrupts_gets_a_fresh_kernel(make_kernel: KernelFactory) -> None:
    kernel = make_kernel("python")
    ok(kernel.execute("lost = 1"))
    with pytest.raises(CellTimeoutError) as caught:
        kernel.execute(
            "import time\nwhile True:\n    try:\n        time.sleep(1)\n"
            "    except KeyboardInterrupt:\n        pass",
            timeout=0.5,
        )
    assert caught.value.kernel_restarted
    assert "fresh kernel" in str(caught.value)
    result = kernel.execute("lost")
    assert result.error is not None
    assert result.error.name == "NameError"
    assert [h.status for h in kernel.history][-2:] == ["timeout", "error"]


def test_interrupt_from_another_thread(py: Kernel) -> None:
    timer = threading.Timer(0.5, py.interrupt)
    timer.start()
    result = py.execute("import time\ntime.sleep(30)", timeout=20)
    timer.join()
    assert result.error is not None
    assert result.error.name == "KeyboardInterrupt"
    py.interrupt()  # idle: nothing happens
    ok(py.execute("1"))


@pytest.mark.parametrize(
    "code", ["import os\nos._exit(3)", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"]
)
def test_a_cell_that_kills_its_kernel_gets_a_fresh_one(
    make_kernel: KernelFactory, code: str
) -> None:
    kernel = make_kernel("python")
    ok(kernel.execute("gone = 1"))
    result = kernel.execute(f"print('going')\n{code}")
    assert result.kernel_restarted
    assert result.error is not None
    assert result.error.name == "KernelDied"
    assert "fresh kernel" in result.error.value
    assert result.stdout == "going\n"
    after = kernel.execute("gone")
    assert after.error is not None
    assert after.error.name == "NameError"
    assert not after.kernel_restarted


def test_exit_restarts_the_kernel(make_kernel: KernelFactory) -> None:
    kernel = make_kernel("python")
    result = kernel.execute("x = 1\nexit()")
    assert result.kernel_restarted
    assert any("exit()" in w for w in result.warnings)
    assert kernel.execute("x").error is not None


def test_a_kernel_that_died_between_cells_is_replaced(make_kernel: KernelFactory) -> None:
    kernel = make_kernel("python")
    info = kernel.info
    assert info is not None
    assert info.pid is not None
    os.kill(info.pid, 9)
    time.sleep(0.2)
    result = ok(kernel.execute("print('fresh')"))
    assert result.kernel_restarted
    assert result.stdout == "fresh\n"
    assert any("had stopped" in w for w in result.warnings)


def test_concurrent_cells_run_one_at_a_time(py: Kernel) -> None:
    results: dict[str, CellResult] = {}

    def cell(name: str) -> None:
        code = f"import time\nprint('{name} start')\ntime.sleep(0.3)\nprint('{name} end')"
        results[name] = py.execute(code)

    threads = [threading.Thread(target=cell, args=(name,)) for name in "AB"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in "AB":
        assert results[name].stdout == f"{name} start\n{name} end\n"


def test_forked_children_print_but_never_speak_the_protocol(py: Kernel) -> None:
    result = ok(
        py.execute(
            "import multiprocessing as mp\n"
            "def square(v):\n    print('child', v, flush=True)\n    return v * v\n"
            "with mp.get_context('fork').Pool(2) as pool:\n"
            "    values = pool.map(square, range(4))\n"
            "values"
        )
    )
    assert result.results == [{"text/plain": "[0, 1, 4, 9]"}]
    assert sorted(result.stdout.splitlines()) == [f"child {v}" for v in range(4)]


# --- installs, history, lifecycle -----------------------------------------------------------------
def test_pip_install_is_routed_to_the_session(make_kernel: KernelFactory) -> None:
    asked: list[InstallRequest] = []

    def install(request: InstallRequest) -> InstallReply:
        asked.append(request)
        return InstallReply(exit_code=0, stdout="Successfully installed tiny-1.0\n")

    kernel = make_kernel("python", on_install=install)
    result = ok(kernel.execute("%pip install -q tiny 'other>=2'"))
    assert asked == [InstallRequest("pip", ["tiny", "other>=2"], ["-q"])]
    assert "Successfully installed tiny-1.0" in result.stdout
    assert ok(kernel.execute("_exit_code")).results == [{"text/plain": "0"}]


def test_pip_install_without_a_session_says_so(py: Kernel) -> None:
    result = ok(py.execute("%pip install something"))
    assert "no session to install" in result.stderr


def test_history_is_kept_and_bounded(make_kernel: KernelFactory) -> None:
    kernel = make_kernel("python", history_size=2)
    kernel.execute("a = 1")
    kernel.execute("1 / 0")
    kernel.execute("a", silent=True)
    kernel.execute("b = 2")
    assert [(h.code, h.status) for h in kernel.history] == [("1 / 0", "error"), ("b = 2", "ok")]
    kernel.restart()
    assert len(kernel.history) == 2
    assert kernel.execute("a").error is not None


def test_close_ends_the_kernel(make_kernel: KernelFactory) -> None:
    kernel = make_kernel("python")
    info = kernel.info
    assert info is not None
    assert info.implementation.startswith("IPython")
    kernel.close()
    kernel.close()
    with pytest.raises(SessionStateError):
        kernel.execute("1")
    assert info.pid is not None
    assert gone(info.pid)


def gone(pid: int) -> bool:
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_missing_ipython_is_a_clear_error() -> None:
    bare = "/usr/bin/python3"
    probe = subprocess.run([bare, "-c", "import IPython"], capture_output=True, check=False)
    if not os.path.exists(bare) or probe.returncode == 0:
        pytest.skip("no Python without IPython on this host")
    argv = kernel_argv("python", runner_dir=local_dir(), interpreter=[bare])
    kernel = Kernel(SubprocessChannel, argv, language="python")
    with pytest.raises(KernelError) as caught:
        kernel.start()
    assert caught.value.package == "ipython"
    assert "pip install ipython" in str(caught.value)


def test_an_interpreter_that_does_not_start_is_a_clear_error() -> None:
    argv = kernel_argv("python", runner_dir=local_dir(), interpreter=["no-such-python"])
    kernel = Kernel(SubprocessChannel, argv, language="python", start_timeout=10)
    with pytest.raises(KernelError) as caught:
        kernel.start()
    assert "exited before it was ready" in str(caught.value)
    assert "no-such-python" in caught.value.output


def test_a_cell_that_ignores_sigint_is_still_interruptible_next_time(py: Kernel) -> None:
    ok(py.execute("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)"))
    with pytest.raises(CellTimeoutError) as caught:
        py.execute("while True:\n    pass", timeout=1)
    assert not caught.value.kernel_restarted
