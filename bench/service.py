"""The HTTP service under load: what `llm-sandbox serve` adds over the Python API.

Prints JSON (progress on stderr). Starts `llm-sandbox serve` (a real process on 127.0.0.1)
with `--backend` (local by default), then `--clients` concurrent clients send `--requests`
requests in all, each a one-shot run of `print(1)`:

    http      POST /v1/run (JSON result)
    piston    POST /api/v2/execute (Piston's shape)
    python    the same work in-process through the async API (open, run, close a session per
              request, `--clients` at once): what the service's own overhead is measured against

For each: requests per second, p50/p99 latency, errors; for the server, its RSS before the
first request and after the last (`/proc/PID/status`). `ratios` compares each HTTP mode with
the in-process one in the same run. Keep counts small on a shared machine (the defaults);
`--requests 10000` is the soak the issue asks for.

Run: python3 bench/service.py [--backend local] [--clients 8] [--requests 80] [--pool-size N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from serve_process import serving

ROOT = Path(__file__).resolve().parents[1]
CODE = "print(1)"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def summary(latencies: list[float], errors: int, elapsed: float) -> dict[str, Any]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else None
    return {
        "requests": len(latencies) + errors,
        "errors": errors,
        "requests_per_s": round(len(latencies) / elapsed, 2) if elapsed else None,
        "p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else None,
        "p99_ms": round(p99 * 1000, 1) if p99 is not None else None,
    }


async def load(send: Any, clients: int, requests: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    queue = iter(range(requests))

    async def client() -> None:
        nonlocal errors
        for _ in queue:
            started = time.monotonic()
            try:
                ok = await send()
            except Exception as exc:  # counted, and shown
                ok = False
                log(f"error: {exc!r}")
            if ok:
                latencies.append(time.monotonic() - started)
            else:
                errors += 1

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    return summary(latencies, errors, time.monotonic() - started)


async def over_http(url: str, token: str, clients: int, requests: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as http:

        async def rest() -> bool:
            answer = await http.post("/v1/run", json={"lang": "python", "code": CODE})
            return answer.status_code == 200 and answer.json()["stdout"] == "1\n"

        async def piston() -> bool:
            body = {"language": "python", "version": "*", "files": [{"content": CODE}]}
            answer = await http.post("/api/v2/execute", json=body)
            return answer.status_code == 200 and answer.json()["run"]["stdout"] == "1\n"

        return {
            "http": await load(rest, clients, requests),
            "piston": await load(piston, clients, requests),
        }


async def in_process(backend: str, clients: int, requests: int, pool_size: int) -> dict[str, Any]:
    """The same requests through the async API: a session per request, from a pool of the
    same size as the server's when it has one."""
    from llm_sandbox.aio import AsyncSandboxSession
    from llm_sandbox.pool import PoolConfig, PooledSandboxSession, create_pool_manager

    pool = None
    if pool_size:
        config = PoolConfig(min_pool_size=pool_size, max_pool_size=max(pool_size, 64))
        pool = create_pool_manager(backend=backend, config=config, lang="python")

    async def one() -> bool:
        if pool is not None:
            session = AsyncSandboxSession.wrap(PooledSandboxSession(pool=pool))
        else:
            session = AsyncSandboxSession("python", backend=backend)
        async with session:
            result = await session.run(CODE)
        return result.stdout == "1\n"

    try:
        return await load(one, clients, requests)
    finally:
        if pool is not None:
            pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="local")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=80)
    parser.add_argument("--pool-size", type=int, default=0)
    args = parser.parse_args()

    config = f'backend = "{args.backend}"\npool_size = {args.pool_size}\n'
    with serving(config) as server:
        rss_before = rss_kib(server.process.pid)
        log(f"server up (RSS {rss_before} KiB); {args.requests} requests x2 over HTTP")
        http = asyncio.run(over_http(server.url, server.token, args.clients, args.requests))
        rss_after = rss_kib(server.process.pid)
    log("the same work in-process")
    python = asyncio.run(in_process(args.backend, args.clients, args.requests, args.pool_size))
    report = {
        "backend": args.backend,
        "clients": args.clients,
        "pool_size": args.pool_size,
        **http,
        "python": python,
        "server_rss_kib": {"before": rss_before, "after": rss_after},
        "ratios": {
            f"{mode}_vs_python_requests_per_s": round(
                http[mode]["requests_per_s"] / python["requests_per_s"], 3
            )
            for mode in ("http", "piston")
            if http[mode]["requests_per_s"] and python["requests_per_s"]
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
