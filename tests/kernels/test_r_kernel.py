"""The R runner on the host's R: values as at the prompt, plots as PNG, errors, interrupts."""

from __future__ import annotations

import base64
import json
import subprocess
import time

import pytest

from kernel_support import KernelFactory, interpreter
from llm_sandbox.exceptions import CellTimeoutError
from llm_sandbox.kernels import Kernel
from llm_sandbox.results import CellResult

PNG = b"\x89PNG\r\n\x1a\n"


def ok(result: CellResult) -> CellResult:
    assert result.error is None, result.error
    return result


def has_package(name: str) -> bool:
    command = [*interpreter("r"), "-e", f"library({name})"]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def test_values_are_printed_as_at_the_prompt(r: Kernel) -> None:
    result = ok(
        r.execute("x <- 1:3\nx\ninvisible(99)\ny <- x * 2\nprint('p')\nfactor(c('a', 'b'))")
    )
    assert result.stdout == '[1] 1 2 3\n[1] "p"\n'
    assert result.results == [{"text/plain": "[1] a b\nLevels: a b"}]
    frame = ok(r.execute("data.frame(n = 1:2, s = c('u', 'v'))"))
    assert frame.results == [{"text/plain": "  n s\n1 1 u\n2 2 v"}]
    assert ok(r.execute("y")).results == [{"text/plain": "[1] 2 4 6"}]


def test_s4_objects_are_shown(r: Kernel) -> None:
    code = (
        "setClass('Pt', representation(x = 'numeric'))\n"
        "setMethod('show', 'Pt', function(object) cat('<Pt', object@x, '>\\n'))\n"
        "new('Pt', x = 3)"
    )
    assert ok(r.execute(code)).results == [{"text/plain": "<Pt 3 >"}]


def test_state_and_functions_persist(r: Kernel) -> None:
    ok(r.execute("counter <- 0\nbump <- function() counter <<- counter + 1"))
    ok(r.execute("bump(); bump()"))
    assert ok(r.execute("counter")).results == [{"text/plain": "[1] 2"}]
    ok(r.execute("rm(list = ls())"))
    assert ok(r.execute("exists('display_html')")).results == [{"text/plain": "[1] TRUE"}]


def test_errors_and_warnings_read_like_the_prompt(r: Kernel) -> None:
    ok(r.execute("kept <- 'yes'"))
    top = r.execute("cat('partial\\n')\nstop('boom')\ncat('never\\n')")
    assert top.error is not None
    assert (top.error.name, top.error.value) == ("simpleError", "boom")
    assert top.error.traceback == ["Error: boom"]
    assert top.stdout == "partial\n"
    nested = r.execute("f <- function(v) g(v)\ng <- function(v) stop('bad ', v)\nf(1)")
    assert nested.error is not None
    assert nested.error.traceback == ["Error in g(v) : bad 1", "Calls: f -> g"]
    warned = ok(r.execute("log(-1)\nwarning('careful')\n1"))
    assert warned.stderr == (
        "Warning message:\nIn log(-1) : NaNs produced\nWarning message:\ncareful\n"
    )
    assert warned.stdout == "[1] NaN\n"
    parse = r.execute("1 +")
    assert parse.error is not None
    assert parse.error.name == "ParseError"
    custom = r.execute(
        "stop(structure(class = c('myError', 'error', 'condition'),\n"
        "               list(message = 'm', call = NULL)))"
    )
    assert custom.error is not None
    assert custom.error.name == "myError"
    assert ok(r.execute("kept")).results == [{"text/plain": '[1] "yes"'}]


def test_base_plots_come_back_as_png(r: Kernel) -> None:
    result = ok(r.execute("plot(1:10)\nhist(rnorm(50))\ncat('drawn\\n')"))
    assert result.stdout == "drawn\n"
    assert len(result.results) == 2
    for bundle in result.results:
        assert base64.b64decode(str(bundle["image/png"])).startswith(PNG)
    assert ok(r.execute("1")).results == [{"text/plain": "[1] 1"}]  # no plot left behind


