"""`AsyncSandboxPool`, the async face of a pool, under asyncio and trio (on the poolable test
double): acquire and release awaited, sessions borrowing from it, and a cancelled acquire
that stops waiting at once and leaves nothing taken."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio
import pytest

from llm_sandbox.aio import AsyncSandboxPool, AsyncSandboxSession
from llm_sandbox.pool import ContainerState, PoolConfig, PooledSandboxSession
from pool_double import Behaviour


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def pool(behaviour: Behaviour) -> AsyncIterator[AsyncSandboxPool]:
    config = PoolConfig(max_pool_size=1, min_pool_size=1, acquisition_timeout=30.0)
    async with AsyncSandboxPool(config=config, backend="fakepool", workdir="/sandbox") as pool:
        yield pool


@pytest.mark.anyio
async def test_acquire_and_release_are_awaited(pool: AsyncSandboxPool) -> None:
    container = await pool.acquire()
    assert container.state is ContainerState.BUSY
    await pool.release(container)
    stats = await pool.get_stats()
    assert stats["acquisitions"] == 1


@pytest.mark.anyio
async def test_a_session_borrows_from_the_async_pool(pool: AsyncSandboxPool) -> None:
    async with AsyncSandboxSession(pool=pool) as session:
        assert isinstance(session.sync, PooledSandboxSession)
        assert session.sync.pool_manager is pool.sync
        assert (await session.run("out hello")).stdout == "hello\n"


@pytest.mark.anyio
async def test_a_cancelled_acquire_stops_waiting_at_once(pool: AsyncSandboxPool) -> None:
    held = await pool.acquire()  # the only sandbox: the next acquire waits
    started = time.monotonic()
    with anyio.move_on_after(0.2):
        await pool.acquire()
    took = time.monotonic() - started
    assert took < 1.0, f"the cancelled acquire waited {took:.2f} s (acquisition_timeout: 30)"
    assert not pool.sync._waiters  # it left the queue
    await pool.release(held)
    again = await pool.acquire()  # the sandbox went to no one else
    assert again is held
    await pool.release(again)


@pytest.mark.anyio
async def test_closing_the_async_pool_closes_the_pool(behaviour: Behaviour) -> None:
    async with AsyncSandboxPool(config=PoolConfig(max_pool_size=1), backend="fakepool") as pool:
        await pool.release(await pool.acquire())
    assert pool.closed
