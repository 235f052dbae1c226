"""The async face of interactive sessions, on every backend, under asyncio and trio: cells
are awaited and keep their state; cancelling the task that awaits a cell interrupts it and the
kernel keeps its state; `create_context` gives another awaited kernel."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from conftest import backend_options
from llm_sandbox import AsyncInteractiveSandboxSession

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def _options(backend: str) -> dict[str, Any]:
    return {"lang": "python", **backend_options(backend)}


async def test_cells_keep_state_and_a_cancelled_cell_keeps_the_kernel(backend: str) -> None:
    async with AsyncInteractiveSandboxSession(**_options(backend)) as session:
        first = await session.run("x = 41")
        assert first.exit_code == 0, first.stderr
        assert (await session.run("x + 1")).results[0]["text/plain"] == "42"
        started = anyio.current_time()
        with anyio.move_on_after(1.0):
            await session.run("import time\nwhile True: time.sleep(0.05)")
        assert anyio.current_time() - started < 5.0
        after = await session.run("x")
        assert after.results[0]["text/plain"] == "41"
        assert session.kernel_restarts == 0
        history = session.history
        assert [entry.status for entry in history][-2:] == ["interrupted", "ok"]


async def test_a_second_kernel_is_awaited_too(backend: str) -> None:
    async with AsyncInteractiveSandboxSession(**_options(backend)) as session:
        await session.run("y = 1")
        # a kernel of its own; its async face (typed as the sync context it wraps)
        other: Any = await session.create_context(lang="python")
        result = await other.run("y = 6 * 7; y")
        assert result.results[0]["text/plain"] == "42"
        assert (await session.run("y")).results[0]["text/plain"] == "1"
