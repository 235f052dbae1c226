"""The MCP tool round trip: `execute_code("print(1)")` over stdio and over streamable HTTP,
against the same run through the Python API, all in one run.

Prints JSON (progress on stderr). One client calls one run after another (`--runs` each,
after one warm-up call):

    stdio     the SDK's client talking to `python -m llm_sandbox.mcp_server.server`
    http      the SDK's streamable-HTTP client talking to `/mcp` of `llm-sandbox serve` (a real
              process on 127.0.0.1, one API key)
    python    `AsyncArtifactSandboxSession` in this process: open, run, close (what
              `execute_code` does for python, which captures plots)

For each: p50/p95 seconds per call; `ratios` divides each MCP median by the Python one.

Run: python3 bench/mcp_roundtrip.py [--backend local] [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from serve_process import serving

ROOT = Path(__file__).resolve().parents[1]
CODE = "print(1)"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def timed(call: Callable[[], Awaitable[None]], runs: int) -> dict[str, Any]:
    await call()  # warm-up
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        await call()
        seconds.append(time.perf_counter() - start)
    seconds.sort()
    return {
        "runs": runs,
        "p50_s": round(statistics.median(seconds), 4),
        "p95_s": round(seconds[min(len(seconds) - 1, int(len(seconds) * 0.95))], 4),
    }


async def over_mcp(client: Client, runs: int) -> dict[str, Any]:
    async def call() -> None:
        result = await client.call_tool("execute_code", {"code": CODE})
        if result.is_error:
            raise RuntimeError(f"execute_code failed: {result.content}")

    return await timed(call, runs)


async def stdio(backend: str, runs: int) -> dict[str, Any]:
    env = {"PYTHONPATH": str(ROOT / "src"), "BACKEND": backend}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "llm_sandbox.mcp_server.server"], env=env
    )
    async with Client(params) as client:
        return await over_mcp(client, runs)


async def http(url: str, token: str, runs: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=120) as session:
        transport = streamable_http_client(url + "/mcp", http_client=session)
        async with Client(transport) as client:
            return await over_mcp(client, runs)


async def python(backend: str, runs: int) -> dict[str, Any]:
    from llm_sandbox.aio import AsyncArtifactSandboxSession

    async def call() -> None:
        async with AsyncArtifactSandboxSession("python", backend=backend) as session:
            await session.run(CODE)

    return await timed(call, runs)


def with_server(backend: str, runs: int) -> dict[str, Any]:
    with serving(f'backend = "{backend}"\n') as server:
        return anyio.run(http, server.url, server.token, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="local")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    log(f"stdio: {args.runs} calls")
    over_stdio = anyio.run(stdio, args.backend, args.runs)
    log(f"http: {args.runs} calls")
    over_http = with_server(args.backend, args.runs)
    log(f"python: {args.runs} runs")
    in_python = anyio.run(python, args.backend, args.runs)
    report = {
        "backend": args.backend,
        "stdio": over_stdio,
        "http": over_http,
        "python": in_python,
        "ratios": {
            f"{mode}_vs_python_p50": round(result["p50_s"] / in_python["p50_s"], 3)
            for mode, result in (("stdio", over_stdio), ("http", over_http))
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
