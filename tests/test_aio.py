"""The async face's own logic (`llm_sandbox.aio`), under asyncio and trio, on the test double
backend (`fake_backend.py`): twins match their sync classes, calls run off the event loop,
cancellation interrupts, callbacks go through the loop. The same guarantees against real
sandboxes are in `tests/backends/test_async.py`."""

from __future__ import annotations

import inspect
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest

import llm_sandbox
from fake_backend import FakeBackend, FakeSandbox
from llm_sandbox import (
    ArtifactSandboxSession,
    AsyncArtifactSandboxSession,
    AsyncSandboxSession,
    SandboxSession,
)
from llm_sandbox.aio import DIRECT, TWINS, AsyncContext, AsyncFacade, public_methods
from llm_sandbox.exceptions import ConfigurationError, SandboxInterruptedError, SessionStateError

pytestmark = pytest.mark.usefixtures("fake_backend")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def latest_sandbox() -> FakeSandbox:
    return FakeBackend.opened[-1]


# --- one implementation: every sync method has its twin --------------------------------------
def _session_classes() -> list[type]:
    """Every public sync session class of the package (each needs an async twin)."""
    found = []
    for name in llm_sandbox.__all__:
        value = getattr(llm_sandbox, name)
        if (
            isinstance(value, type)
            and issubclass(value, SandboxSession)
            and not issubclass(value, AsyncFacade)
        ):
            found.append(value)
    return found


def test_every_public_session_class_has_an_async_twin() -> None:
    classes = _session_classes()
    assert SandboxSession in classes
    assert ArtifactSandboxSession in classes
    missing = [cls.__name__ for cls in classes if cls not in TWINS]
    # The legacy backend-named sessions (SandboxDockerSession ...) are not exported here.
    assert not missing, f"sync session classes without an async twin: {missing}"
    assert TWINS[SandboxSession] is AsyncSandboxSession
    assert TWINS[ArtifactSandboxSession] is AsyncArtifactSandboxSession


@pytest.mark.parametrize("sync_class", list(TWINS), ids=lambda cls: cls.__name__)
def test_twin_has_every_public_method_with_the_same_parameters(sync_class: type) -> None:
    async_class = TWINS[sync_class]
    assert inspect.signature(async_class) == inspect.signature(sync_class)
    for name, member in public_methods(sync_class).items():
        assert hasattr(async_class, name), f"{async_class.__name__} lacks {name}"
        if isinstance(member, property):
            continue
        ours = getattr(async_class, name)
        theirs = getattr(sync_class, name)
        assert inspect.signature(ours) == inspect.signature(theirs), name
        assert inspect.iscoroutinefunction(ours) == (name not in DIRECT), name
    assert inspect.iscoroutinefunction(async_class.__aenter__)
    assert inspect.iscoroutinefunction(async_class.__aexit__)


def test_a_new_sync_class_gets_its_twin_from_one_line() -> None:
    """What AsyncInteractiveSandboxSession and a pool's twin will do: name the sync class."""

    class Extended(SandboxSession):
        def shout(self, text: str, *, times: int = 1) -> str:
            return self.execute_command(f"out {text.upper() * times}").stdout

        @property
        def extra(self) -> int:
            return 7

    class AsyncExtended(AsyncSandboxSession, sync=Extended):
        pass

    try:
        generated: Any = AsyncExtended  # generated members are not known to type checkers
        assert inspect.signature(generated.shout) == inspect.signature(Extended.shout)

        async def main() -> str:
            async with generated(backend="fake") as session:
                assert session.extra == 7
                result: str = await session.shout("hi", times=2)
                return result

        assert anyio.run(main) == "HIHI\n"
    finally:
        del TWINS[Extended]


# --- calls ---------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_results_are_the_sync_methods(anyio_backend: str) -> None:
    async with AsyncSandboxSession(backend="fake") as session:
        assert session.is_open
        assert session.config.lang == "python"
        result = await session.run("out hello\nerr oops\nexit 3")
        assert (result.stdout, result.stderr, result.exit_code) == ("hello\n", "oops\n", 3)
        assert (await session.execute_command("out shell")).stdout == "shell\n"
        assert session.sync.run("out same").stdout == "same\n"
        assert session.is_safe("print(1)") == (True, [])
    assert session.state.value == "closed"
    with pytest.raises(SessionStateError, match="closed"):
        await session.run("out x")


@pytest.mark.anyio
async def test_calls_run_off_the_event_loop(anyio_backend: str) -> None:
    """A run that takes 0.5 s does not hold the loop: a ticker keeps ticking."""
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await anyio.sleep(0.01)

    async with AsyncSandboxSession(backend="fake") as session, anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await session.run("sleep 0.5\nout done")
        tg.cancel_scope.cancel()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) > 20
    assert max(gaps) < 0.2


