"""Image formats of captured plots: which files are plots, their MIME types and pixel sizes.

Pure functions on bytes. Sizes come from the file headers only (PNG's IHDR, GIF's logical
screen, JPEG's start-of-frame, an SVG root's width/height or viewBox); nothing is decoded.
"""

from __future__ import annotations

import mimetypes
import posixpath
import re
import struct

PLOT_FORMATS = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
    "html": "text/html",
}
"""Formats a plot hook may write (by file extension), with their MIME types."""
IMAGE_FORMATS = ("png", "jpeg", "gif", "webp", "svg")
"""Formats that make a file written to the artifacts directory a plot rather than a file."""
_ALIASES = {"jpg": "jpeg", "htm": "html"}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SVG_ROOT = re.compile(rb"<svg\b[^>]*>", re.IGNORECASE | re.DOTALL)
_ATTRIBUTE = r"""\b{name}\s*=\s*["']\s*([0-9.]+)\s*([a-z%]*)\s*["']"""
_CSS_PIXELS = {"": 1.0, "px": 1.0, "pt": 96 / 72, "pc": 16.0, "in": 96.0, "cm": 96 / 2.54}
_CSS_PIXELS["mm"] = 96 / 25.4


def format_of(name: str) -> str | None:
    """The plot format named by a file's extension (`jpg` → `jpeg`), or None."""
    ext = posixpath.splitext(name)[1].lower().lstrip(".")
    ext = _ALIASES.get(ext, ext)
    return ext if ext in PLOT_FORMATS else None


def mime_type(name: str) -> str:
    """A file's MIME type guessed from its name; `application/octet-stream` when unknown."""
    fmt = format_of(name)
    if fmt is not None:
        return PLOT_FORMATS[fmt]
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def dimensions(fmt: str, content: bytes) -> tuple[int | None, int | None]:
    """(width, height) in pixels when the header says; (None, None) otherwise."""
    try:
        if fmt == "png":
            return _png(content)
        if fmt == "gif" and content[:4] == b"GIF8" and len(content) >= 10:
            width, height = struct.unpack("<HH", content[6:10])
            return width, height
        if fmt == "jpeg":
            return _jpeg(content)
        if fmt == "svg":
            return _svg(content)
    except (struct.error, ValueError):
        pass
    return None, None


def _png(content: bytes) -> tuple[int | None, int | None]:
    if content[:8] != _PNG_SIGNATURE or content[12:16] != b"IHDR":
        return None, None
    width, height = struct.unpack(">II", content[16:24])
    return width, height


def _jpeg(content: bytes) -> tuple[int | None, int | None]:
    if content[:2] != b"\xff\xd8":
        return None, None
    at = 2
    while at + 9 < len(content):
        if content[at] != 0xFF:
            return None, None
        marker = content[at + 1]
        length = struct.unpack(">H", content[at + 2 : at + 4])[0]
        # Start-of-frame markers (baseline, progressive, ...), not DHT/JPG/DAC.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", content[at + 5 : at + 9])
            return width, height
        at += 2 + length
    return None, None


def _svg(content: bytes) -> tuple[int | None, int | None]:
    root = _SVG_ROOT.search(content[:65536])
    if root is None:
        return None, None
    tag = root.group(0).decode("utf-8", errors="replace")
    width, height = _length(tag, "width"), _length(tag, "height")
    if width is None or height is None:
        box = re.search(r"""\bviewBox\s*=\s*["']([^"']*)["']""", tag)
        numbers = box.group(1).replace(",", " ").split() if box else []
        if len(numbers) != 4:
            return None, None
        width, height = round(float(numbers[2])), round(float(numbers[3]))
    return width, height


def _length(tag: str, name: str) -> int | None:
    match = re.search(_ATTRIBUTE.format(name=name), tag)
    if match is None or match.group(2) not in _CSS_PIXELS:
        return None
    return round(float(match.group(1)) * _CSS_PIXELS[match.group(2)])
