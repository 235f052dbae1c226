"""A real `llm-sandbox serve` app on uvicorn, bound to 127.0.0.1 on a free port, in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from llm_sandbox.service.app import create_app
from llm_sandbox.service.keys import KeyStore
from llm_sandbox.service.settings import ServiceSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Running:
    url: str
    keys: KeyStore
    app: Any

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        kwargs.setdefault("timeout", 60)
        return httpx.Client(base_url=self.url, headers=headers, **kwargs)

    @property
    def service(self) -> Any:
        return self.app.state.service


@contextmanager
def running_server(tmp: Path, settings: ServiceSettings | None = None) -> Iterator[Running]:
    settings = settings or ServiceSettings(backend="local")
    keys = KeyStore(tmp / "keys.json")
    app = create_app(settings, keys)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield Running(f"http://127.0.0.1:{port}", keys, app)
    finally:
        server.should_exit = True
        thread.join(30)