def test_ggplot2_plots_come_back_as_png(r: Kernel) -> None:
    if not has_package("ggplot2"):
        pytest.skip("ggplot2 is not installed for R here")
    result = ok(
        r.execute(
            "library(ggplot2)\n"
            "p <- ggplot(data.frame(a = 1:3, b = c(2, 1, 3)), aes(a, b)) + geom_line()\n"
            "print(p)\n"
            "p + geom_point()"
        )
    )
    assert len(result.results) == 2
    for bundle in result.results:
        data = base64.b64decode(str(bundle["image/png"]))
        assert data.startswith(PNG)
        assert len(data) > 1000


def test_display_functions(r: Kernel) -> None:
    result = ok(
        r.execute(
            "display_html('<b>x</b>')\ndisplay_markdown('*m*')\ndisplay_latex('$y$')\n"
            "display_json('{\"a\": [1, null]}')\ndisplay(1:2)\n"
            "display_svg('<svg xmlns=\"http://www.w3.org/2000/svg\"/>')"
        )
    )
    html, md, latex, as_json, plain, svg = result.results
    assert html == {"text/html": "<b>x</b>"}
    assert md == {"text/markdown": "*m*"}
    assert latex == {"text/latex": "$y$"}
    assert as_json["application/json"] == {"a": [1, None]}
    assert plain == {"text/plain": "[1] 1 2"}
    assert svg == {"image/svg+xml": '<svg xmlns="http://www.w3.org/2000/svg"/>'}


def test_text_survives_the_json_encoding(r: Kernel) -> None:
    code = 'c("quote \\" backslash \\\\ tab \\t é ✓", "\\001ctl")'
    (bundle,) = ok(r.execute(code)).results
    text = str(bundle["text/plain"])
    assert "é ✓" in text
    json.dumps(bundle)
    raw = ok(r.execute("cat(rawToChar(as.raw(c(0x6f, 0x6b, 0xff, 0x0a))))"))
    assert raw.stdout == "ok\ufffd\n"


@pytest.mark.parametrize(
    "code",
    ["repeat {}", "Sys.sleep(100)", "system('sleep 100')"],
    ids=["busy-loop", "sleep", "subprocess"],
)
def test_a_timeout_interrupts_and_keeps_state(r: Kernel, code: str) -> None:
    ok(r.execute("survivor <- 5"))
    started = time.monotonic()
    with pytest.raises(CellTimeoutError) as caught:
        r.execute(f"cat('started\\n')\n{code}", timeout=1)
    assert time.monotonic() - started < 2.5
    assert not caught.value.kernel_restarted
    assert caught.value.stdout == "started\n"
    assert ok(r.execute("survivor")).results == [{"text/plain": "[1] 5"}]


def test_a_cell_that_swallows_interrupts_gets_a_fresh_kernel(make_kernel: KernelFactory) -> None:
    kernel = make_kernel("r")
    ok(kernel.execute("lost <- 1"))
    with pytest.raises(CellTimeoutError) as caught:
        kernel.execute("repeat tryCatch(Sys.sleep(1), interrupt = function(e) NULL)", timeout=0.5)
    assert caught.value.kernel_restarted
    assert kernel.execute("lost").error is not None


def test_quit_gets_a_fresh_kernel(make_kernel: KernelFactory) -> None:
    kernel = make_kernel("r")
    result = kernel.execute("gone <- 1\nquit(save = 'no', status = 3)")
    assert result.kernel_restarted
    assert result.error is not None
    assert result.error.name == "KernelDied"
    assert kernel.execute("gone").error is not None


def test_closing_all_connections_leaves_the_kernel_working(r: Kernel) -> None:
    ok(r.execute("kept2 <- 2\ncloseAllConnections()"))
    assert ok(r.execute("kept2")).results == [{"text/plain": "[1] 2"}]
    with pytest.raises(CellTimeoutError) as caught:  # interrupts still reach R
        r.execute("Sys.sleep(100)", timeout=1)
    assert not caught.value.kernel_restarted


def test_an_interrupt_between_cells_is_absorbed(r: Kernel) -> None:
    ok(r.execute("1"))
    r._send(r._conn, b"interrupt id=999\n")  # type: ignore[arg-type]  # a stray one
    time.sleep(0.3)
    result = ok(r.execute("s <- 0; for (i in 1:200000) s <- s + i; s"))
    assert result.results == [{"text/plain": "[1] 20000100000"}]
