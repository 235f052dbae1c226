"""One-shot sandboxes from warm pools (`pool_size` > 0): one pool per language, made on first
use; a run borrows a clean sandbox and gives it back (the pool wipes it). A request asking for
other memory than the pool's gets a fresh sandbox instead (`OneShot`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.to_thread

from llm_sandbox.aio import AsyncSandboxSession
from llm_sandbox.exceptions import SandboxError
from llm_sandbox.pool import PoolConfig, PooledSandboxSession, create_pool_manager
from llm_sandbox.pool.manager import ContainerPoolManager
from llm_sandbox.service.errors import from_sandbox_error
from llm_sandbox.service.sandboxes import OneShot, session_options
from llm_sandbox.service.settings import ServiceSettings


class PooledOneShot(OneShot):
    """`OneShot` whose sandboxes come from a pool per language."""

    def __init__(self, settings: ServiceSettings) -> None:
        super().__init__(settings)
        self._pools: dict[str, ContainerPoolManager] = {}
        self._making = anyio.Lock()

    def pool_config(self) -> PoolConfig:
        size = self.settings.pool_size
        return PoolConfig(
            min_pool_size=size,
            max_pool_size=max(size, self.settings.limits.concurrent_runs),
        )

    async def pool(self, lang: str) -> ContainerPoolManager:
        async with self._making:
            if lang not in self._pools:
                options: dict[str, Any] = session_options(self.settings, None)
                backend = options.pop("backend")
                options.pop("default_timeout", None)
                try:
                    self._pools[lang] = await anyio.to_thread.run_sync(
                        lambda: create_pool_manager(
                            backend=backend, config=self.pool_config(), lang=lang, **options
                        )
                    )
                except SandboxError as exc:
                    raise from_sandbox_error(exc) from exc
            return self._pools[lang]

    @contextlib.asynccontextmanager
    async def session(self, lang: str, memory: int | None) -> AsyncIterator[AsyncSandboxSession]:
        if memory is not None and memory != self.settings.memory:
            async with super().session(lang, memory) as fresh:
                yield fresh
            return
        manager = await self.pool(lang)
        session = AsyncSandboxSession.wrap(
            PooledSandboxSession(pool=manager, default_timeout=self.settings.default_timeout)
        )
        try:
            await session.open()
        except SandboxError as exc:
            raise from_sandbox_error(exc) from exc
        async with self.lent(session):
            yield session

    async def close(self) -> None:
        await super().close()
        pools, self._pools = list(self._pools.values()), {}
        with anyio.CancelScope(shield=True):
            for manager in pools:
                await anyio.to_thread.run_sync(manager.close)
