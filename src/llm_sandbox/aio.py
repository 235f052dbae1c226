"""The async API: a thin face over the sync sessions, run on worker threads (anyio).

```python
from llm_sandbox import AsyncSandboxSession

async with AsyncSandboxSession(lang="python") as session:
    result = await session.run("print('hello')")
```

There is one implementation, the sync one. An async class is declared by naming its sync twin,
`class AsyncX(AsyncFacade[X], sync=X)`, and gets an `async def` for every public method of `X`
with `X`'s parameters: each call runs `X`'s method on a worker thread while the event loop goes
on (see the README's "Async API" for why this direction and not the reverse; measured by
`bench/async.py`). The few lines per method below (`run = twin(SandboxSession.run)`) only give
type checkers the signatures; the methods exist without them.

Each call of the facade:

- runs on a worker thread, one at a time per session (a per-session capacity limiter of 1: no
  thread waits on the session's lock, and 50 sessions use 50 threads at most);
- passes callbacks (parameters named `on_*`: `on_stdout`, `on_stderr`, `on_result`) through
  the event loop: plain functions and coroutine functions both run in the loop's thread, in
  order, the worker waiting for each (so output cannot outrun a slow consumer);
- is interruptible: cancelling the task that awaits it sets the call's `Interrupt`, the worker
  kills every process of the running command (`SandboxSession.interrupt` explains how) and
  returns, and only then does the cancellation go on to the caller, as the event loop's own
  exception (`asyncio.CancelledError`, `TimeoutError` from `asyncio.wait_for`, trio's
  `Cancelled`). A call not started yet never starts; an `open()` that was cancelled finishes
  and is closed again, so nothing is left running;
- returns what the sync method returns, except that a sync object with an async twin (a
  session from a pool) comes back wrapped in its twin, a sync context manager as an async
  one, and an iterator (a stream of results) as an async iterator whose steps are calls too.

Code of a sync class that waits by itself rather than through `SandboxSession._execute` (a
kernel's reply, a pool waiting for a free sandbox) looks at
`llm_sandbox.session.current_interrupt()` and stops (raising `SandboxInterruptedError`) when
it is set.

`close()` interrupts the calls in flight first (they raise `SandboxInterruptedError`), and
runs to its end even when the task closing is cancelled.
"""

from __future__ import annotations

import concurrent.futures
import functools
import inspect
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar, overload

from llm_sandbox.artifact_session import ArtifactSandboxSession
from llm_sandbox.backends.base import Interrupt
from llm_sandbox.exceptions import MissingDependencyError
from llm_sandbox.interactive import InteractiveSandboxSession, KernelContext
from llm_sandbox.kernels.kernel import HistoryEntry
from llm_sandbox.pool.container import PooledContainer
from llm_sandbox.pool.manager import ContainerPoolManager
from llm_sandbox.security import Violation
from llm_sandbox.session import SandboxSession, interruptible

try:
    import anyio
    import anyio.from_thread
    import anyio.lowlevel
    import anyio.to_thread
except ImportError as exc:  # pragma: no cover - the extra is installed wherever tests run
    raise MissingDependencyError(
        "the async API needs anyio: pip install 'llm-sandbox[async]'"
    ) from exc

if TYPE_CHECKING:
    from llm_sandbox.config import SessionConfig
    from llm_sandbox.results import PlotOutput
    from llm_sandbox.session import State

S = TypeVar("S")
P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound="AsyncFacade[Any]")

DIRECT = frozenset({"is_safe", "interrupt"})
"""Methods that never wait (pure, or thread-safe and immediate): called in the loop's thread,
not awaited."""
CLOSED_DURING_CALL = "the session was closed while the command ran"
CANCELLED = "the task awaiting the command was cancelled"
SETTLE_POLL = 0.005
"""Seconds between looks at a cancelled call's worker, which is killing its command."""

TWINS: dict[type, type[AsyncFacade[Any]]] = {}
"""Each sync class with an async twin, and the twin."""


