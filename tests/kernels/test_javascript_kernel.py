"""The JavaScript runner (Node.js) on the host's node: declarations that persist, top-level
await, modules, rich results, errors, interrupts."""

from __future__ import annotations

import base64
import json
import os
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kernel_support import KernelFactory
from llm_sandbox.exceptions import CellTimeoutError
from llm_sandbox.kernels import Kernel
from llm_sandbox.results import CellResult


def ok(result: CellResult) -> CellResult:
    assert result.error is None, result.error
    return result


def value(result: CellResult) -> object:
    ok(result)
    assert len(result.results) == 1, result.results
    return result.results[0]["text/plain"]


# --- declarations ---------------------------------------------------------------------------------
def test_let_and_const_persist_and_can_be_declared_again(js: Kernel) -> None:
    ok(js.execute("let x = 1"))
    assert value(js.execute("x")) == "1"
    assert value(js.execute("let x = 2; x")) == "2"
    ok(js.execute("const limit = 10"))
    assert value(js.execute("const limit = 20\nlimit + x")) == "22"
    ok(js.execute("let a = 1, b = [a, 2], { c, d: [e] } = { c: 3, d: [4] }"))
    assert value(js.execute("a + b[1] + c + e")) == "10"


def test_classes_and_functions_can_be_redefined(js: Kernel) -> None:
    ok(js.execute("class Point { constructor(x) { this.x = x } }\nfunction area() { return 1 }"))
    ok(
        js.execute(
            "class Point { constructor(x) { this.x = x * 2 } }\nfunction area() { return 2 }"
        )
    )
    assert value(js.execute("new Point(2).x + area()")) == "6"


def test_blocks_keep_their_own_scope(js: Kernel) -> None:
    assert (
        value(js.execute("let total = 0\nfor (let i = 0; i < 4; i++) { total += i }\ntotal")) == "6"
    )
    result = js.execute("i")
    assert result.error is not None
    assert result.error.name == "ReferenceError"


def test_top_level_await_keeps_declarations(js: Kernel) -> None:
    code = textwrap.dedent(
        """\
        const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
        const { left, right: [right] } = await Promise.resolve({ left: 1, right: [2] })
        await sleep(10)
        let later
        function helper() { return left + right }
        class Box { get v() { return helper() } }
        new Box().v
        """
    )
    assert value(js.execute(code)) == "3"
    assert value(js.execute("later === undefined && helper() + new Box().v")) == "6"
    assert value(js.execute("await sleep(1); left")) == "1"
    assert ok(js.execute("await sleep(1);")).results == []


def test_object_literals_and_completion_values(js: Kernel) -> None:
    assert value(js.execute("{ a: 1, b: 'two' }")) == "{ a: 1, b: 'two' }"
    assert value(js.execute("if (true) { 'yes' } else { 'no' }")) == "'yes'"
    assert ok(js.execute("let nothing = undefined; nothing")).results == []
    assert value(js.execute("[1, 2, { deep: { deeper: true } }]")) == (
        "[ 1, 2, { deep: { deeper: true } } ]"
    )
    assert value(js.execute("10n ** 20n")) == "100000000000000000000n"


def test_strings_comments_templates_and_regexes_are_not_rewritten(js: Kernel) -> None:
    code = textwrap.dedent(
        """\
        // let commented = 1
        /* const also = 2 */
        const s = "let x = 'no'" + `const ${'t'} = ${1 + 1}` + 'class Z {}'
        const re = /let [a-z]+ = \\//g
        s + ' | ' + re.source
        """
    )
    assert value(js.execute(code)) == "\"let x = 'no'const t = 2class Z {} | let [a-z]+ = \\\\/\""


