"""The ASGI app: health, readiness, schema and docs, the REST API and the Piston adapter.

`create_app(settings)` builds it; its lifespan starts the idle-session reaper and, at shutdown,
closes every sandbox (client sessions and one-shot runs) before the process exits.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from llm_sandbox.exceptions import SandboxError
from llm_sandbox.service import openapi, piston, playground, rest
from llm_sandbox.service.errors import ApiError, from_sandbox_error
from llm_sandbox.service.keys import KeyStore
from llm_sandbox.service.pooled import PooledOneShot
from llm_sandbox.service.sandboxes import open_session
from llm_sandbox.service.settings import ServiceSettings
from llm_sandbox.service.state import Service, service_of
from llm_sandbox.service.streaming import ClientGone

VERSION = "1"
READY_TIMEOUT = 60.0
READY_CACHE = 5.0
"""Seconds a readiness answer is reused."""


async def healthz(request: Request) -> Response:
    """The process is up (no sandbox is opened)."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when the backend opens a sandbox; 503 naming the reason otherwise.

    Public (probes carry no key), so one probe at a time opens a sandbox and its answer is
    reused for `READY_CACHE` seconds: hammering it cannot make the server open sandboxes."""
    service = service_of(request)
    probe: ReadyProbe = request.app.state.ready
    status, body = await probe.check(service)
    return JSONResponse(body, status_code=status)


class ReadyProbe:
    """The last readiness answer and when it was made."""

    def __init__(self) -> None:
        self._lock = anyio.Lock()
        self._answer: tuple[float, int, dict[str, Any]] | None = None

    async def check(self, service: Service) -> tuple[int, dict[str, Any]]:
        async with self._lock:
            now = time.monotonic()
            if self._answer is None or now - self._answer[0] > READY_CACHE:
                status, body = await _probe(service)
                self._answer = (time.monotonic(), status, body)
            return self._answer[1], self._answer[2]


async def _probe(service: Service) -> tuple[int, dict[str, Any]]:
    try:
        with anyio.fail_after(READY_TIMEOUT):
            session = await open_session(service.settings, "python")
            await session.close()
    except ApiError as exc:
        return 503, {"status": "unavailable", "error": {"code": exc.code, "message": exc.message}}
    except TimeoutError:
        message = f"the backend did not open a sandbox in {READY_TIMEOUT} s"
        return 503, {
            "status": "unavailable",
            "error": {"code": "backend_timeout", "message": message},
        }
    return 200, {"status": "ready", "backend": service.settings.backend or "auto"}


async def schema_json(request: Request) -> Response:
    """The OpenAPI schema of this server."""
    return JSONResponse(request.app.state.openapi)


async def docs(request: Request) -> Response:
    """The endpoints, listed from the schema."""
    return HTMLResponse(openapi.docs_page(request.app.state.openapi))


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if request.url.path.startswith("/api/v2/"):
        return await piston.piston_error(request, exc)
    return exc.response()


async def _sandbox_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SandboxError)
    return await _api_error(request, from_sandbox_error(exc))


async def _client_gone(request: Request, exc: Exception) -> Response:
    return Response(status_code=499)  # nobody reads it: the client disconnected


async def _no_mcp(request: Request) -> Response:
    """MCP over streamable HTTP (off: the mcp extra is missing, or the mcp setting is false)."""
    if not service_of(request).settings.mcp:
        raise ApiError(404, "mcp_off", "MCP is switched off on this server (the mcp setting)")
    raise ApiError(
        501, "mcp_not_installed", "MCP needs the mcp extra: pip install 'llm-sandbox[mcp]'"
    )


def _mcp_endpoint(service: Service) -> Any:
    """The MCP endpoint, or None when the `mcp` package is not installed."""
    try:
        from llm_sandbox.mcp_server.http import McpEndpoint
    except ImportError:
        return None
    return McpEndpoint(service)


def create_app(
    settings: ServiceSettings | None = None,
    keys: KeyStore | None = None,
    oneshot: Any = None,
) -> Starlette:
    """The service app; `oneshot` replaces where one-shot runs get sandboxes (a pool)."""
    settings = settings or ServiceSettings()
    if oneshot is None and settings.pool_size > 0:
        oneshot = PooledOneShot(settings)
    service = Service(settings, keys or KeyStore(settings.keys_file), oneshot=oneshot)
    mcp = _mcp_endpoint(service) if settings.mcp else None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            group.start_soon(service.sessions.reaper)
            try:
                async with mcp.lifespan() if mcp is not None else contextlib.nullcontext():
                    yield
            finally:
                group.cancel_scope.cancel()
                await service.sessions.close_all()
                await service.oneshot.close()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", schema_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        *rest.ROUTES,
        *piston.ROUTES,
        *playground.ROUTES,
        Route("/mcp", mcp if mcp is not None else _no_mcp, methods=["GET", "POST", "DELETE"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ApiError: _api_error,
            SandboxError: _sandbox_error,
            ClientGone: _client_gone,
        },
    )
    app.state.service = service
    app.state.ready = ReadyProbe()
    app.state.openapi = openapi.schema(routes, {**rest.BODIES, **piston.BODIES}, VERSION)
    return app