@pytest.mark.anyio
async def test_callbacks_may_be_functions_or_coroutines_and_run_in_the_loop(
    anyio_backend: str,
) -> None:
    loop_thread = threading.get_ident()
    seen: list[tuple[str, str, int]] = []

    async def on_stdout(text: str) -> None:
        await anyio.sleep(0.01)  # a slow consumer: the worker waits, order is kept
        seen.append(("out", text, threading.get_ident()))

    def on_stderr(text: str) -> None:
        seen.append(("err", text, threading.get_ident()))

    async with AsyncSandboxSession(backend="fake") as session:
        result = await session.run(
            "out a\nerr b\nout c\nsleep 0.05\nerr d", on_stdout=on_stdout, on_stderr=on_stderr
        )
    assert [(kind, text) for kind, text, _ in seen] == [
        ("out", "a\n"),
        ("err", "b\n"),
        ("out", "c\n"),
        ("err", "d\n"),
    ]
    assert {thread for _, _, thread in seen} == {loop_thread}
    assert result.stdout == "a\nc\n"


def test_the_sync_api_refuses_a_coroutine_callback() -> None:
    async def on_stdout(text: str) -> None:
        raise AssertionError("never called")

    with (
        SandboxSession(backend="fake") as session,
        pytest.raises(ConfigurationError, match=r"coroutine function.*AsyncSandboxSession"),
    ):
        session.run("out a", on_stdout=on_stdout)


# --- cancellation --------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_cancelling_the_task_kills_the_run_and_the_session_stays_usable(
    anyio_backend: str,
) -> None:
    async with AsyncSandboxSession(backend="fake") as session:
        sandbox = latest_sandbox()
        with anyio.move_on_after(0.2) as scope:
            await session.run("out started\nhang")
        assert scope.cancelled_caught
        assert sandbox.kills == 1
        assert (await session.run("out again")).stdout == "again\n"


@pytest.mark.anyio
async def test_fail_after_raises_the_builtin_timeout_error(anyio_backend: str) -> None:
    async with AsyncSandboxSession(backend="fake") as session:
        with pytest.raises(TimeoutError) as info, anyio.fail_after(0.2):
            await session.run("hang")
        assert not isinstance(info.value, llm_sandbox.SandboxTimeoutError)
        assert latest_sandbox().kills == 1
        with pytest.raises(llm_sandbox.SandboxTimeoutError):
            await session.run("hang", timeout=0.2)


def test_asyncio_wait_for_raises_timeout_error() -> None:
    import asyncio

    async def main() -> None:
        async with AsyncSandboxSession(backend="fake") as session:
            started = time.monotonic()
            with pytest.raises(TimeoutError) as info:
                await asyncio.wait_for(session.run("hang"), 0.2)
            assert type(info.value) is TimeoutError
            assert time.monotonic() - started < 1.0
            assert latest_sandbox().kills == 1
            assert (await session.run("out ok")).stdout == "ok\n"

    asyncio.run(main())


@pytest.mark.anyio
async def test_a_call_cancelled_before_it_starts_never_starts(anyio_backend: str) -> None:
    """Calls on one session queue for its worker; one cancelled while queued never runs."""
    async with AsyncSandboxSession(backend="fake") as session:
        sandbox = latest_sandbox()
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run, "sleep 0.3\nout first")
            await anyio.sleep(0.05)
            with anyio.move_on_after(0.05):
                await session.run("out never")
        await anyio.sleep(0.1)
        runs = [r for r in sandbox.execs if any("/code/" in p for p in r.files)]
        assert len(runs) == 1


@pytest.mark.anyio
async def test_cancelled_open_leaves_no_sandbox_open(anyio_backend: str) -> None:
    slow = threading.Event()
    original = FakeBackend.open

    def slow_open(self: FakeBackend, config: Any, runtime: Any) -> Any:
        slow.wait(0.3)
        return original(self, config, runtime)

    session = AsyncSandboxSession(backend="fake")
    FakeBackend.open = slow_open  # type: ignore[method-assign]
    try:
        with anyio.move_on_after(0.1):
            await session.open()
    finally:
        FakeBackend.open = original  # type: ignore[method-assign]
    assert latest_sandbox().closed == 1
    assert not session.is_open


