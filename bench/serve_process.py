"""`llm-sandbox serve` as a real process on 127.0.0.1 for the benchmarks, with one API key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Serving:
    url: str
    token: str
    process: subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serving(config: str) -> Iterator[Serving]:
    """The server with settings `config` (TOML), up (answering /healthz) until the block ends."""
    from llm_sandbox.service.keys import KeyStore

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        keys = Path(tmp) / "keys.json"
        token = KeyStore(keys).create("bench")
        settings = Path(tmp) / "service.toml"
        settings.write_text(config)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        server = subprocess.Popen(
            [sys.executable, "-m", "llm_sandbox", "serve", "--port", str(port),
             "--config", str(settings), "--keys", str(keys)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(300):
                try:
                    httpx.get(url + "/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            yield Serving(url, token, server)
        finally:
            server.terminate()
            server.wait(30)
