"""The fork server (warm Python runs in pooled sandboxes), on every backend.

A forked run must be indistinguishable from a plain start for what a program reports (output,
exit code, tracebacks, argv), and the server must hold against the code it runs: it cannot be
signalled, read or impersonated, and nothing a run starts outlives it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import GVISOR, _require, backend_options, pool_of_one
from llm_sandbox import ConsoleOutput, ResourceLimits, SandboxSession
from llm_sandbox.exceptions import SandboxRuntimeError, SandboxTimeoutError

PROGRAMS = {
    "print": "print(1)",
    "argv and file": "import sys; print(sys.argv, __file__, __name__, sys.path[0])",
    "own source": "print(open(__file__).read())",
    "exit code": "import sys; sys.exit(3)",
    "exit message": "raise SystemExit('bye')",
    "exception": "def f():\n    1/0\nf()",
    "syntax error": "def f(:\n",
    "keyboard interrupt": "raise KeyboardInterrupt",
    "thread at exit": (
        "import threading, time\n"
        "def w():\n    time.sleep(0.1); print('thread done')\n"
        "threading.Thread(target=w).start()"
    ),
    "atexit": "import atexit; atexit.register(lambda: print('atexit'))",
    "stdin": "import sys; print(repr(sys.stdin.read()))",
    "cwd and home": "import os; print(os.getcwd(), os.environ['HOME'])",
    "unflushed": "import sys; sys.stdout.write('no newline')",
    "signal death": "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
}


@pytest.fixture(scope="module")
def pooled(backend: str) -> Iterator[SandboxSession]:
    with pool_of_one(backend) as pool, SandboxSession(pool=pool) as session:
        yield session


@pytest.fixture(scope="module")
def plain(backend: str) -> Iterator[SandboxSession]:
    with SandboxSession(lang="python", **backend_options(backend)) as session:
        yield session


def _forked(session: SandboxSession) -> bool:
    """Whether the session's runs come from the fork server: the run's parent is it."""
    result = session.run(
        "import os\n"
        "argv = open(f'/proc/{os.getppid()}/cmdline', 'rb').read().split(b'\\0')\n"
        "print(argv[1:2] == [b'-c'] and b\"fork server's program\" in argv[2])"
    )
    return result.stdout.strip() == "True"


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_a_forked_run_reports_what_a_plain_start_does(
    pooled: SandboxSession, plain: SandboxSession, name: str
) -> None:
    code = PROGRAMS[name]
    got = pooled.run(code, timeout=10)
    want = plain.run(code, timeout=10)

    def normalize(text: str) -> str:
        return text.replace("/2/", "/N/").replace("/1/", "/N/")

    assert got.exit_code == want.exit_code
    assert normalize(got.stderr).splitlines()[-3:] == normalize(want.stderr).splitlines()[-3:]
    if name not in ("argv and file", "own source"):
        assert got.stdout == want.stdout


def test_pooled_python_runs_are_forked(pooled: SandboxSession, backend: str) -> None:
    assert _forked(pooled)
    if backend == "local":  # the server is its sandbox's pid 1, alone with the run
        result = pooled.run(
            "import os; print(os.getppid(), len([p for p in os.listdir('/proc') if p.isdigit()]))"
        )
        assert result.stdout == "1 2\n"


def test_the_server_cannot_be_read_or_traced(pooled: SandboxSession) -> None:
    code = (
        "import os, ctypes\n"
        "server = os.getppid()\n"
        "for name in ('mem', 'fd/0', 'fd/1', 'environ'):\n"
        "    try:\n"
        "        open(f'/proc/{server}/{name}', 'rb').read(1); print('READ', name)\n"
        "    except OSError as e:\n"
        "        print('denied', name, e.errno)\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('ptrace', libc.ptrace(16, server, 0, 0))\n"  # PTRACE_ATTACH
    )
    result = pooled.run(code, timeout=10)
    assert "READ" not in result.stdout, result.stdout
    assert "ptrace -1" in result.stdout, result.stdout
    assert _forked(pooled)


def test_killing_the_server_is_said_and_leaves_nothing(
    pooled: SandboxSession, backend: str
) -> None:
    """The embedded backend's server is pid 1 of its namespace: no signal from inside reaches
    it. Elsewhere the code (same user) can kill it: the run says so, what it started is
    killed, and the next run is forked by a new server."""
    marker = f"1000.{uuid.uuid4().int % 10**9}"
    code = (
        "import os, signal, subprocess, sys, time\n"
        f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        "time.sleep(0.2)\n"
        "for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGSTOP, signal.SIGKILL):\n"
        "    os.kill(os.getppid(), sig)\n"
        "time.sleep(0.5)\n"
        "print('server alive')\n"
    )
    if backend == "local":
        assert pooled.run(code, timeout=10).stdout == "server alive\n"
    else:
        with pytest.raises(SandboxRuntimeError, match="ended the fork server"):
            pooled.run(code, timeout=10)
    left = pooled.run(
        "import os\n"
        "for p in os.listdir('/proc'):\n"
        "    try:\n"
        f"        print(open(f'/proc/{{p}}/cmdline', 'rb').read().count(b'{marker}'), end='')\n"
        "    except OSError:\n"
        "        pass\n",
        timeout=10,
    )
    assert "1" not in left.stdout
    assert _forked(pooled)


def test_forged_frames_are_only_output(pooled: SandboxSession) -> None:
    """The child never holds the server's pipe: bytes shaped like its frames are output."""
    forged = "import os, struct\nos.write(1, b'x' + struct.pack('>I', 1) + b'0\\n')\nprint('after')"
    result = pooled.run(forged, timeout=10)
    assert result.stdout.endswith("after\n")
    assert result.stdout.startswith("x")
    assert result.exit_code == 0


