"""The MCP tools over streamable HTTP, mounted in `llm-sandbox serve` at `/mcp`: every request
must carry one of the service's API keys (`Authorization: Bearer KEY`), the same keys, quotas
and sessions as the REST API."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from llm_sandbox.mcp_server.server import create_server
from llm_sandbox.service.errors import ApiError
from llm_sandbox.service.state import Service

PATH = "/mcp"


class McpEndpoint:
    """An ASGI endpoint: authenticate, then hand the request to the SDK's transport."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.server = create_server(service)
        # The API key guards this endpoint, and browsers cannot send one cross-origin (no CORS),
        # so the SDK's Host/Origin allow-list (for unauthenticated local servers) is not needed;
        # it would refuse a server reached by any name but localhost.
        self.app = self.server.streamable_http_app(
            streamable_http_path=PATH,
            max_request_body_size=service.settings.body_limit,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )

    def lifespan(self) -> AbstractAsyncContextManager[Any]:
        """Runs the SDK's session manager (enter it in the app's lifespan)."""
        return self.server.session_manager.run()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            self.service.authenticate(Request(scope, receive))
        except ApiError as exc:
            await exc.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)
