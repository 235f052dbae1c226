"""The web playground at `/`: one static page with its script and style, served from the
package (no build step, no CDN). The page needs no key to load; it asks for one and talks to
the REST/SSE endpoints with it."""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llm_sandbox.service.errors import ApiError

_FILES = {
    "index.html": "text/html; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
    "playground.css": "text/css; charset=utf-8",
}
_HEADERS = {
    # Only this origin's scripts, styles and data: images (plots); no inline script, no framing.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> Response:
    data = resources.files("llm_sandbox.service").joinpath("playground", name).read_bytes()
    return Response(data, media_type=_FILES[name], headers=_HEADERS)


async def page(request: Request) -> Response:
    """The web playground (no key needed to load it)."""
    return _file("index.html")


async def asset(request: Request) -> Response:
    """The playground's script and style."""
    name = request.path_params["name"]
    if name not in _FILES or name == "index.html":
        raise ApiError(404, "not_found", f"no playground file {name!r}")
    return _file(name)


ROUTES = [
    Route("/", page, methods=["GET"]),
    Route("/playground/{name}", asset, methods=["GET"]),
]
