"""Run the app on uvicorn. SIGTERM/SIGINT: stop accepting, give in-flight requests
`shutdown_grace` seconds to finish, cancel the rest (which kills their runs), then close every
sandbox (the app's lifespan) and exit: with status 0 after SIGTERM (a clean shutdown, as a
process manager asked), as interrupted (130) after SIGINT."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator

import uvicorn

from llm_sandbox.service.app import create_app
from llm_sandbox.service.keys import KeyStore
from llm_sandbox.service.settings import ServiceSettings


def serve(
    settings: ServiceSettings,
    host: str = "127.0.0.1",
    port: int = 8000,
    keys_file: str | None = None,
) -> None:
    keys = KeyStore(keys_file or settings.keys_file)
    if not keys.list():
        print(
            f"llm-sandbox serve: no API keys in {keys.path}: every request but /healthz and "
            "/readyz will be refused; create one with `llm-sandbox keys create NAME`",
            file=sys.stderr,
        )
    app = create_app(settings, keys)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace)),
        log_level="info",
        lifespan="on",
    )
    _Server(config).run()


class _Server(uvicorn.Server):
    """uvicorn's server, except that a SIGTERM it shut down for cleanly is not raised again
    afterwards (uvicorn re-raises the signals it caught, which would make a clean shutdown
    end as killed by SIGTERM)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list):
                    captured[:] = [s for s in captured if s != signal.SIGTERM]
