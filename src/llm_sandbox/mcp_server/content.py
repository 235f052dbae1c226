"""A run's result as MCP content: its plots (and a cell's image results) as image content,
then the result as JSON text (exit code, stdout, stderr, verdict)."""

from __future__ import annotations

import json
from typing import Any

from mcp import types

from llm_sandbox.results import ConsoleOutput
from llm_sandbox.service.rest import result_json

Content = types.ImageContent | types.TextContent

_PLOT_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "svg": "image/svg+xml",
}
_CELL_IMAGES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def result_content(result: ConsoleOutput) -> list[Content]:
    """Images first (every plot of the run, in order), then the result as JSON text."""
    data: dict[str, Any] = result_json(result)
    images: list[Content] = []
    kept: list[dict[str, Any]] = []
    for plot in data.pop("plots", None) or ():
        mime = _PLOT_TYPES.get(str(plot.get("format")))
        if mime is None:  # pdf, html: not an image an MCP client shows; kept in the JSON
            kept.append(plot)
            continue
        images.append(types.ImageContent(type="image", data=plot["content_base64"], mime_type=mime))
    if kept:
        data["plots"] = kept
    for bundle in data.get("results") or ():
        for mime in _CELL_IMAGES:
            if isinstance(bundle.get(mime), str):
                images.append(types.ImageContent(type="image", data=bundle[mime], mime_type=mime))
                bundle[mime] = "(sent as image content)"
    data.pop("files", None)
    return [*images, types.TextContent(type="text", text=json.dumps(data, indent=2))]


def text(data: Any) -> types.TextContent:
    return types.TextContent(type="text", text=json.dumps(data, indent=2))
