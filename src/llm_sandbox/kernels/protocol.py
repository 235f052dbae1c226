"""The wire protocol between the host and a kernel runner, as pure functions (no I/O).

A runner is one long-lived process in the sandbox. The session starts it through `LAUNCHER`
(see `languages.py`), which gives it these file descriptors:

```
fd 0  /dev/null          user code has no stdin (input() sees end of file)
fd 1  session stdout     user output, raw: print(), console.log, cat(), subprocesses
fd 2  session stderr     user errors, raw
fd 3  session stdin      requests from the host, read by the runner only
fd 4  session stdout     protocol frames (a private copy of fd 1: survives os.close(1))
fd 5  session stderr     the end-of-cell sync frame (a private copy of fd 2)
```

**Host to runner: requests** are single lines, `kind key=value ...` with an optional payload
after a TAB; the payload is escaped so it holds no line break (`%` `\\n` `\\r` `\\0` become `%25`
`%0A` `%0D` `%00`), which every runner (R's line-reading helper too) can undo with plain
string replacement:

```
start nonce=<32 hex> protocol=1          the first line; the nonce never appears in argv/env
execute id=<id> silent=0<TAB><code>      run one cell
interrupt id=<id>                        interrupt cell <id> if it is still running
install_reply id=<request><TAB><json>    the answer to an install request (%pip install)
shutdown                                 exit cleanly
```

**Runner to host: frames** share the session's stdout with the user's raw output, so each one
starts with a marker that holds the kernel's secret nonce; output that does not carry the nonce
is the program's, whatever it looks like. A frame is

```
\\0llmk:<nonce>:<flag>:<length, 4 hex digits>:<payload>
```

with flag `+` (the message continues in the next frame) or `.` (last frame). A frame is at
most `FRAME_MAX` bytes (header included) and written with one write(2): writes of at most
PIPE_BUF (4096) bytes to a pipe are atomic, so another writer (a subprocess, a thread) can
never split a frame, only interleave whole frames with its output. The payloads of a
message's frames, joined, are one JSON object with a `type`:

```
ready          {language, implementation, language_version, protocol, pid}
fatal          {message, package?}            could not start (e.g. IPython missing); exits
display_data   {id, data, metadata, transient}   a MIME bundle from display() or a plot
update_display_data  (same)                   display(..., display_id=) updated
clear_output   {id, wait}
execute_result {id, execution_count, data, metadata}   the cell's value
error          {id, ename, evalue, traceback}
install_request {id, request, manager, packages, options}
execute_reply  {id, status, execution_count, exiting?}  the cell is done (on fd 4)
sync           {id}                           on fd 5, after the reply: stderr is complete too
log            {level, message}               the runner's own diagnostics
```

The host knows a cell is over when both the reply (stdout) and the sync frame (stderr) have
arrived: everything the cell wrote to either stream before it ended came before them.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

PROTOCOL_VERSION: Final = 1
MAGIC: Final = b"\0llmk:"
NONCE_LENGTH: Final = 32
"""Hex digits of a nonce (128 random bits)."""
FRAME_MAX: Final = 4000
"""Bytes of one frame, header included (< PIPE_BUF, so one write is atomic)."""
_TAIL = len(b"+:0000:")  # after the marker: flag, length
HEADER_LENGTH: Final = len(MAGIC) + NONCE_LENGTH + 1 + _TAIL
CHUNK_MAX: Final = FRAME_MAX - HEADER_LENGTH
"""Payload bytes of one frame."""

_TOKEN = re.compile(r"[A-Za-z0-9_.:+-]*")
_KIND = re.compile(r"[a-z_]+")
_NONCE = re.compile(f"[0-9a-f]{{{NONCE_LENGTH}}}")
_ESCAPES = ((b"%", b"%25"), (b"\n", b"%0A"), (b"\r", b"%0D"), (b"\0", b"%00"))


def new_nonce() -> str:
    """A fresh secret for one kernel process."""
    return secrets.token_hex(NONCE_LENGTH // 2)


def escape(payload: bytes) -> bytes:
    """`payload` without line breaks or NULs (see the module docstring)."""
    for raw, escaped in _ESCAPES:
        payload = payload.replace(raw, escaped)
    return payload


def unescape(line: bytes) -> bytes:
    """The inverse of `escape` (what the runners do)."""
    for raw, escaped in reversed(_ESCAPES):
        line = line.replace(escaped, raw)
    return line


def request(
    kind: str,
    fields: Mapping[str, str | int | float | bool] | None = None,
    payload: bytes | str | None = None,
) -> bytes:
    """One request line. Field values are plain tokens (letters, digits, `_.:+-`)."""
    if not _KIND.fullmatch(kind):
        raise ValueError(f"bad request kind {kind!r}")
    parts = [kind]
    for key, value in (fields or {}).items():
        text = str(int(value)) if isinstance(value, bool) else str(value)
        if not _KIND.fullmatch(key) or not _TOKEN.fullmatch(text):
            raise ValueError(f"bad request field {key}={text!r}")
        parts.append(f"{key}={text}")
    line = " ".join(parts).encode()
    if payload is not None:
        data = payload.encode() if isinstance(payload, str) else payload
        line += b"\t" + escape(data)
    return line + b"\n"


def parse_request(line: bytes) -> tuple[str, dict[str, str], bytes | None]:
    """(kind, fields, payload) of one request line (the runners' side, for tests)."""
    head, tab, payload = line.rstrip(b"\n").partition(b"\t")
    kind, *parts = head.decode().split(" ")
    fields = dict(part.split("=", 1) for part in parts if "=" in part)
    return kind, fields, unescape(payload) if tab else None


def start_request(nonce: str) -> bytes:
    if not _NONCE.fullmatch(nonce):
        raise ValueError("a nonce is 32 lowercase hex digits")
    return request("start", {"nonce": nonce, "protocol": PROTOCOL_VERSION})


def marker(nonce: str) -> bytes:
    """What every frame of the kernel with this nonce starts with."""
    return MAGIC + nonce.encode() + b":"


def encode_message(nonce: str, message: Mapping[str, Any]) -> list[bytes]:
    """The frames of one message (the runners do the same; here for tests and reference)."""
    data = json.dumps(message, separators=(",", ":")).encode()
    frames = []
    for start in range(0, max(len(data), 1), CHUNK_MAX):
        chunk = data[start : start + CHUNK_MAX]
        flag = b"." if start + CHUNK_MAX >= len(data) else b"+"
        frames.append(marker(nonce) + flag + b":%04x:" % len(chunk) + chunk)
    return frames


# --- decoding the runner's output -----------------------------------------------------------------
@dataclass(frozen=True)
class Output:
    """Bytes the program wrote (not a frame)."""

    data: bytes


@dataclass(frozen=True)
class Message:
    """One complete protocol message."""

    body: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.body.get("type", ""))