@pytest.mark.anyio
async def test_closing_while_a_run_is_in_flight_interrupts_it(anyio_backend: str) -> None:
    session = AsyncSandboxSession(backend="fake")
    await session.open()
    sandbox = latest_sandbox()
    failures: list[BaseException] = []

    async def runner() -> None:
        try:
            await session.run("out x\nhang")
        except SandboxInterruptedError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner)
        await anyio.sleep(0.1)
        with anyio.fail_after(2):
            await session.close()
    assert len(failures) == 1
    assert "closed while the command ran" in str(failures[0])
    assert failures[0].stdout == "x\n"  # type: ignore[attr-defined]
    assert sandbox.kills == 1
    assert sandbox.closed == 1


def test_sync_interrupt_from_another_thread() -> None:
    with SandboxSession(backend="fake") as session:
        timer = threading.Timer(0.2, session.interrupt, args=("stopped by a watchdog",))
        timer.start()
        with pytest.raises(SandboxInterruptedError, match="stopped by a watchdog"):
            session.run("out a\nhang")
        assert latest_sandbox().kills == 1
        assert not session.interrupt()  # nothing running now
        assert session.run("out b").stdout == "b\n"


# --- results that are sync objects -------------------------------------------------------------
@pytest.mark.anyio
async def test_a_sync_session_or_context_manager_returned_comes_back_async(
    anyio_backend: str,
) -> None:
    """How a pool's acquire() is served: what it returns is wrapped."""
    entered: list[str] = []

    class Pool:
        def __init__(self) -> None:
            self.session = SandboxSession(backend="fake")

        def acquire(self) -> SandboxSession:
            self.session.open()
            return self.session

        @contextmanager
        def lease(self) -> Iterator[SandboxSession]:
            entered.append(threading.current_thread().name)
            yield self.session

    class AsyncPool(AsyncFacade[Pool], sync=Pool):
        pass

    try:
        pool: Any = AsyncPool()  # generated members are not known to type checkers
        session = await pool.acquire()
        assert isinstance(session, AsyncSandboxSession)
        assert session.sync is pool.sync.session
        assert (await session.run("out pooled")).stdout == "pooled\n"
        manager = await pool.lease()
        assert isinstance(manager, AsyncContext)
        async with manager as leased:
            assert isinstance(leased, AsyncSandboxSession)
            assert (await leased.run("out leased")).stdout == "leased\n"
        assert entered
        assert entered[0] != threading.current_thread().name
        await session.close()
    finally:
        del TWINS[Pool]


@pytest.mark.anyio
async def test_artifact_session_twin(anyio_backend: str) -> None:
    async with AsyncArtifactSandboxSession(backend="fake", enable_plotting=False) as session:
        result = await session.run("out art", clear_plots=True)
        assert result.stdout == "out art\n".removeprefix("out ")
        assert result.plots == []
        assert session.plots == []
        await session.clear_plots()


def test_wrap_refuses_another_class() -> None:
    with pytest.raises(TypeError, match="takes a ArtifactSandboxSession"):
        AsyncArtifactSandboxSession.wrap(SandboxSession(backend="fake"))


@pytest.mark.anyio
async def test_an_iterator_returned_is_iterated_with_async_for(anyio_backend: str) -> None:
    """A method that streams (an interactive session's results, say) is consumed off the loop,
    one step per worker call."""
    threads: list[int] = []

    class Streaming(SandboxSession):
        def lines(self, count: int) -> Iterator[str]:
            for index in range(count):
                threads.append(threading.get_ident())
                yield self.execute_command(f"out line{index}").stdout

    class AsyncStreaming(AsyncSandboxSession, sync=Streaming):
        pass

    try:
        generated: Any = AsyncStreaming
        async with generated(backend="fake") as session:
            got = [line async for line in await session.lines(3)]
        assert got == ["line0\n", "line1\n", "line2\n"]
        assert threading.get_ident() not in threads
    finally:
        del TWINS[Streaming]


@pytest.mark.anyio
async def test_a_cancelled_acquire_gives_its_session_back(anyio_backend: str) -> None:
    """A pool's acquire written out with `undo`: when its caller is cancelled while the pool
    waits, the session it then gets is released, not lost."""
    released: list[SandboxSession] = []

    class Pool:
        def acquire(self) -> SandboxSession:
            time.sleep(0.3)  # waiting for a free sandbox
            return SandboxSession(backend="fake")

        def release(self, session: SandboxSession) -> None:
            released.append(session)

    class AsyncPool(AsyncFacade[Pool], sync=Pool):
        async def acquire(self) -> AsyncSandboxSession:
            acquired = await self._run_in_thread(self._sync.acquire, undo=self._sync.release)
            return AsyncSandboxSession.wrap(acquired)

    try:
        pool = AsyncPool()
        with anyio.move_on_after(0.1):
            await pool.acquire()
        assert len(released) == 1
        assert isinstance(await pool.acquire(), AsyncSandboxSession)
        assert len(released) == 1
    finally:
        del TWINS[Pool]
