"""The pool's own logic on the poolable test double: queues, timeouts, recycling, shrinking,
close. (That a wipe really removes a user's traces is proven on the real backends, in
`tests/backends/test_pool_reset.py`.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

from llm_sandbox.exceptions import (
    ConfigurationError,
    PoolClosedError,
    PoolExhaustedError,
    SandboxError,
    SandboxRuntimeError,
    SessionStateError,
)
from llm_sandbox.pool import (
    ContainerPoolManager,
    ContainerState,
    ExhaustionStrategy,
    PoolConfig,
    PooledContainer,
    create_pool_manager,
)
from pool_double import Behaviour, PoolSandbox


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


@pytest.fixture
def make_pool(behaviour: Behaviour) -> Iterator[Callable[..., ContainerPoolManager]]:
    pools: list[ContainerPoolManager] = []

    def make(**config: Any) -> ContainerPoolManager:
        pool = create_pool_manager(backend="fakepool", config=PoolConfig(**config))
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def sandbox_of(container: PooledContainer) -> PoolSandbox:
    assert container.prepared is not None
    sandbox = container.prepared.sandbox
    assert isinstance(sandbox, PoolSandbox)
    return sandbox


def waiting_is(pool: ContainerPoolManager, count: int) -> bool:
    return bool(pool.get_stats()["waiting"] == count)


def idle(pool: ContainerPoolManager) -> int:
    counts: dict[str, int] = pool.get_stats()["state_counts"]
    return counts["idle"]


# --- configuration ---------------------------------------------------------------------------
def test_config_defaults_are_the_previous_generations() -> None:
    config = PoolConfig()
    assert (config.max_pool_size, config.min_pool_size) == (10, 0)
    assert (config.idle_timeout, config.acquisition_timeout) == (300.0, 30.0)
    assert (config.health_check_interval, config.max_container_lifetime) == (60.0, 3600.0)
    assert config.max_container_uses is None
    assert config.exhaustion_strategy is ExhaustionStrategy.WAIT
    assert config.enable_prewarming is True
    assert PoolConfig(exhaustion_strategy="fail_fast").exhaustion_strategy is (  # type: ignore[arg-type]
        ExhaustionStrategy.FAIL_FAST
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_pool_size": 5, "max_pool_size": 2}, r"min_pool_size \(5\) cannot be greater"),
        ({"max_pool_size": 0}, "max_pool_size must be an integer > 0"),
        ({"acquisition_timeout": -1}, "acquisition_timeout must be a number > 0"),
        ({"max_container_uses": 1.5}, "max_container_uses must be an integer"),
        ({"exhaustion_strategy": "WAIT-ish"}, "exhaustion_strategy must be one of"),
        ({"enable_prewarming": "yes"}, "enable_prewarming must be True or False"),
    ],
)
def test_bad_config_is_refused_naming_the_field(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PoolConfig(**options)


def test_bad_session_options_fail_at_creation(behaviour: Behaviour) -> None:
    with pytest.raises(ConfigurationError, match="no_such_option"):
        create_pool_manager(backend="fakepool", no_such_option=1)


def test_a_backend_that_cannot_wipe_cannot_be_pooled(fake_backend: object) -> None:
    with pytest.raises(ConfigurationError, match="does not support container pooling"):
        create_pool_manager(backend="fake")


# --- handing out -----------------------------------------------------------------------------
def test_prewarmed_sandboxes_are_handed_out_without_waiting(make_pool: Any) -> None:
    pool = make_pool(max_pool_size=3, min_pool_size=2)
    wait_for(lambda: idle(pool) == 2)
    first, second = pool.acquire(), pool.acquire()
    assert first is not second
    assert first.state is ContainerState.BUSY
    assert first.use_count == 1
    stats = pool.get_stats()
    assert stats["state_counts"]["busy"] == 2
    assert stats["total_size"] == 2
    assert stats["max_size"] == 3
    assert stats["min_size"] == 2


def test_release_returns_at_once_and_a_sandbox_being_wiped_is_not_handed_out(
    make_pool: Any, behaviour: Behaviour
) -> None:
    pool = make_pool(max_pool_size=1)
    container = pool.acquire()
    behaviour.wipe_delay = 0.3
    started = time.monotonic()
    pool.release(container)
    assert time.monotonic() - started < 0.05
    assert container.state is ContainerState.RESETTING
    again = pool.acquire()  # waits for the wipe
    assert again is container
    assert sandbox_of(again).wipes == 2
    assert not sandbox_of(again).wiping
    assert time.monotonic() - started >= 0.3


def test_creation_does_not_hold_the_lock(make_pool: Any, behaviour: Behaviour) -> None:
    pool = make_pool(max_pool_size=3, min_pool_size=1)
    wait_for(lambda: idle(pool) == 1)
    held = pool.acquire()
    behaviour.open_delay = 1.0
    slow = threading.Thread(target=lambda: pool.release(pool.acquire()))
    slow.start()  # opens a new sandbox, for a second
    wait_for(lambda: pool.get_stats()["state_counts"]["initializing"] == 1)
    started = time.monotonic()
    pool.release(held)
    pool.get_stats()
    assert time.monotonic() - started < 0.05
    slow.join()


def test_fail_fast_raises_within_10_ms(make_pool: Any) -> None:
    pool = make_pool(max_pool_size=1, exhaustion_strategy=ExhaustionStrategy.FAIL_FAST)
    pool.acquire()
    started = time.monotonic()
    with pytest.raises(PoolExhaustedError, match="All 1 containers in pool are busy") as info:
        pool.acquire()
    assert time.monotonic() - started < 0.01
    assert info.value.pool_size == 1
    assert info.value.timeout is None
    assert isinstance(info.value, SandboxError)


def test_fail_fast_waits_for_a_sandbox_that_is_being_wiped(
    make_pool: Any, behaviour: Behaviour
) -> None:
    pool = make_pool(max_pool_size=1, exhaustion_strategy="fail_fast")
    behaviour.wipe_delay = 0.1
    pool.release(pool.acquire())
    assert pool.acquire().use_count == 2


def test_wait_gives_up_after_the_acquisition_timeout(make_pool: Any) -> None:
    pool = make_pool(max_pool_size=1, acquisition_timeout=0.3)
    pool.acquire()
    started = time.monotonic()
    with pytest.raises(PoolExhaustedError, match=r"timeout of 0\.3s exceeded"):
        pool.acquire()
    assert 0.3 <= time.monotonic() - started < 1.0
    assert pool.get_stats()["waiting"] == 0


def test_waiters_are_served_in_arrival_order(make_pool: Any) -> None:
    pool = make_pool(max_pool_size=1)
    holder = pool.acquire()
    order: list[int] = []
    threads = []
    for n in range(6):

        def user(n: int = n) -> None:
            container = pool.acquire()
            order.append(n)
            pool.release(container)

        thread = threading.Thread(target=user)
        thread.start()
        threads.append(thread)
        wait_for(partial(waiting_is, pool, n + 1))
    pool.release(holder)
    for thread in threads:
        thread.join()
    assert order == list(range(6))


def test_many_threads_never_share_a_sandbox(make_pool: Any, behaviour: Behaviour) -> None:
    behaviour.open_delay = 0.05
    behaviour.wipe_delay = 0.005
    pool = make_pool(max_pool_size=4)
    in_use: set[int] = set()
    lock = threading.Lock()
    errors: list[str] = []

    def user() -> None:
        for _ in range(15):
            container = pool.acquire()
            with lock:
                if id(container) in in_use:
                    errors.append("handed out twice")
                in_use.add(id(container))
            if sandbox_of(container).wiping:
                errors.append("handed out while being wiped")
            time.sleep(0.002)
            with lock:
                in_use.discard(id(container))
            pool.release(container)

    threads = [threading.Thread(target=user) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stats = pool.get_stats()
    assert stats["acquisitions"] == 16 * 15
    assert stats["created"] <= 4
    assert stats["total_size"] <= 4


def test_temporary_sandboxes_come_on_top_and_go_at_release(
    make_pool: Any, behaviour: Behaviour
) -> None:
    pool = make_pool(max_pool_size=1, exhaustion_strategy=ExhaustionStrategy.TEMPORARY)
    kept = pool.acquire()
    extra = pool.acquire()
    extra_sandbox = sandbox_of(extra)
    assert extra.temporary
    assert pool.get_stats()["total_size"] == 2
    pool.release(extra)
    wait_for(lambda: extra_sandbox.closed == 1)
    assert pool.get_stats()["total_size"] == 1
    pool.release(kept)


def test_a_failed_open_reaches_the_waiter(make_pool: Any, behaviour: Behaviour) -> None:
    behaviour.open_error = SandboxRuntimeError("the image is broken (test)")
    pool = make_pool(max_pool_size=2)
    with pytest.raises(SandboxRuntimeError, match="the image is broken"):
        pool.acquire()


def test_release_twice_or_elsewhere_is_an_error(make_pool: Any) -> None:
    pool = make_pool(max_pool_size=1)
    container = pool.acquire()
    pool.release(container)
    with pytest.raises(SessionStateError, match="released twice"):
        pool.release(container)
    with pytest.raises(SessionStateError, match="not this pool's"):
        pool.release(PooledContainer("stranger", state=ContainerState.BUSY))


# --- wipes, recycling, shrinking -------------------------------------------------------------
def test_a_sandbox_whose_wipe_fails_is_destroyed_and_replaced(
    make_pool: Any, behaviour: Behaviour
) -> None:
    pool = make_pool(max_pool_size=1, min_pool_size=1)
    first = pool.acquire()
    sandbox = sandbox_of(first)
    behaviour.wipe_fails = True
    pool.release(first)
    wait_for(lambda: sandbox.closed == 1)
    behaviour.wipe_fails = False
    second = pool.acquire()
    assert second is not first
    assert pool.get_stats()["reset_failures"] == 1


@pytest.mark.parametrize("strategy", list(ExhaustionStrategy))
def test_a_sandbox_that_died_while_idle_is_replaced_not_handed_out(
    make_pool: Any, strategy: ExhaustionStrategy
) -> None:
    pool = make_pool(max_pool_size=1, min_pool_size=1, exhaustion_strategy=strategy)
    first = pool.acquire()
    sandbox = sandbox_of(first)
    pool.release(first)
    wait_for(lambda: first.state is ContainerState.IDLE)
    sandbox.dead = True  # e.g. its container was killed from outside
    second = pool.acquire()
    assert second is not first
    assert not second.temporary  # the dead one made room for a pooled replacement
    wait_for(lambda: sandbox.closed == 1)
    assert pool.get_stats()["found_dead"] == 1
    pool.release(second)
    wait_for(lambda: second.state is ContainerState.IDLE)
    checks = sandbox_of(second).liveness_checks
    assert pool.acquire() is second
    assert sandbox_of(second).liveness_checks == checks + 1


def test_a_sandbox_that_differs_from_its_baseline_is_destroyed(
    make_pool: Any, behaviour: Behaviour
) -> None:
    pool = make_pool(max_pool_size=1)
    first = pool.acquire()
    sandbox = sandbox_of(first)
    behaviour.fingerprint = "a library was installed"
    pool.release(first)
    second = pool.acquire()
    assert second is not first
    wait_for(lambda: sandbox.closed == 1)


def test_max_container_uses_recycles(make_pool: Any) -> None:
    pool = make_pool(max_pool_size=1, max_container_uses=2)
    first = pool.acquire()
    sandbox = sandbox_of(first)
    pool.release(first)
    assert pool.acquire() is first
    pool.release(first)
    third = pool.acquire()
    assert third is not first
    wait_for(lambda: sandbox.closed == 1)


def test_max_container_lifetime_recycles(make_pool: Any) -> None:
    pool = make_pool(max_pool_size=1, max_container_lifetime=0.2)
    first = pool.acquire()
    time.sleep(0.25)
    pool.release(first)
    assert pool.acquire() is not first


def test_idle_sandboxes_shrink_to_min_pool_size(make_pool: Any) -> None:
    pool = make_pool(max_pool_size=4, min_pool_size=1, idle_timeout=0.2)
    held = [pool.acquire() for _ in range(4)]
    for container in held:
        pool.release(container)
    wait_for(lambda: idle(pool) == 4)
    wait_for(lambda: pool.get_stats()["total_size"] == 1)
    assert idle(pool) == 1


def test_health_checks_remove_idle_sandboxes_that_fail(
    make_pool: Any, behaviour: Behaviour
) -> None:
    pool = make_pool(max_pool_size=2, min_pool_size=1, health_check_interval=0.1)
    wait_for(lambda: idle(pool) == 1)
    first = next(iter(pool.containers()))
    sandbox = sandbox_of(first)
    behaviour.wipe_fails = True
    wait_for(lambda: sandbox.closed == 1)
    behaviour.wipe_fails = False
    wait_for(lambda: idle(pool) == 1)
    assert pool.acquire() is not first
    assert first.use_count == 0  # checks are not uses


# --- close -----------------------------------------------------------------------------------
def test_close_destroys_everything_and_wakes_waiters(make_pool: Any, behaviour: Behaviour) -> None:
    pool = make_pool(max_pool_size=2, min_pool_size=1)
    wait_for(lambda: idle(pool) == 1)
    busy = pool.acquire()
    behaviour.open_delay = 0.3
    pool.acquire  # noqa: B018 - the next acquire opens the second, slowly
    errors: list[BaseException] = []
    opener = threading.Thread(target=lambda: _catch(errors, pool.acquire))
    opener.start()
    wait_for(lambda: pool.get_stats()["state_counts"]["initializing"] == 1)
    pool.close()
    opener.join()
    assert all(s.closed == 1 for s in behaviour.opened)
    assert len(behaviour.opened) == 2
    assert isinstance(errors[0], (PoolClosedError,)) or errors == []
    stats = pool.get_stats()
    assert stats["closed"]
    assert stats["total_size"] == 0
    pool.release(busy)  # after close: nothing to do
    with pytest.raises(PoolClosedError):
        pool.acquire()
    pool.close()  # idempotent


def _catch(errors: list[BaseException], call: Callable[[], object]) -> None:
    try:
        call()
    except BaseException as exc:
        errors.append(exc)


def test_context_manager_closes(behaviour: Behaviour) -> None:
    with create_pool_manager(backend="fakepool", config=PoolConfig(min_pool_size=2)) as pool:
        wait_for(lambda: idle(pool) == 2)
    assert pool.closed
    assert all(s.closed == 1 for s in behaviour.opened)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"commit_container": True}, "commit_container=True cannot be pooled"),
        (
            {"runtime_config": {"volumes": {"/srv/data": {"bind": "/data", "mode": "rw"}}}},
            "writable volumes or mounts",
        ),
        (
            {"mounts": [{"Target": "/data", "Source": "/srv/data", "Type": "bind"}]},
            "writable volumes or mounts",
        ),
    ],
)
def test_what_a_wipe_cannot_clean_is_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        create_pool_manager(backend="docker", **options)
