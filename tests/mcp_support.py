"""Helpers for the MCP tests: the server's command, tool results as data."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from mcp import StdioServerParameters, types

SRC = str(Path(__file__).resolve().parents[1] / "src")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def server_env(**extra: str) -> dict[str, str]:
    """What the spawned server gets: our sources first, the embedded backend, a short
    timeout limit, and `extra` (the SDK passes only a few variables of its own)."""
    path = os.environ.get("PYTHONPATH")
    return {
        "PYTHONPATH": SRC + (os.pathsep + path if path else ""),
        "BACKEND": "local",
        "LLM_SANDBOX_SERVICE_LIMITS_MAX_TIMEOUT": "60",
        **extra,
    }


def stdio(*args: str, command: str = sys.executable, **env: str) -> StdioServerParameters:
    return StdioServerParameters(command=command, args=list(args), env=server_env(**env))


def module_server(**env: str) -> StdioServerParameters:
    return stdio("-m", "llm_sandbox.mcp_server.server", **env)


def answer(result: types.CallToolResult) -> Any:
    """The JSON of a tool's text content (the last content block)."""
    assert not result.is_error, result.content
    last = result.content[-1]
    assert isinstance(last, types.TextContent)
    return json.loads(last.text)


def error_text(result: types.CallToolResult) -> str:
    assert result.is_error, result.content
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text
