"""Live output on every backend: chunks while the program runs, in order, capped like a plain
run, and the exit code exactly the program's. One session per backend for the module."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from llm_sandbox import ArtifactSandboxSession, ResourceLimits, SandboxSession


@pytest.fixture(scope="module")
def session(backend: str) -> Iterator[SandboxSession]:
    with SandboxSession(lang="python", backend=backend) as opened:
        yield opened


class Recorder:
    """Collects callback chunks with the time each arrived."""

    def __init__(self) -> None:
        self.chunks: list[tuple[float, str]] = []

    def __call__(self, text: str) -> None:
        self.chunks.append((time.monotonic(), text))

    @property
    def text(self) -> str:
        return "".join(text for _, text in self.chunks)


def test_first_chunk_arrives_while_the_program_still_runs(session: SandboxSession) -> None:
    out = Recorder()
    code = "import time\nprint('early', flush=True)\ntime.sleep(2)\nprint('late')"
    result = session.run(code, on_stdout=out)
    returned = time.monotonic()
    assert result.stdout == "early\nlate\n"
    assert out.text == result.stdout
    first_at, first = out.chunks[0]
    assert first.startswith("early")
    assert returned - first_at > 1.0  # delivered before the 2 s sleep, not at the end


def test_order_per_stream_and_exit_code(session: SandboxSession) -> None:
    out, err = Recorder(), Recorder()
    code = (
        "import sys\nfor i in range(200):\n"
        "    print(f'o{i}', flush=True)\n    print(f'e{i}', file=sys.stderr, flush=True)\n"
        "sys.exit(3)"
    )
    result = session.run(code, on_stdout=out, on_stderr=err)
    assert result.exit_code == 3
    assert out.text == result.stdout == "".join(f"o{i}\n" for i in range(200))
    assert err.text == result.stderr == "".join(f"e{i}\n" for i in range(200))


def test_streamed_output_is_capped_like_the_result(backend: str) -> None:
    limits = ResourceLimits(output=1000)
    with SandboxSession(lang="python", backend=backend, limits=limits) as capped:
        plain = capped.run("print('é' * 3000)")
        out = Recorder()
        streamed = capped.run("print('é' * 3000)", on_stdout=out)
    assert streamed.stdout == plain.stdout
    assert out.text == streamed.stdout
    assert len(streamed.stdout.encode()) == 1000
    assert streamed.stdout_truncated
    assert plain.stdout_truncated


def test_execute_command_streams_with_exact_exit_code(session: SandboxSession) -> None:
    out, err = Recorder(), Recorder()
    result = session.execute_command(
        "for i in 1 2 3; do echo $i; done; echo oops >&2; exit 4", on_stdout=out, on_stderr=err
    )
    assert (result.exit_code, out.text, err.text) == (4, "1\n2\n3\n", "oops\n")


def test_a_raising_callback_neither_kills_the_run_nor_the_session(
    session: SandboxSession,
) -> None:
    calls: list[str] = []

    def boom(text: str) -> None:
        calls.append(text)
        raise RuntimeError("callback bug")

    code = "import sys, time\nprint('a', flush=True)\ntime.sleep(0.2)\nprint('b')\nsys.exit(3)"
    result = session.run(code, on_stdout=boom, on_stderr=boom)
    assert (result.stdout, result.exit_code) == ("a\nb\n", 3)
    assert len(calls) == 1  # dropped after it raised (chunk boundaries are the engine's)
    assert calls[0].startswith("a")
    command = session.execute_command("echo x; exit 2", on_stdout=boom)
    assert (command.stdout, command.exit_code) == ("x\n", 2)
    assert session.run("print('still fine')").stdout == "still fine\n"


def test_artifact_session_streams_too(backend: str) -> None:
    out = Recorder()
    with ArtifactSandboxSession(lang="python", backend=backend, enable_plotting=False) as s:
        result = s.run("import sys\nprint('x')\nsys.exit(3)", on_stdout=out)
    assert (out.text, result.exit_code) == ("x\n", 3)
