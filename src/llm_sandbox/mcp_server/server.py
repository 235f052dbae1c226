"""The MCP server over stdio: `llm-sandbox mcp`, `llm-sandbox-mcp`,
`python -m llm_sandbox.mcp_server.server`.

Sessions of a stdio client are closed when it goes away (stdin closes or SIGTERM comes: the
server closes them all and exits) and, before that, when idle past the `session_ttl` setting.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer

from llm_sandbox import __version__
from llm_sandbox.exceptions import ConfigurationError
from llm_sandbox.mcp_server.environment import mcp_settings
from llm_sandbox.mcp_server.tools import SandboxTools
from llm_sandbox.service.keys import KeyStore
from llm_sandbox.service.settings import ServiceSettings
from llm_sandbox.service.state import Service

INSTRUCTIONS = (
    "Run untrusted code in an isolated sandbox. execute_code runs one program in a fresh "
    "sandbox; create_session keeps files (and, interactive, variables) across run_in_session "
    "calls until close_session or its idle TTL."
)
STDIO_OWNER = "stdio"


def create_server(
    service: Service, local_owner: str | None = None, *, owns_service: bool = False
) -> MCPServer[Any]:
    """An MCP server with the sandbox tools over `service`. With `owns_service` (stdio), its
    lifespan runs the session reaper and closes every sandbox at the end."""
    lifespan = None
    if owns_service:

        @contextlib.asynccontextmanager
        async def lifespan(server: MCPServer[Any]) -> AsyncIterator[None]:
            async with anyio.create_task_group() as group:
                group.start_soon(service.sessions.reaper)
                try:
                    yield
                finally:
                    group.cancel_scope.cancel()
                    await service.sessions.close_all()
                    await service.oneshot.close()

    server: MCPServer[Any] = MCPServer(
        "llm-sandbox",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level="WARNING",
    )
    SandboxTools(service, local_owner).register(server)
    return server


def run_stdio(settings: ServiceSettings) -> None:
    service = Service(settings, KeyStore(settings.keys_file))
    logging.getLogger("llm_sandbox.mcp").info(
        "Starting MCP server with backend: %s", settings.backend or "auto"
    )
    anyio.run(_serve_stdio, service, create_server(service, STDIO_OWNER, owns_service=True))


async def _serve_stdio(service: Service, server: MCPServer[Any]) -> None:
    """Serve until stdin closes (the lifespan then closes every sandbox), or until SIGTERM or
    SIGINT, how MCP clients stop a server that did not exit: every sandbox is closed, then the
    process exits at once (the SDK reads stdin in a thread that no cancellation reaches)."""
    async with anyio.create_task_group() as group:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    await service.sessions.close_all()  # also waits for a close in progress
                    await service.oneshot.close()
                    os._exit(0)

        group.start_soon(stop_on_signal)
        await server.run_stdio_async()
        group.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    """`llm-sandbox-mcp [--config FILE]`: serve the tools over stdio."""
    import argparse

    parser = argparse.ArgumentParser(prog="llm-sandbox-mcp", description=__doc__)
    parser.add_argument("--config", default=None, help="settings file (TOML or JSON)")
    args = parser.parse_args(argv)
    try:
        settings = mcp_settings(args.config)
    except ConfigurationError as exc:
        print(f"llm-sandbox mcp: {exc}", file=sys.stderr)
        return 2
    run_stdio(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
