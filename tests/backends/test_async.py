"""The async API against real sandboxes, under asyncio and trio, on every backend (and gVisor).

Results equal the sync API's for the same code; cancelling the awaiting task (or anyio's
`fail_after`, or `asyncio.wait_for`) kills every process of the run within a second, checked
from the host (`hostile.footprint`), and the session stays usable; callbacks may be
coroutines; sessions run concurrently; errors are the sync API's types; closing the session or
the event loop while a run is in flight leaves nothing running.

Most tests share one sync session per backend and use its async face
(`AsyncSandboxSession.wrap`), which is also how a pool's sessions are served.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import backend_options
from hostile import (
    GVISOR,
    _cgroup_procs,
    _descendants,
    _engine,
    _main_pid,
    container_name,
    footprint,
)
from llm_sandbox import AsyncSandboxSession, SandboxSession
from llm_sandbox.backends.local.sandbox import LocalSandbox
from llm_sandbox.exceptions import (
    CommandEmptyError,
    ConfigurationError,
    NotOpenSessionError,
    SandboxError,
    SandboxInterruptedError,
    SandboxTimeoutError,
    SessionStateError,
)

ALSO_GVISOR = True
KILLED_WITHIN = 1.0

CHILDREN = (
    "import subprocess, time\n"
    "for _ in range(3):\n"
    "    subprocess.Popen(['sleep', '600'])\n"
    "print('STARTED', flush=True)\n"
    "time.sleep(600)\n"
)
SNIPPETS = [
    "print('hello')",
    "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)",
    "print('x' * 100000)",
    "1/0",
]


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def shared(backend: str) -> Iterator[SandboxSession]:
    """One sync session per backend; each test uses its async face."""
    with SandboxSession(lang="python", **backend_options(backend)) as session:
        yield session


@pytest.fixture
def session(shared: SandboxSession) -> AsyncSandboxSession:
    return AsyncSandboxSession.wrap(shared)


def host_pids(session: SandboxSession, backend: str) -> set[int]:
    """The host processes of the session right now: for the embedded backend its holder and
    our own children (its runs); for an engine its container's processes (gVisor: its
    sandbox's processes on the host)."""
    sandbox: Any = session._sandbox
    if backend == "local":
        holder = sandbox._holder.pid
        others: set[int] = set()
        for obj in gc.get_objects():  # the other sessions' holders (and their trees)
            if isinstance(obj, LocalSandbox) and obj._holder and obj._holder.pid != holder:
                others |= {obj._holder.pid, *_descendants(obj._holder.pid)}
        return {holder, *_descendants(holder), *_descendants(os.getpid())} - others
    pid = _main_pid(_engine(backend), container_name(session, backend))
    if backend == GVISOR:
        return {pid, *_descendants(pid)}
    procs = _cgroup_procs(pid)
    return {pid} | ({int(p) for p in procs.read_text().split()} if procs else set())