# --- modules --------------------------------------------------------------------------------------
@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A working directory with a CommonJS package and an ESM-only package installed."""
    cjs = tmp_path / "node_modules" / "cjs-pkg"
    cjs.mkdir(parents=True)
    (cjs / "package.json").write_text(json.dumps({"name": "cjs-pkg", "main": "index.js"}))
    (cjs / "index.js").write_text("module.exports = { twice: (v) => v * 2 };\n")
    esm = tmp_path / "node_modules" / "esm-pkg"
    esm.mkdir(parents=True)
    (esm / "package.json").write_text(
        json.dumps({"name": "esm-pkg", "type": "module", "exports": {".": "./index.js"}})
    )
    (esm / "index.js").write_text("export const triple = (v) => v * 3;\nexport default 'esm';\n")
    (tmp_path / "local.mjs").write_text("export const local = 'here';\n")
    return tmp_path


def test_require_and_import_of_installed_packages(
    make_kernel: KernelFactory, project: Path
) -> None:
    kernel = make_kernel("javascript", cwd=str(project))
    assert value(kernel.execute("require('cjs-pkg').twice(21)")) == "42"
    assert value(kernel.execute("import { twice } from 'cjs-pkg'\ntwice(2)")) == "4"
    code = "import label, { triple as t } from 'esm-pkg';\nimport * as fs from 'node:fs'\n"
    assert value(kernel.execute(code + "label + t(3) + typeof fs.readFileSync")) == "'esm9function'"
    assert value(kernel.execute("(await import('./local.mjs')).local")) == "'here'"
    assert value(kernel.execute("t(1) + twice(1)")) == "5"


# --- rich results ---------------------------------------------------------------------------------
def test_display_sends_each_mime_type(js: Kernel) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 8).decode()
    result = ok(
        js.execute(
            "console.log('before')\n"
            "display.html('<b>hi</b>')\n"
            "display.markdown('*md*')\n"
            "display.latex('$x$')\n"
            "display.svg('<svg xmlns=\"http://www.w3.org/2000/svg\"><rect/></svg>')\n"
            "display.json({ a: [1, null] })\n"
            f"display.png(Buffer.from('{png}', 'base64'))\n"
            "display({ plain: true })\n"
            "console.log('after')\n"
            "'end'"
        )
    )
    assert result.stdout == "before\nafter\n"
    html, md, latex, svg, as_json, image, plain, last = result.results
    assert html == {"text/html": "<b>hi</b>"}
    assert md == {"text/markdown": "*md*"}
    assert latex == {"text/latex": "$x$"}
    assert ET.fromstring(str(svg["image/svg+xml"])).tag.endswith("svg")
    assert as_json["application/json"] == {"a": [1, None]}
    assert base64.b64decode(str(image["image/png"])).startswith(b"\x89PNG")
    assert plain == {"text/plain": "{ plain: true }"}
    assert last == {"text/plain": "'end'"}


def test_a_value_can_offer_a_rich_representation(js: Kernel) -> None:
    code = (
        "({ [Symbol.for('llm-sandbox.mime')]() { return { 'text/html': '<i>rich</i>' } },"
        " name: 'r' })"
    )
    (bundle,) = ok(js.execute(code)).results
    assert bundle["text/html"] == "<i>rich</i>"
    assert "name: 'r'" in str(bundle["text/plain"])


# --- errors ---------------------------------------------------------------------------------------
def test_errors_are_reported_and_the_kernel_lives_on(js: Kernel) -> None:
    ok(js.execute("const kept = 'still'"))
    result = js.execute("function inner() { throw new TypeError('bad input') }\ninner()")
    assert result.error is not None
    assert (result.error.name, result.error.value) == ("TypeError", "bad input")
    assert any("inner" in line for line in result.error.traceback)
    assert not any("node_runner" in line or "node:" in line for line in result.error.traceback)
    syntax = js.execute("let = = 1")
    assert syntax.error is not None
    assert syntax.error.name == "SyntaxError"
    thrown = js.execute("throw 42")
    assert thrown.error is not None
    assert (thrown.error.name, thrown.error.value) == ("Uncaught", "42")
    rejected = js.execute("await Promise.reject(new RangeError('no'))")
    assert rejected.error is not None
    assert rejected.error.name == "RangeError"
    assert value(js.execute("kept")) == "'still'"


def test_errors_after_the_cell_do_not_kill_the_kernel(js: Kernel) -> None:
    ok(js.execute("setTimeout(() => { throw new Error('late') }, 10)"))
    rejected = ok(js.execute("Promise.reject(new Error('unhandled'))"))
    time.sleep(0.3)
    result = ok(js.execute("'alive'"))  # output between cells comes with the next cell
    assert "Uncaught Error: late" in rejected.stderr + result.stderr
    assert "Unhandled promise rejection: Error: unhandled" in rejected.stderr + result.stderr


def test_output_of_child_processes_and_invalid_utf8(js: Kernel) -> None:
    result = ok(
        js.execute(
            "require('child_process').execSync('echo out; echo err >&2', { stdio: 'inherit' })\n"
            "process.stdout.write(Buffer.from([0x6f, 0x6b, 0xff, 0x0a]))"
        )
    )
    assert result.stdout == "out\nok\ufffd\n"
    assert result.stderr == "err\n"


# --- interrupts, timeouts, deaths -----------------------------------------------------------------
@pytest.mark.parametrize(
    "code",
    [
        "while (true) {}",
        "await new Promise(() => {})",
        "require('child_process').execSync('sleep 100')",
    ],
    ids=["busy-loop", "pending-promise", "subprocess"],
)
def test_a_timeout_interrupts_and_keeps_state(js: Kernel, code: str) -> None:
    ok(js.execute("var survivor = 7"))
    with pytest.raises(CellTimeoutError) as caught:
        js.execute(f"console.log('started')\n{code}", timeout=1)
    assert not caught.value.kernel_restarted
    assert caught.value.stdout == "started\n"
    assert value(js.execute("survivor")) == "7"


def test_a_loop_after_an_await_gets_a_fresh_kernel(make_kernel: KernelFactory) -> None:
    kernel = make_kernel("javascript")
    ok(kernel.execute("let lost = 1"))
    with pytest.raises(CellTimeoutError) as caught:
        kernel.execute("await null; while (true) {}", timeout=0.5)
    assert caught.value.kernel_restarted
    result = kernel.execute("lost")
    assert result.error is not None
    assert result.error.name == "ReferenceError"


def test_a_cell_that_exits_gets_a_fresh_kernel(make_kernel: KernelFactory) -> None:
    kernel = make_kernel("javascript")
    result = kernel.execute("let gone = 1; process.exit(4)")
    assert result.kernel_restarted
    assert result.error is not None
    assert result.error.name == "KernelDied"
    assert "status 4" in result.error.value
    assert kernel.execute("gone").error is not None


def test_a_closed_stdout_is_repaired_for_the_next_cell(js: Kernel) -> None:
    js.execute("require('fs').closeSync(1)")
    assert ok(js.execute("console.log('back')")).stdout == "back\n"


def test_the_worker_and_kernel_are_one_process_group(make_kernel: KernelFactory) -> None:
    kernel = make_kernel("javascript")
    info = kernel.info
    assert info is not None
    assert info.implementation.startswith("Node.js")
    assert value(kernel.execute("process.pid")) == str(info.pid)
    assert os.getpgid(info.pid or 0) == info.pid


def test_removing_the_sigint_listener_does_not_break_interrupts(js: Kernel) -> None:
    ok(js.execute("process.removeAllListeners('SIGINT')"))
    with pytest.raises(CellTimeoutError) as caught:
        js.execute("await new Promise(() => {})", timeout=1)
    assert not caught.value.kernel_restarted
    ok(js.execute("1"))
