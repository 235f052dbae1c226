"""`ContainerPoolManager`: warm sandboxes handed out in microseconds, wiped between users.

One manager serves every backend: it holds `PreparedSandbox`es made by its `Provisioner` and
never does I/O while holding its lock. Opening, wiping, checking and destroying sandboxes run
on a small thread pool (`_jobs`); the upkeep thread prewarms to `min_pool_size`, shrinks idle
sandboxes back to it, recycles old ones and health-checks idle ones.

* `acquire()` takes an idle sandbox (lock, pop: microseconds), or queues: waiters are served
  strictly in arrival order, each by the next sandbox that becomes ready (a new one, or one
  whose wipe finished). A queued acquirer starts a new sandbox when none is on its way for it
  and the pool has room.
* `release()` returns at once: the wipe runs in the background, and the sandbox is handed out
  again only once its wipe was verified (see `provision`). A sandbox that fails it, is too
  old, or was used `max_container_uses` times is destroyed and, if needed, replaced.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from llm_sandbox.backends.base import INTERRUPT_POLL
from llm_sandbox.exceptions import (
    PoolClosedError,
    PoolExhaustedError,
    SandboxError,
    SandboxInterruptedError,
    SessionStateError,
)
from llm_sandbox.pool.config import ExhaustionStrategy, PoolConfig
from llm_sandbox.pool.container import ContainerState, PooledContainer
from llm_sandbox.pool.provision import Provisioner
from llm_sandbox.pool.stats import PoolStats
from llm_sandbox.session import current_interrupt

logger = logging.getLogger("llm_sandbox")

UPKEEP_TICK = 1.0
"""Seconds between upkeep rounds (prewarming, shrinking, recycling, health checks)."""
RETRY_AFTER_FAILURE = 5.0
"""Seconds prewarming pauses after a sandbox failed to open."""


class _Waiter:
    """One queued `acquire()`: woken with a sandbox, or with the error to raise."""

    __slots__ = ("container", "error", "event")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.container: PooledContainer | None = None
        self.error: BaseException | None = None


class ContainerPoolManager:
    """A pool of open sandboxes of one language and backend (see the module docstring).

    `client`, `image` and `session_kwargs` are the options of the sandboxes (as for
    `SandboxSession`; `libraries=` are installed once per sandbox); `config` sizes the pool.
    Use as a context manager, or call `close()`: it destroys every sandbox.
    """

    def __init__(
        self,
        client: Any | None = None,
        config: PoolConfig | None = None,
        lang: str = "python",
        image: str | None = None,
        *,
        backend: object = None,
        **session_kwargs: Any,
    ) -> None:
        if config is None:
            config = PoolConfig()
        if not isinstance(config, PoolConfig):
            raise SessionStateError("config must be a PoolConfig")
        self.client = client
        self.config = config
        self.lang = str(lang)
        self.image = image
        self.session_kwargs = dict(session_kwargs)
        self.logger = logger
        options = dict(session_kwargs)
        if client is not None:
            options["client"] = client
        if image is not None:
            options["image"] = image
        self._provisioner = Provisioner(self.lang, backend, options)
        self.backend = self._provisioner.backend
        self._lock = threading.Lock()
        self._all: dict[str, PooledContainer] = {}
        self._idle: list[PooledContainer] = []
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._creating = 0
        self._closed = False
        self._paused_until = 0.0
        self._stats = PoolStats()
        self._jobs = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(2, min(config.max_pool_size, 8)),
            thread_name_prefix="llm-sandbox-pool",
        )
        self._wake = threading.Event()
        self._upkeep = threading.Thread(
            target=self._maintain, name="llm-sandbox-pool-upkeep", daemon=True
        )
        self._upkeep.start()
        _close_at_exit(self)
        if config.enable_prewarming and config.min_pool_size:
            with self._lock:
                started = self._replenish_locked()
            self._start_creations(started)

    # --- handing out -----------------------------------------------------------------------
    def acquire(self) -> PooledContainer:
        """A clean sandbox for one user; give it back with `release()`.

        An idle sandbox is first confirmed alive (see `Provisioner.confirm_alive`); one that
        ended while idle is destroyed and replaced, never handed out.
        """
        started = time.monotonic()
        while True:
            container = self._acquire(started)
            if container.prepared is None or container.temporary:
                break
            failure = self._provisioner.confirm_alive(container.prepared)
            if failure is None:
                break
            logger.warning("pooled sandbox %s is replaced: %s", container.container_id, failure)
            self._discard_dead(container)
        self._stats.acquired(time.monotonic() - started)
        return container

    def _discard_dead(self, container: PooledContainer) -> None:
        with self._lock:
            self._stats.count("found_dead")
            if container.state is ContainerState.REMOVING:
                return  # the pool was closed meanwhile, and destroyed it
            container.mark_removing()
        self._all_remove_and_destroy(container)

    def _acquire(self, started: float) -> PooledContainer:
        temporary = False
        new = 0
        with self._lock:
            if self._closed:
                raise PoolClosedError()
            if not self._waiters and self._idle:
                container = self._idle.pop()
                container.mark_busy()
                return container
            exhausted = self._coming_locked() <= len(self._waiters) and self._room_locked() <= 0
            strategy = self.config.exhaustion_strategy
            if exhausted and strategy is ExhaustionStrategy.FAIL_FAST:
                self._stats.count("exhausted")
                raise PoolExhaustedError(self.config.max_pool_size)
            if exhausted and strategy is ExhaustionStrategy.TEMPORARY:
                temporary = True
            else:
                waiter = _Waiter()
                self._waiters.append(waiter)
                new = self._replenish_locked()
        if temporary:
            return self._acquire_temporary(started)
        self._start_creations(new)
        return self._await(waiter, started)

    def _await(self, waiter: _Waiter, started: float) -> PooledContainer:
        """Wait for `waiter`'s turn, at most acquisition_timeout; an interrupt (an async
        acquire whose task was cancelled, see `llm_sandbox.aio`) stops the wait."""
        timeout = self.config.acquisition_timeout
        interrupt = current_interrupt()
        deadline = None if timeout is None else started + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if interrupt is None:
                waiter.event.wait(left)
                break
            if waiter.event.wait(INTERRUPT_POLL if left is None else min(left, INTERRUPT_POLL)):
                break
            if interrupt.is_set() or (left is not None and left <= INTERRUPT_POLL):
                break
        with self._lock:
            if waiter.container is None and waiter.error is None:
                self._waiters.remove(waiter)
                if interrupt is not None and interrupt.is_set():
                    raise SandboxInterruptedError(
                        f"{interrupt.reason}; no sandbox was taken from the pool"
                    )
                self._stats.count("exhausted")
                raise PoolExhaustedError(self.config.max_pool_size, timeout)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.container is not None
        return waiter.container

    def _acquire_temporary(self, started: float) -> PooledContainer:
        prepared = self._provisioner.create()
        container = PooledContainer(
            prepared.container_id, prepared.handle, prepared=prepared, temporary=True
        )
        container.mark_busy()
        with self._lock:
            closed = self._closed
            if not closed:
                self._all[container.container_id] = container
                self._stats.count("created")
        if closed:
            self._provisioner.destroy(prepared)
            raise PoolClosedError()
        return container

    def release(self, container: PooledContainer, *, discard: bool = False) -> None:
        """Give a sandbox back; returns at once (it is wiped in the background).

        `discard=True` destroys it instead of wiping it (a lease that cannot vouch for it).
        """
        with self._lock:
            if container.state is ContainerState.REMOVING or self._closed:
                return  # the pool was closed (and destroyed it) while it was out
            if self._all.get(container.container_id) is not container:
                raise SessionStateError(f"container {container.container_id} is not this pool's")
            if container.state is not ContainerState.BUSY:
                raise SessionStateError(
                    f"container {container.container_id} was released twice (it is "
                    f"{container.state.value})"
                )
            container.mark_resetting()
            container.dirty = container.dirty or discard
        self._submit(self._reset, container, True)

    # --- background jobs -------------------------------------------------------------------
    def _reset(self, container: PooledContainer, used: bool) -> None:
        """Wipe and verify a released (or idle, for a health check) sandbox; hand it on."""
        config = self.config
        reason: str | None = None
        if container.temporary:
            reason = "temporary"
        elif container.dirty:
            reason = "discarded by its session"
        elif container.is_expired(config.max_container_lifetime, config.max_container_uses):
            reason = "expired"
        elif self._closed:
            reason = "pool closed"
        else:
            assert container.prepared is not None
            started = time.monotonic()
            failure = self._provisioner.reset(container.prepared)
            self._stats.reset(time.monotonic() - started, failed=failure is not None)
            if failure is not None:
                reason = failure
                logger.warning(
                    "pooled sandbox %s is destroyed, not reused: %s",
                    container.container_id,
                    failure,
                )
        if reason is not None:
            self._remove(container)
            return
        with self._lock:
            if not self._closed:
                self._give_locked(container, used=used)
                return
        self._remove(container)

    def _create(self) -> None:
        try:
            prepared = self._provisioner.create()
        except BaseException as exc:
            logger.warning("a pooled sandbox failed to open: %s", exc)
            with self._lock:
                self._creating -= 1
                self._stats.count("create_failures")
                self._paused_until = time.monotonic() + RETRY_AFTER_FAILURE
                # The first waiter with nothing else on its way learns why.
                if self._waiters and self._coming_locked() < len(self._waiters):
                    waiter = self._waiters.popleft()
                    waiter.error = exc
                    waiter.event.set()
            return
        container = PooledContainer(prepared.container_id, prepared.handle, prepared=prepared)
        with self._lock:
            self._creating -= 1
            closed = self._closed
            if not closed:
                self._all[container.container_id] = container
                self._stats.count("created")
                self._give_locked(container, used=False)
        if closed:
            self._provisioner.destroy(prepared)

    def _remove(self, container: PooledContainer) -> None:
        """Destroy a sandbox (outside the lock) and start what replaces it, if needed."""
        with self._lock:
            if (
                container.state is ContainerState.REMOVING
                and container.container_id not in self._all
            ):
                return
            container.mark_removing()
            self._all.pop(container.container_id, None)
            new = 0 if self._closed else self._replenish_locked()
        self._start_creations(new)
        if container.prepared is not None:
            self._provisioner.destroy(container.prepared)
        self._stats.count("destroyed")

    def _give_locked(self, container: PooledContainer, *, used: bool) -> None:
        """A ready sandbox goes to the first waiter, else back to the idle stack."""
        if self._waiters:
            waiter = self._waiters.popleft()
            container.mark_busy()
            waiter.container = container
            waiter.event.set()
            return
        if used:
            container.mark_idle()
        else:
            container.state = ContainerState.IDLE
        self._idle.append(container)

    # --- counting (under the lock) ---------------------------------------------------------
    def _size_locked(self) -> int:
        """Sandboxes that count against max_pool_size (temporary ones do not)."""
        kept = sum(1 for c in self._all.values() if not c.temporary)
        return kept + self._creating

    def _room_locked(self) -> int:
        return self.config.max_pool_size - self._size_locked()

    def _coming_locked(self) -> int:
        """Sandboxes that will be ready soon: opening, or being wiped."""
        resetting = sum(
            1 for c in self._all.values() if c.state is ContainerState.RESETTING and not c.temporary
        )
        return self._creating + resetting

    def _replenish_locked(self) -> int:
        """Reserve the creations the pool needs now (for waiters and min_pool_size); how many."""
        if self._closed:
            return 0
        for_waiters = len(self._waiters) - self._coming_locked()
        wanted = max(for_waiters, 0)
        if self.config.enable_prewarming and time.monotonic() >= self._paused_until:
            wanted = max(wanted, self.config.min_pool_size - self._size_locked())
        count = max(0, min(wanted, self._room_locked()))
        self._creating += count
        return count

    def _start_creations(self, count: int) -> None:
        for _ in range(count):
            self._submit(self._create)

    def _submit(self, job: Callable[..., None], *args: Any) -> None:
        try:
            self._jobs.submit(_logged, job, *args)
        except RuntimeError:  # the pool is closing: the job sees that and cleans up
            _logged(job, *args)

    # --- upkeep ----------------------------------------------------------------------------
    def _maintain(self) -> None:
        last_check = time.monotonic()
        while not self._wake.wait(UPKEEP_TICK):
            now = time.monotonic()
            check = now - last_check >= self.config.health_check_interval
            if check:
                last_check = now
            try:
                self._upkeep_round(check)
            except Exception:  # never let upkeep die
                logger.exception("pool upkeep failed")

    def _upkeep_round(self, health_check: bool) -> None:
        config = self.config
        remove: list[PooledContainer] = []
        check: list[PooledContainer] = []
        with self._lock:
            if self._closed:
                return
            for container in list(self._idle):
                if container.is_expired(config.max_container_lifetime, None):
                    remove.append(container)
            # Oldest-used first; keep min_pool_size.
            spare = len(self._all) - len(remove) - config.min_pool_size
            if config.idle_timeout is not None:
                for container in sorted(self._idle, key=lambda c: c.last_used_at):
                    if spare <= 0:
                        break
                    if container not in remove and container.get_idle_time() > config.idle_timeout:
                        remove.append(container)
                        spare -= 1
            if health_check:
                check = [c for c in self._idle if c not in remove]
            for container in remove:
                self._idle.remove(container)
                container.mark_removing()
            for container in check:
                self._idle.remove(container)
                container.mark_resetting()
            new = self._replenish_locked()
        self._start_creations(new)
        for container in remove:
            self._all_remove_and_destroy(container)
        for container in check:
            self._submit(self._reset, container, False)

    def _all_remove_and_destroy(self, container: PooledContainer) -> None:
        with self._lock:
            self._all.pop(container.container_id, None)
            new = self._replenish_locked()
        self._start_creations(new)
        self._submit(self._destroy, container)

    def _destroy(self, container: PooledContainer) -> None:
        if container.prepared is not None:
            self._provisioner.destroy(container.prepared)
        self._stats.count("destroyed")

    # --- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Destroy every sandbox (those in use too) and stop; waiters get PoolClosedError.

        Returns once everything is gone, sandboxes still opening or being wiped included.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiters, self._waiters = list(self._waiters), collections.deque()
            doomed = [c for c in self._all.values() if c.state is not ContainerState.RESETTING]
            for container in doomed:
                container.mark_removing()
                self._all.pop(container.container_id, None)
            self._idle.clear()
        for waiter in waiters:
            waiter.error = PoolClosedError()
            waiter.event.set()
        self._wake.set()
        for container in doomed:
            self._submit(self._destroy, container)
        self._jobs.shutdown(wait=True)
        self._upkeep.join()
        # Wipes that were running when close began destroyed their sandboxes themselves.

    @property
    def closed(self) -> bool:
        return self._closed

    def get_stats(self) -> dict[str, Any]:
        """Sizes, sandboxes per state, and figures on waits and wipes."""
        with self._lock:
            counts = {state.value: 0 for state in ContainerState}
            for container in self._all.values():
                counts[container.state.value] += 1
            counts[ContainerState.INITIALIZING.value] += self._creating
            stats: dict[str, Any] = {
                "total_size": len(self._all),
                "max_size": self.config.max_pool_size,
                "min_size": self.config.min_pool_size,
                "state_counts": counts,
                "closed": self._closed,
                "waiting": len(self._waiters),
                "backend": self.backend,
            }
        stats.update(self._stats.summary())
        return stats

    def containers(self) -> Iterable[PooledContainer]:
        """The sandboxes the pool holds now (a snapshot)."""
        with self._lock:
            return list(self._all.values())

    def __enter__(self) -> ContainerPoolManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.backend}/{self.lang} "
            f"size={len(self._all)}/{self.config.max_pool_size} closed={self._closed}>"
        )


def _logged(job: Callable[..., None], *args: Any) -> None:
    try:
        job(*args)
    except SandboxError as exc:
        logger.warning("pool job %s failed: %s", getattr(job, "__name__", job), exc)
    except Exception:
        logger.exception("pool job %s failed", getattr(job, "__name__", job))


def _close_at_exit(pool: ContainerPoolManager) -> None:
    """Pools left open are closed when the interpreter exits (sandboxes are not left behind)."""
    ref = weakref.ref(pool)

    def close() -> None:
        alive = ref()
        if alive is not None:
            alive.close()

    atexit.register(close)