@dataclass(frozen=True)
class Garbled:
    """Something carrying the nonce that is not a valid message (a runner bug, or code that
    dug the nonce out of the runner's memory). Reported, never trusted."""

    reason: str


Event = Output | Message | Garbled


class OutputParser:
    """Splits one stream of a runner's output into program output and protocol messages.

    Robust to any input: bytes arrive in pieces of any size; output may contain NULs, invalid
    UTF-8, markers with a wrong nonce, or half a marker at a read boundary (held back until the
    next read decides). A message larger than `max_message` bytes is dropped (a Garbled event
    says so) without keeping it in memory.
    """

    def __init__(self, nonce: str, *, max_message: int = 64 * 1024 * 1024) -> None:
        self._marker = marker(nonce)
        self._max_message = max_message
        self._buffer = bytearray()
        self._message = bytearray()
        self._dropped = 0  # bytes of an oversized message being skipped

    def feed(self, data: bytes) -> list[Event]:
        self._buffer += data
        events: list[Event] = []
        while True:
            at = self._buffer.find(self._marker)
            if at < 0:
                self._emit(events, self._holdback_cut())
                return events
            self._emit(events, at)
            if len(self._buffer) < HEADER_LENGTH:
                return events
            header = bytes(self._buffer[len(self._marker) : HEADER_LENGTH])
            length = _frame_length(header)
            if length is None:
                events.append(Garbled("malformed frame header"))
                self._emit(events, 1)  # not a frame: the NUL is output; rescan after it
                continue
            if len(self._buffer) < HEADER_LENGTH + length:
                return events
            payload = bytes(self._buffer[HEADER_LENGTH : HEADER_LENGTH + length])
            del self._buffer[: HEADER_LENGTH + length]
            self._add_chunk(events, payload, last=header[0:1] == b".")

    def finish(self) -> list[Event]:
        """At end of stream: whatever was held back is output; a message cut off is reported."""
        events: list[Event] = []
        self._emit(events, len(self._buffer))
        if self._message or self._dropped:
            events.append(Garbled("the stream ended inside a message"))
            self._message.clear()
            self._dropped = 0
        return events

    def _emit(self, events: list[Event], count: int) -> None:
        if count <= 0:
            return
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        if events and isinstance(events[-1], Output):
            events[-1] = Output(events[-1].data + data)
        else:
            events.append(Output(data))

    def _holdback_cut(self) -> int:
        """How much of the buffer is certainly output: all but a tail that could be the start
        of a marker (a marker holds one NUL, its first byte, so only the last NUL can start
        one)."""
        window = max(0, len(self._buffer) - len(self._marker) + 1)
        start = self._buffer.rfind(b"\0", window)
        if start >= 0 and self._marker.startswith(self._buffer[start:]):
            return start
        return len(self._buffer)

    def _add_chunk(self, events: list[Event], payload: bytes, *, last: bool) -> None:
        if self._dropped or len(self._message) + len(payload) > self._max_message:
            self._dropped += len(self._message) + len(payload)
            self._message.clear()
        else:
            self._message += payload
        if not last:
            return
        if self._dropped:
            events.append(Garbled(f"a message of {self._dropped} bytes exceeded the limit"))
            self._dropped = 0
            return
        data = bytes(self._message)
        self._message.clear()
        try:
            body = json.loads(data.decode("utf-8", errors="replace"))
        except ValueError:
            events.append(Garbled("a message that is not JSON"))
            return
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            events.append(Garbled("a message without a type"))
            return
        events.append(Message(body))


def _frame_length(header: bytes) -> int | None:
    """The payload length from a frame header's tail (`<flag>:<4 hex>:`), None if malformed."""
    if len(header) != _TAIL or header[0:1] not in (b"+", b".") or header[1:2] != b":":
        return None
    if header[6:7] != b":":
        return None
    digits = header[2:6]
    if not re.fullmatch(rb"[0-9a-f]{4}", digits):
        return None
    length = int(digits, 16)
    return length if length <= CHUNK_MAX else None
