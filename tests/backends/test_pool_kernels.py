"""Pools of interactive sandboxes (`kernels=True`): `InteractiveSandboxSession(pool=pool)`
gets a sandbox whose kernel is already started, and the reset between users kills that
kernel with everything else and starts a fresh one: user B sees nothing of A's state."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from conftest import pool_of_one
from llm_sandbox import InteractiveSandboxSession
from llm_sandbox.exceptions import ConfigurationError
from llm_sandbox.pool import ContainerPoolManager, PoolConfig, create_pool_manager
from llm_sandbox.pool.session import PooledInteractiveSandboxSession


@pytest.fixture
def pool(backend: str) -> Iterator[ContainerPoolManager]:
    with pool_of_one(backend, kernels=True) as pool:
        yield pool


def _warm(pool: ContainerPoolManager) -> None:
    deadline = time.monotonic() + 120
    while not any(c.prepared is not None and c.prepared.kernel for c in pool.containers()):
        assert time.monotonic() < deadline, "no warm kernel in time"
        time.sleep(0.05)


def test_the_kernel_is_started_and_b_cannot_see_a(backend: str, pool: ContainerPoolManager) -> None:
    _warm(pool)
    started = time.monotonic()
    with InteractiveSandboxSession(pool=pool) as a:
        took = time.monotonic() - started
        assert isinstance(a, PooledInteractiveSandboxSession)
        assert took < 0.5, f"opening on a warm kernel took {took:.2f} s"
        a.run("import os\nsecret = 41\nos.environ['A_WAS_HERE'] = '1'")
        assert a.run("print(secret + 1)").stdout == "42\n"
        first = a.pooled_container
    with InteractiveSandboxSession(pool=pool, history_size=5) as b:
        assert isinstance(b, PooledInteractiveSandboxSession)
        assert b.pooled_container is first  # the same sandbox, its kernel restarted
        seen = b.run("import os\nprint('secret' in globals(), 'A_WAS_HERE' in os.environ)")
        assert seen.stdout == "False False\n"
        assert b.run("x = 1\nprint(x)").stdout == "1\n"
        assert len(b.history) == 2  # B's cells only: A's history went with A's kernel


def test_kernels_need_a_language_with_kernels(backend: str) -> None:
    if backend != "local":
        pytest.skip("checked before any sandbox opens: one backend is enough")
    with pytest.raises(ConfigurationError, match="kernels=True"):
        create_pool_manager(backend="local", lang="go", kernels=True)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.mark.anyio
async def test_async_sessions_borrow_warm_kernels(backend: str, anyio_backend: str) -> None:
    if backend != "local":
        pytest.skip("the async face is backend-independent: one backend is enough")
    from llm_sandbox.aio import AsyncInteractiveSandboxSession, AsyncSandboxPool

    config = PoolConfig(max_pool_size=1, min_pool_size=1)
    async with AsyncSandboxPool(config=config, backend="local", kernels=True) as pool:
        async with AsyncInteractiveSandboxSession(pool=pool) as a:
            await a.run("secret = 41")
            assert (await a.run("print(secret + 1)")).stdout == "42\n"
        async with AsyncInteractiveSandboxSession(pool=pool) as b:
            assert (await b.run("print('secret' in globals())")).stdout == "False\n"
