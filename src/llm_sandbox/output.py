"""Capped, decoding collection of a process's output, shared by every backend.

A stream keeps at most `limit` bytes; the rest is counted and dropped, so a flood costs no
memory. Text is decoded as UTF-8 with the session's error handler (replacement by default).
Live callbacks receive text as it arrives, decoded incrementally (a character split across
chunks is not mangled), capped the same way and always with replacement characters: a
callback never loses output to a decoding error.
"""

from __future__ import annotations

import codecs
import inspect
import logging
from collections.abc import Callable

OutputCallback = Callable[[str], object]
"""A live output callback. The async sessions (`llm_sandbox.aio`) also take coroutine
functions; the sync ones refuse them (see `CappedStream`)."""

logger = logging.getLogger("llm_sandbox")


class CappedStream:
    """Collects one output stream up to `limit` bytes."""

    def __init__(
        self,
        name: str,
        limit: int,
        callback: OutputCallback | None = None,
        errors: str = "replace",
    ) -> None:
        self.name = name
        self.limit = limit
        self.errors = errors
        self.total_bytes = 0
        self._chunks: list[bytes] = []
        self._kept = 0
        self._callback = callback
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def truncated(self) -> bool:
        return self.total_bytes > self.limit

    def feed(self, data: bytes) -> None:
        self.total_bytes += len(data)
        room = self.limit - self._kept
        if room <= 0:
            return
        kept = data[:room]
        self._chunks.append(kept)
        self._kept += len(kept)
        self._deliver(self._decoder.decode(kept))

    def finish(self) -> None:
        """Flush a partial character held by the live decoder."""
        self._deliver(self._decoder.decode(b"", final=True))

    @property
    def data(self) -> bytes:
        """The bytes kept."""
        return b"".join(self._chunks)

    def text(self) -> str:
        """The bytes kept, decoded with the stream's error handler (UnicodeDecodeError when it
        is "strict" and they are not UTF-8)."""
        return self.data.decode("utf-8", errors=self.errors)

    def replaced(self) -> str:
        """The bytes kept, decoded with replacement characters whatever the error handler."""
        return self.data.decode("utf-8", errors="replace")

    def _deliver(self, text: str) -> None:
        if not text or self._callback is None:
            return
        try:
            returned = self._callback(text)
        except Exception:
            logger.exception("%s callback raised; no more output is sent to it", self.name)
            self._callback = None
            return
        if inspect.isawaitable(returned):
            if inspect.iscoroutine(returned):
                returned.close()  # never awaited: no "coroutine was never awaited" warning
            logger.error(
                "the on_%s callback is a coroutine function, which a sync session cannot "
                "await; no output is sent to it. Use AsyncSandboxSession, or a plain function",
                self.name,
            )
            self._callback = None
