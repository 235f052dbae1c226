"""Server-sent events for a run: `stdout` and `stderr` chunks as they come, then `result` (the
final result, with the exact exit code) or `error`.

The run is tied to the connection: when the client disconnects, the task running it is
cancelled, which (through the async API) kills every process of the run; then the resources
the request held (its sandbox, its quota) are given back.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from llm_sandbox.exceptions import SandboxError
from llm_sandbox.service.errors import ApiError, from_sandbox_error

T = TypeVar("T")
Emit = Callable[[str, Any], Awaitable[None]]
Work = Callable[[Emit], Awaitable[dict[str, Any]]]


def event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


class EventStream(Response):
    """An ASGI response streaming `work`'s events; `held` is closed when the stream ends."""

    def __init__(self, work: Work, held: AsyncExitStack) -> None:
        super().__init__(status_code=200, media_type="text/event-stream")
        self.work = work
        self.held = held
        self.disconnected = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with self.held:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )

            async def emit(name: str, data: Any) -> None:
                await send(
                    {"type": "http.response.body", "body": event(name, data), "more_body": True}
                )

            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    while True:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            self.disconnected = True
                            group.cancel_scope.cancel()
                            return

                group.start_soon(watch)
                try:
                    result = await self.work(emit)
                    await emit("result", result)
                except ApiError as exc:
                    await emit("error", {"code": exc.code, "message": exc.message})
                except SandboxError as exc:
                    error = from_sandbox_error(exc)
                    await emit("error", {"code": error.code, "message": error.message})
                group.cancel_scope.cancel()
            if not self.disconnected:
                await send({"type": "http.response.body", "body": b"", "more_body": False})


async def unless_disconnected(receive: Receive, work: Callable[[], Awaitable[T]]) -> T:
    """`await work()`, cancelled (which kills its run) if the client goes away meanwhile.

    For answers that are not streamed: the body was read already, so the next message the
    server gets for this request is the disconnect."""
    outcome: list[T] = []
    failure: list[Exception] = []
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

        group.start_soon(watch)
        try:
            outcome.append(await work())
        except Exception as exc:  # raised as it is, not inside an exception group
            failure.append(exc)
        group.cancel_scope.cancel()
    if failure:
        raise failure[0]
    if not outcome:  # cancelled by the disconnect: nobody is left to answer
        raise ClientGone
    return outcome[0]


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""