def test_nothing_a_run_starts_outlives_it(pooled: SandboxSession, backend: str) -> None:
    marker = f"1000.{uuid.uuid4().int % 10**9}"
    daemon = (
        "import os, signal, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    if os.fork() == 0:\n"
        f"        os.execvp('sleep', ['sleep', '{marker}'])\n"
        "    os._exit(0)\n"
        "time.sleep(0.2)\n"
        "open('/opt/llm-sandbox/code/left.txt', 'w').write('x')\n"
        "print('started')"
    )
    assert pooled.run(daemon, timeout=10).stdout == "started\n"
    after = pooled.run(
        "import os\n"
        "for p in os.listdir('/proc'):\n"
        "    try:\n"
        f"        print(open(f'/proc/{{p}}/cmdline', 'rb').read().count(b'{marker}'), end='')\n"
        "    except OSError:\n"
        "        pass\n"
        "print()\n"
        "print(os.listdir('/opt/llm-sandbox/code'))",
        timeout=10,
    )
    counts, listing = after.stdout.splitlines()
    assert "1" not in counts
    if backend == "local":  # the server's own code directory is emptied after each run
        assert "left.txt" not in listing


def test_a_timeout_kills_the_run_and_the_server_serves_on(
    backend: str, pooled: SandboxSession
) -> None:
    bomb = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('STARTED', flush=True)\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        time.sleep(0.001)\n"
    )
    started = time.monotonic()
    outcome = _outcome(pooled, bomb, timeout=1)
    if _gvisor_ended(backend, outcome):  # gVisor's kernel can die of a fork storm
        return
    assert isinstance(outcome, SandboxTimeoutError), outcome
    assert time.monotonic() - started < 2.0
    assert outcome.stdout.startswith("STARTED")
    assert pooled.run("print('next')").stdout == "next\n"
    assert _forked(pooled)


def test_gvisor_starts_runs_plainly_and_says_why() -> None:
    """Under gVisor the code can open its user's processes' /proc/<pid>/fd even when they are
    not dumpable, so a server's pipes would be the code's: no fork server there."""
    _require(GVISOR)
    with pool_of_one(GVISOR) as pool, SandboxSession(pool=pool) as session:
        assert not _forked(session)
        sandbox = session._sandbox
        assert sandbox is not None
        reason = sandbox.warm_runs(session._run_env())
        assert reason is not None
        assert "gVisor" in reason


def _outcome(session: SandboxSession, code: str, timeout: float) -> object:
    try:
        return session.run(code, timeout=timeout)
    except (SandboxTimeoutError, SandboxRuntimeError) as exc:
        return exc


def _gvisor_ended(backend: str, outcome: object) -> bool:
    """Whether gVisor's whole sandbox ended (its documented end under a fork storm or at the
    memory limit), which must be said so."""
    if not isinstance(outcome, SandboxRuntimeError):
        return False
    assert backend == GVISOR, outcome
    assert "open a new session" in str(outcome)
    return True


def test_out_of_memory_is_reported(backend: str) -> None:
    limits = ResourceLimits(memory=128 << 20)
    with pool_of_one(backend, limits=limits) as pool, SandboxSession(pool=pool) as session:
        assert _forked(session)
        result = _outcome(session, "x = bytearray(512 << 20)", timeout=30)
        if _gvisor_ended(backend, result):  # gVisor: the whole sandbox ends
            return
        assert isinstance(result, ConsoleOutput), result
        assert result.exit_code != 0
        assert result.out_of_memory or "MemoryError" in result.stderr
        assert session.run("print('next')").stdout == "next\n"


def test_a_closed_server_never_starts_again() -> None:
    """A sandbox closed while a reset is warming its server up again (a pool closing with
    resets in flight) must not get a new server."""
    from llm_sandbox.backends.forkserver import ForkServer

    started: list[object] = []

    def start(request: object) -> Any:
        started.append(request)
        raise AssertionError("a closed fork server started a process")

    forks = ForkServer(start, {}, "/tmp", mode="pid1")
    forks.close()
    assert forks.closed
    with pytest.raises(SandboxRuntimeError, match="closed"):
        forks.warm()
    assert not started
