"""The MCP tools over streamable HTTP at `/mcp` of a real `serve` (uvicorn on 127.0.0.1),
driven by the SDK's streamable-HTTP client: the same API keys, quotas and sessions as REST."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from llm_sandbox.service.settings import KeyLimits, ServiceSettings
from mcp_support import answer, error_text
from service_server import Running, running_server

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    settings = ServiceSettings(backend="local", limits=KeyLimits(max_timeout=10))
    with running_server(tmp_path_factory.mktemp("mcp-http"), settings) as running:
        yield running


@contextlib.asynccontextmanager
async def client(server: Running, key: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=120) as http:
        transport = streamable_http_client(f"{server.url}/mcp", http_client=http)
        async with Client(transport) as connected:
            yield connected


def test_mcp_needs_a_valid_key(server: Running) -> None:
    hello = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    with server.client() as http:
        assert http.post("/mcp", json=hello).status_code == 401
    with server.client("not-a-key") as http:
        refused = http.post("/mcp", json=hello)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_key"


def test_tools_over_http_share_the_keys_sessions(server: Running) -> None:
    key = server.keys.create("mcp-alice")
    other = server.keys.create("mcp-bob")

    async def main() -> None:
        async with client(server, key) as alice:
            ran = answer(await alice.call_tool("execute_code", {"code": "print(1)"}))
            assert ran["stdout"] == "1\n"
            over = error_text(
                await alice.call_tool("execute_code", {"code": "print(1)", "timeout": 11})
            )
            assert "max_timeout" in over
            sid = answer(await alice.call_tool("create_session", {"interactive": True}))[
                "session_id"
            ]
            await alice.call_tool("run_in_session", {"session_id": sid, "code": "x = 6 * 7"})
            cell = await alice.call_tool("run_in_session", {"session_id": sid, "code": "print(x)"})
            assert answer(cell)["stdout"] == "42\n"
            # the session is the key's: REST with the same key sees it, another key does not
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                mine = await http.get("/v1/sessions", headers={"Authorization": f"Bearer {key}"})
                assert [s["id"] for s in mine.json()["sessions"]] == [sid]
                theirs = await http.get(
                    f"/v1/sessions/{sid}", headers={"Authorization": f"Bearer {other}"}
                )
                assert theirs.status_code == 404
        async with client(server, other) as bob:
            hidden = error_text(
                await bob.call_tool("run_in_session", {"session_id": sid, "code": "print(x)"})
            )
            assert sid in hidden
        async with client(server, key) as again:  # a new MCP connection, the same key's session
            cell = await again.call_tool("run_in_session", {"session_id": sid, "code": "print(x)"})
            assert answer(cell)["stdout"] == "42\n"
            assert answer(await again.call_tool("close_session", {"session_id": sid}))

    anyio.run(main)


def test_mcp_can_be_switched_off(tmp_path: Path) -> None:
    settings = ServiceSettings(backend="local", mcp=False)
    with running_server(tmp_path, settings) as off, off.client(off.keys.create("k")) as http:
        refused = http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "mcp_off"
