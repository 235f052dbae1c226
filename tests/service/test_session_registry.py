"""`SessionRegistry.close_all`: a second call (a signal during shutdown) returns only when the
sessions the first call is closing are closed."""

from __future__ import annotations

from typing import Any

import anyio

from llm_sandbox.service.sandboxes import HeldSession, SessionRegistry


class SlowToClose:
    """Stands in for a session (only `close` is used): closing lasts until `release` is set."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.closed = False

    async def close(self) -> None:
        self.started.set()
        await self.release.wait()
        self.closed = True


def test_a_second_close_all_waits_for_the_first() -> None:
    async def main() -> None:
        registry = SessionRegistry()
        slow = SlowToClose()
        fake: Any = slow
        registry.add(HeldSession("ses_1", "k", "python", fake, ttl=60, plots=False))
        returned: list[bool] = []
        calling = anyio.Event()

        async def second() -> None:
            await slow.started.wait()
            calling.set()
            await registry.close_all()  # nothing left to close, but one is being closed
            returned.append(slow.closed)

        async with anyio.create_task_group() as group:
            group.start_soon(registry.close_all)
            group.start_soon(second)
            await calling.wait()
            await anyio.sleep(0.2)  # room to return early, were it wrong (not a timing check)
            assert returned == []
            slow.release.set()
        assert returned == [True]

    anyio.run(main)
