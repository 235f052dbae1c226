"""`llm-sandbox serve`: the HTTP service (REST + server-sent events, Piston v2), with API keys
and per-key limits. Install the `service` extra: `pip install 'llm-sandbox[service]'`.

Modules: `settings` (file/environment), `keys` (hashed API keys), `quotas` (per-key limits),
`schema` (strict request bodies), `errors` (JSON errors), `sandboxes` (client sessions, TTL,
one-shot sandboxes), `pooled` (one-shot sandboxes from warm pools), `streaming` (SSE and JSON
answers tied to the connection), `rest` (sessions and runs), `files`, `piston`, `openapi`,
`app` (the ASGI app), `server` (uvicorn, signals).
"""

from __future__ import annotations

from llm_sandbox.exceptions import MissingDependencyError

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is installed wherever tests run
    raise MissingDependencyError(
        "the HTTP service needs starlette and uvicorn: pip install 'llm-sandbox[service]'"
    ) from exc