def _running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie (dead, its parent has yet to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def alive(pids: set[int], grace: float = 3.0) -> set[int]:
    """Those of `pids` still alive after at most `grace` seconds (engines reap
    asynchronously)."""
    deadline = time.monotonic() + grace
    while True:
        left = {pid for pid in pids if _running(pid)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def _same(result: Any) -> dict[str, Any]:
    """A result's fields but its wall time, with the run's number out of code paths."""
    fields = dataclasses.asdict(result)
    fields.pop("wall_time")
    fields["stderr"] = re.sub(r"/code/\d+/", "/code/N/", fields["stderr"])
    return fields


class Started:
    """An on_stdout coroutine that notes when the program printed STARTED."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.text = ""

    async def __call__(self, text: str) -> None:
        self.text += text
        if "STARTED" in self.text:
            self.event.set()


@pytest.mark.anyio
async def test_results_equal_the_sync_apis(
    session: AsyncSandboxSession, shared: SandboxSession, tmp_path: Path
) -> None:
    for code in SNIPPETS:
        assert _same(await session.run(code)) == _same(shared.run(code)), code
    line = "echo $((6 * 7)); echo no >&2; exit 4"
    assert _same(await session.execute_command(line)) == _same(shared.execute_command(line))
    assert _same(await session.run("print(input())", stdin="fed")) == _same(
        shared.run("print(input())", stdin="fed")
    )
    source = tmp_path / "in.txt"
    source.write_text("round trip")
    await session.copy_to_runtime(source, "async/in.txt")
    written = await session.copy_from_runtime("async/in.txt", tmp_path / "out.txt")
    assert [p.read_text() for p in written] == ["round trip"]
    data, stat = await session.get_archive("async/in.txt")
    assert (data, stat) == shared.get_archive("async/in.txt")


@pytest.mark.anyio
async def test_callbacks_may_be_coroutines_or_functions(session: AsyncSandboxSession) -> None:
    out: list[str] = []
    err: list[str] = []

    async def on_stdout(text: str) -> None:
        await anyio.sleep(0)
        out.append(text)

    code = (
        "import sys, time\nfor i in range(3):\n    print(i, flush=True)\n"
        "    print('e', i, file=sys.stderr, flush=True)\n    time.sleep(0.05)\n"
    )
    result = await session.run(code, on_stdout=on_stdout, on_stderr=err.append)
    assert "".join(out) == result.stdout == "0\n1\n2\n"
    assert "".join(err) == result.stderr


async def _cancel_after_start(
    session: AsyncSandboxSession, shared: SandboxSession, backend: str
) -> float:
    """Start CHILDREN, cancel its task once it printed STARTED; seconds the cancel took.
    Every host process the run added is gone by the time the cancelled task returns."""
    before = host_pids(shared, backend)
    inside_before = footprint(shared, backend)
    during: set[int] = set()
    started = Started()
    cancelled_at = 0.0
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            with pytest.raises(anyio.get_cancelled_exc_class()):
                await session.run(CHILDREN, on_stdout=started)

        tg.start_soon(run)
        with anyio.fail_after(60):
            await started.event.wait()
        during = host_pids(shared, backend) - before
        cancelled_at = time.monotonic()
        tg.cancel_scope.cancel()
    took = time.monotonic() - cancelled_at
    if backend != GVISOR:  # gVisor runs them inside its own kernel: counted inside instead
        assert len(during) >= 4, during
        assert not alive(during, grace=0), "processes of the cancelled run are alive"
    assert footprint(shared, backend) <= inside_before
    return took


@pytest.mark.anyio
async def test_cancelling_the_task_kills_every_process_of_the_run(
    session: AsyncSandboxSession, shared: SandboxSession, backend: str
) -> None:
    took = await _cancel_after_start(session, shared, backend)
    assert took < KILLED_WITHIN
    assert (await session.run("print('usable')")).stdout == "usable\n"


@pytest.mark.anyio
async def test_fail_after_and_wait_for_behave_like_timeout(
    session: AsyncSandboxSession, shared: SandboxSession, backend: str, anyio_backend: str
) -> None:
    before = footprint(shared, backend)
    started_at = time.monotonic()
    with pytest.raises(TimeoutError) as info, anyio.fail_after(1.0):
        await session.run(CHILDREN)
    assert not isinstance(info.value, SandboxError)
    assert time.monotonic() - started_at < 1.0 + KILLED_WITHIN
    assert footprint(shared, backend) <= before
    if anyio_backend == "asyncio":
        with pytest.raises(TimeoutError) as waited:
            await asyncio.wait_for(session.run(CHILDREN), 1.0)
        assert type(waited.value) is TimeoutError
        assert footprint(shared, backend) <= before
    with pytest.raises(SandboxTimeoutError) as ours:
        await session.run(CHILDREN, timeout=1.0)
    assert "STARTED" in ours.value.stdout
    assert footprint(shared, backend) <= before
    assert (await session.run("print('usable')")).stdout == "usable\n"


@pytest.mark.anyio
async def test_errors_are_the_sync_apis_types(
    session: AsyncSandboxSession, shared: SandboxSession, tmp_path: Path
) -> None:
    def sync_error(call: Any) -> type[BaseException]:
        with pytest.raises(SandboxError) as info:
            call()
        return type(info.value)

    async def async_error(call: Any) -> type[BaseException]:
        with pytest.raises(SandboxError) as info:
            await call()
        return type(info.value)

    cases: list[tuple[str, tuple[Any, ...], dict[str, Any], type[BaseException]]] = [
        ("run", (42,), {}, ConfigurationError),
        ("execute_command", ("  ",), {}, CommandEmptyError),
        ("run", ("print(1)",), {"timeout": -1}, ConfigurationError),
        ("copy_from_runtime", ("no/such/file", tmp_path / "x"), {}, SandboxError),
    ]
    for name, args, kwargs, expected in cases:
        sync = sync_error(lambda n=name, a=args, k=kwargs: getattr(shared, n)(*a, **k))
        ours = await async_error(lambda n=name, a=args, k=kwargs: getattr(session, n)(*a, **k))
        assert sync is ours, name
        assert issubclass(ours, expected), name
    unopened = AsyncSandboxSession(lang="python", backend=shared.config.backend)
    with pytest.raises(NotOpenSessionError):
        await unopened.run("print(1)")


@pytest.mark.anyio
async def test_sessions_run_concurrently_and_close_mid_run(backend: str) -> None:
    """Three sessions opened at once run at once; one closed mid-run stops its run."""
    sessions = [AsyncSandboxSession(lang="python", **backend_options(backend)) for _ in range(3)]
    async with anyio.create_task_group() as tg:
        for opened in sessions:
            tg.start_soon(opened.open)
    arrivals: list[tuple[str, float]] = []

    def note(text: str) -> None:
        arrivals.extend((word, time.monotonic()) for word in text.split())

    code = "import time\nprint('A', flush=True)\ntime.sleep(1.5)\nprint('B', flush=True)"
    try:
        async with anyio.create_task_group() as tg:
            for opened in sessions:
                tg.start_soon(functools.partial(opened.run, code, on_stdout=note))
        words = [word for word, _ in sorted(arrivals, key=lambda a: a[1])]
        assert words == ["A", "A", "A", "B", "B", "B"]

        victim = sessions[0]
        failures: list[BaseException] = []
        started = Started()

        async def doomed() -> None:
            try:
                await victim.run(CHILDREN, on_stdout=started)
            except SandboxInterruptedError as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(doomed)
            with anyio.fail_after(60):
                await started.event.wait()
            pids = host_pids(victim.sync, backend)
            assert pids
            await victim.close()
        assert len(failures) == 1
        assert victim.state.value == "closed"
        assert not alive(pids)
        with pytest.raises(SessionStateError):
            await victim.run("print(1)")
    finally:
        for opened in sessions:
            await opened.close()


def test_loop_closing_mid_run_leaves_nothing_running(backend: str) -> None:
    """asyncio.run() ends with a run in flight: the run is killed and `async with` closes."""
    holder: list[AsyncSandboxSession] = []
    pids: set[int] = set()

    async def use(started: Started) -> None:
        async with AsyncSandboxSession(lang="python", **backend_options(backend)) as opened:
            holder.append(opened)
            await opened.run(CHILDREN, on_stdout=started)

    async def main() -> None:
        started = Started()
        asyncio.get_running_loop().create_task(use(started))  # left running on purpose
        with anyio.fail_after(60):
            await started.event.wait()
        pids.update(host_pids(holder[0].sync, backend))
        # main returns with use() in flight: asyncio.run cancels it and closes the loop

    asyncio.run(main())
    (opened,) = holder
    assert opened.state.value == "closed"
    assert len(pids) > 4
    assert not alive(pids)