class _Twin(Generic[S, P, R]):
    """An async method whose parameters are those of the sync method it runs (see module)."""

    def __init__(self, method: Callable[Concatenate[S, P], R]) -> None:
        self._method: Callable[..., Any] = method
        self._name = method.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(
        self, obj: None, owner: type
    ) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, R]]: ...

    @overload
    def __get__(
        self, obj: AsyncFacade[Any], owner: type
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    def __get__(
        self, obj: AsyncFacade[Any] | None, owner: type[AsyncFacade[Any]]
    ) -> Callable[..., Any]:
        name = self._name
        if obj is None:
            sync_method = getattr(owner._sync_class, name, self._method)

            @functools.wraps(sync_method)
            async def unbound(facade: AsyncFacade[Any], *args: Any, **kwargs: Any) -> Any:
                return await facade._call(name, args, kwargs)

            return unbound

        @functools.wraps(getattr(obj._sync, name))
        async def bound(*args: Any, **kwargs: Any) -> Any:
            return await obj._call(name, args, kwargs)

        return bound


def twin(method: Callable[Concatenate[S, P], R]) -> _Twin[S, P, R]:
    """Declare the async twin of `method` (for type checkers; see the module docstring)."""
    return _Twin(method)


class _Direct:
    """A method that never waits, called as it is on the sync object."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __get__(self, obj: AsyncFacade[Any] | None, owner: type[AsyncFacade[Any]]) -> Any:
        if obj is None:
            return getattr(owner._sync_class, self._name)
        return getattr(obj._sync, self._name)


class _Passthrough:
    """A property of the sync object, read as it is (properties do not wait)."""

    def __init__(self, prop: property) -> None:
        self.__doc__ = prop.__doc__
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, obj: AsyncFacade[Any] | None, owner: type) -> Any:
        if obj is None:
            return self
        return getattr(obj._sync, self._name)


def public_methods(cls: type) -> dict[str, Any]:
    """The public methods and properties of a sync class (what its twin must have)."""
    found: dict[str, Any] = {}
    for name in dir(cls):
        if name.startswith("_"):
            continue
        value = inspect.getattr_static(cls, name)
        if isinstance(value, property) or inspect.isfunction(value):
            found[name] = value
    return found


class AsyncFacade(Generic[S]):
    """The async face of the sync class `S` (declared with `sync=`); see the module docstring.

    `AsyncX(...)` takes `X`'s arguments; `AsyncX.wrap(x)` gives the async face of an existing
    `x` (a pool's session). `sync` is the sync object, for what this face does not offer.
    """

    _sync_class: ClassVar[type]
    _sync: S

    def __init_subclass__(cls, *, sync: type | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if sync is None:
            return
        cls._sync_class = sync
        TWINS[sync] = cls
        for name, value in public_methods(sync).items():
            if hasattr(cls, name):
                continue  # declared (for type checkers), written out (lifecycle), inherited
            if isinstance(value, property):
                setattr(cls, name, _Passthrough(value))
            elif name in DIRECT:
                setattr(cls, name, _Direct(name))
            else:
                descriptor: _Twin[Any, ..., Any] = _Twin(value)
                setattr(cls, name, descriptor)
                descriptor.__set_name__(cls, name)
        init = inspect.signature(sync)
        cls.__signature__ = init  # type: ignore[attr-defined]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # An async face passed on (`AsyncSandboxSession(pool=async_pool)`) means its sync object.
        args = tuple(_unwrapped(value) for value in args)
        kwargs = {name: _unwrapped(value) for name, value in kwargs.items()}
        self._attach(self._sync_class(*args, **kwargs))

    @classmethod
    def wrap(cls: type[F], sync_object: Any) -> F:
        """The async face of an existing sync object of this class's twin."""
        if not isinstance(sync_object, cls._sync_class):
            raise TypeError(
                f"{cls.__name__}.wrap() takes a {cls._sync_class.__name__}, "
                f"not {type(sync_object).__name__}"
            )
        facade = cls.__new__(cls)
        facade._attach(sync_object)
        return facade

    def _attach(self, sync_object: S) -> None:
        self._sync = sync_object
        self._in_flight: set[Interrupt] = set()
        self._limiter: tuple[object, anyio.CapacityLimiter] | None = None

    @property
    def sync(self) -> S:
        """The sync object this face runs."""
        return self._sync

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            # Instance attributes of the sync object (`config`, `logger`, ...).
            if name.startswith("_"):
                raise AttributeError(name)
            return getattr(self._sync, name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._sync!r}>"

    # --- lifecycle: written out, since cancelling them must not leave a sandbox behind ---------
    async def open(self) -> None:
        sync: Any = self._sync
        await self._run_in_thread(sync.open, undo=lambda _: sync.close())

    async def close(self) -> None:
        self.interrupt(CLOSED_DURING_CALL)
        with anyio.CancelScope(shield=True):
            await self._run_in_thread(self._sync.close)  # type: ignore[attr-defined]

    async def __aenter__(self: F) -> F:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def interrupt(self, reason: str = "the run was interrupted") -> bool:
        """Stop the commands this session is running now (see `SandboxSession.interrupt`)."""
        for interrupt in list(self._in_flight):
            interrupt.set(reason)
        stop = getattr(self._sync, "interrupt", None)  # a session's command run from elsewhere
        stopped = bool(stop(reason)) if callable(stop) else False
        return stopped or bool(self._in_flight)

    # --- one call ----------------------------------------------------------------------------
    async def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        method = getattr(self._sync, name)
        bound = inspect.signature(method).bind(*args, **kwargs)
        for key, value in bound.arguments.items():
            if key.startswith("on_") and callable(value):
                bound.arguments[key] = _through_loop(value)
        result = await self._run_in_thread(functools.partial(method, *bound.args, **bound.kwargs))
        if isinstance(result, Iterator) and not isinstance(result, AbstractContextManager):
            return AsyncIteratorFace(self, result)
        return _wrapped(result)

    def _thread_limiter(self) -> anyio.CapacityLimiter:
        """One worker thread at a time for this session (per event loop)."""
        loop = anyio.lowlevel.current_token()
        if self._limiter is None or self._limiter[0] is not loop:
            self._limiter = (loop, anyio.CapacityLimiter(1))
        return self._limiter[1]

    async def _run_in_thread(
        self, call: Callable[[], R], *, undo: Callable[[R], object] | None = None
    ) -> R:
        """`call()` on a worker thread, interrupted when the awaiting task is cancelled.

        `undo(result)` runs on the worker when the call completed although its caller was
        cancelled meanwhile (the result would be lost): an `open()` is closed again, a pool's
        acquired session given back."""
        interrupt = Interrupt()
        worker = _Worker(call, interrupt, undo)
        self._in_flight.add(interrupt)
        try:
            return await anyio.to_thread.run_sync(
                worker.run, abandon_on_cancel=True, limiter=self._thread_limiter()
            )
        except anyio.get_cancelled_exc_class():
            interrupt.set(CANCELLED)
            await worker.settled()
            raise
        finally:
            self._in_flight.discard(interrupt)


class _Worker:
    """One call on a worker thread, which the awaiting task may abandon (see `settled`)."""

    def __init__(
        self,
        call: Callable[[], Any],
        interrupt: Interrupt,
        undo: Callable[[Any], object] | None,
    ) -> None:
        self._call = call
        self._interrupt = interrupt
        self._undo = undo
        self._lock = threading.Lock()
        self._started = False
        self._abandoned = False
        self._finished = threading.Event()

    def run(self) -> Any:
        with self._lock:
            if self._abandoned:
                return None  # cancelled before it started: it never starts
            self._started = True
        try:
            with interruptible(self._interrupt):
                result = self._call()
            if self._interrupt.is_set() and self._undo is not None:
                self._undo(result)  # e.g. an open() whose caller was cancelled meanwhile
            return result
        finally:
            self._finished.set()

    async def settled(self) -> None:
        """Wait, shielded from cancellation, until the interrupted call has returned (its
        command killed); at once when it never started."""
        with self._lock:
            if not self._started:
                self._abandoned = True
                return
        while not self._finished.is_set():
            with anyio.CancelScope(shield=True):
                await anyio.sleep(SETTLE_POLL)


async def _invoke(callback: Callable[..., Any], *args: Any) -> Any:
    result = callback(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def _through_loop(callback: Callable[..., Any]) -> Callable[..., Any]:
    """A callback for the worker thread that runs `callback` (function or coroutine
    function) in the event loop's thread and waits for it."""

    @functools.wraps(callback)
    def in_loop(*args: Any) -> Any:
        try:
            return anyio.from_thread.run(_invoke, callback, *args)
        except (concurrent.futures.CancelledError, anyio.RunFinishedError):
            return None  # the loop is ending (and the run with it): the output is kept

    return in_loop


def _unwrapped(value: Any) -> Any:
    return value.sync if isinstance(value, AsyncFacade) else value


def _wrapped(result: Any) -> Any:
    """A sync object with an async twin comes back as its twin; a context manager as an
    async one; anything else as it is."""
    for cls in type(result).__mro__:
        if cls in TWINS:
            return TWINS[cls].wrap(result)
    if isinstance(result, AbstractContextManager):
        return AsyncContext(result)
    return result


class AsyncIteratorFace:
    """A sync iterator a method returned (a stream of results), iterated with `async for`:
    each step runs on the session's worker thread and is interrupted like a call."""

    def __init__(self, facade: AsyncFacade[Any], iterator: Iterator[Any]) -> None:
        self._facade = facade
        self._iterator = iterator

    def __aiter__(self) -> AsyncIteratorFace:
        return self

    async def __anext__(self) -> Any:
        done = object()
        item = await self._facade._run_in_thread(lambda: next(self._iterator, done))
        if item is done:
            raise StopAsyncIteration
        return _wrapped(item)


class AsyncContext:
    """A sync context manager (a pool's `with pool.acquire() as session`) used with
    `async with`: entering and leaving run on a worker thread; what it gives is wrapped."""

    def __init__(self, manager: AbstractContextManager[Any]) -> None:
        self._manager = manager

    async def __aenter__(self) -> Any:
        entered = await anyio.to_thread.run_sync(self._manager.__enter__)
        return _wrapped(entered)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        with anyio.CancelScope(shield=True):
            suppress = await anyio.to_thread.run_sync(self._manager.__exit__, exc_type, exc, tb)
        return suppress


class AsyncSandboxSession(AsyncFacade[SandboxSession], sync=SandboxSession):
    """`SandboxSession` for async code: the same options, methods and results, awaited."""

    config: SessionConfig
    if TYPE_CHECKING:  # properties passed through (generated); declared for type checkers
        state: State
        is_open: bool
        committed_image: str | None
        container: object | None

    run = twin(SandboxSession.run)
    execute_command = twin(SandboxSession.execute_command)
    execute_commands = twin(SandboxSession.execute_commands)
    install = twin(SandboxSession.install)
    copy_to_runtime = twin(SandboxSession.copy_to_runtime)
    copy_from_runtime = twin(SandboxSession.copy_from_runtime)
    get_archive = twin(SandboxSession.get_archive)
    environment_setup = twin(SandboxSession.environment_setup)

    def is_safe(self, code: str) -> tuple[bool, list[Violation]]:
        """See `SandboxSession.is_safe` (pure: not awaited)."""
        return self._sync.is_safe(code)


class AsyncArtifactSandboxSession(AsyncSandboxSession, sync=ArtifactSandboxSession):
    """`ArtifactSandboxSession` for async code: runs return plots and files."""

    if TYPE_CHECKING:
        plots: list[PlotOutput]
        enable_plotting: bool
        missing_plot_libraries: tuple[str, ...]

    run = twin(ArtifactSandboxSession.run)  # type: ignore[assignment]
    clear_plots = twin(ArtifactSandboxSession.clear_plots)


class AsyncKernelContext(AsyncFacade[KernelContext], sync=KernelContext):
    """A kernel of an async interactive session (`create_context`), its cells awaited."""

    if TYPE_CHECKING:
        history: list[HistoryEntry]

    run = twin(KernelContext.run)
    restart = twin(KernelContext.restart)


class AsyncInteractiveSandboxSession(AsyncSandboxSession, sync=InteractiveSandboxSession):
    """`InteractiveSandboxSession` for async code: cells awaited; cancelling the task that
    awaits a cell interrupts it (the kernel keeps its state when the cell stops in time)."""

    if TYPE_CHECKING:
        history: list[HistoryEntry]
        kernel_restarts: int

    run = twin(InteractiveSandboxSession.run)  # type: ignore[assignment]
    restart = twin(InteractiveSandboxSession.restart)
    create_context = twin(InteractiveSandboxSession.create_context)


class AsyncSandboxPool(AsyncFacade[ContainerPoolManager], sync=ContainerPoolManager):
    """A pool (`ContainerPoolManager`, same arguments; or `AsyncSandboxPool.wrap(pool)`) for
    async code. `AsyncSandboxSession(pool=async_pool)` borrows from it like the sync session.

    `await acquire()` waits for a sandbox on a worker thread; cancelling the task that awaits
    it stops the wait, and a sandbox acquired while the cancellation arrived is given back.
    """

    if TYPE_CHECKING:
        closed: bool

    release = twin(ContainerPoolManager.release)
    get_stats = twin(ContainerPoolManager.get_stats)

    async def acquire(self) -> PooledContainer:
        """See `ContainerPoolManager.acquire`."""
        sync = self._sync
        return await self._run_in_thread(sync.acquire, undo=sync.release)

    async def open(self) -> None:
        """A pool is open from its creation (`async with` only closes it)."""
