"""An exec over the Kubernetes websocket channel protocol, as the agent's `ChannelStream`.

The API server multiplexes an exec on one websocket: every binary message starts with a
channel byte (0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize). When the command ends, the
status channel carries a `Status` object (`status: Success`, or `reason: NonZeroExitCode` with
the code in `details.causes[reason=ExitCode].message`) and the server closes the socket.

The official client's `WSClient` opens the websocket and writes stdin; this adapter reads its
frames one at a time with a deadline, in arrival order (see `_receive`).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import ssl
import time
from collections import deque
from typing import Any

from websocket import ABNF

from llm_sandbox.backends.agent.channel import ChannelStream
from llm_sandbox.backends.base import STDERR, STDOUT
from llm_sandbox.exceptions import SandboxRuntimeError

STDIN_CHANNEL = 0
STATUS_CHANNEL = 3
CHANNELS = {1: STDOUT, 2: STDERR}
OPCODE_BINARY, OPCODE_TEXT, OPCODE_CLOSE = ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT, ABNF.OPCODE_CLOSE
SEND_CHUNK = 1 << 20


def exit_code_from_status(raw: bytes | str) -> int:
    """The exit code a status-channel message reports."""
    try:
        status = json.loads(raw)
    except ValueError as exc:
        raise SandboxRuntimeError(f"unreadable exec status from the API server: {raw!r}") from exc
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                return int(cause["message"])
    raise SandboxRuntimeError(
        f"the command could not run in the pod: {status.get('message') or status}"
    )


class WebSocketChannels(ChannelStream):
    """`ChannelStream` over a `kubernetes.stream.ws_client.WSClient` (binary mode)."""

    def __init__(self, client: Any) -> None:
        self._ws = client
        self._chunks: deque[tuple[int, bytes]] = deque()
        self.status: bytes | None = None
        self.eof = False
        raw = getattr(getattr(client, "sock", None), "sock", None)
        if isinstance(raw, socket.socket):
            # Small messages both ways (a relayed answer, then its end): without this, the
            # second waits for the first one's delayed ACK (40 ms on Linux).
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        try:
            for start in range(0, len(data), SEND_CHUNK):
                self._ws.write_channel(STDIN_CHANNEL, data[start : start + SEND_CHUNK])
        except Exception:  # the exec ended: its output and status say why
            self.eof = not self._ws.is_open()

    def close_stdin(self) -> None:
        # Only the v5 protocol can end stdin; the client ignores this under v4, where our
        # commands never wait for the end of stdin (they read exact byte counts).
        with contextlib.suppress(Exception):
            self._ws.close_channel(STDIN_CHANNEL)

    def next_frame(self, timeout: float) -> tuple[int, bytes] | None:
        deadline = time.monotonic() + timeout
        while not self._chunks:
            if self.eof:
                return 0, b""
            remaining = deadline - time.monotonic()
            if remaining < 0:
                return None
            self._receive(remaining)
        return self._chunks.popleft()

    def _receive(self, timeout: float) -> None:
        """Read at most one message, waiting up to `timeout` for it.

        Frames are read one by one from the client's websocket rather than through
        `WSClient.update`, which concatenates everything available per channel and keeps a
        copy of all output: quadratic and unbounded under an output flood.
        """
        websocket = self._ws.sock
        raw = getattr(websocket, "sock", None)
        if raw is None:
            self.eof = True
            return
        buffered = isinstance(raw, ssl.SSLSocket) and raw.pending()
        if not buffered and not select.select([raw], [], [], max(0.0, timeout))[0]:
            return
        try:
            opcode, frame = websocket.recv_data_frame(True)
        except Exception:  # the connection broke without a close frame
            self.close()
            self.eof = True
            return
        if opcode == OPCODE_CLOSE:
            self.eof = True
            return
        data = frame.data if isinstance(frame.data, bytes) else frame.data.encode()
        if opcode not in (OPCODE_BINARY, OPCODE_TEXT) or not data:
            return
        channel, payload = data[0], data[1:]
        if channel == STATUS_CHANNEL:
            self.status = (self.status or b"") + payload
        elif channel in CHANNELS and payload:
            self._chunks.append((CHANNELS[channel], payload))

    def exit_code(self) -> int:
        """After the end of the stream: the exit code from the status channel."""
        if self.status is None:
            raise SandboxRuntimeError(
                "the exec ended without a status from the API server (connection lost)"
            )
        return exit_code_from_status(self.status)

    def close(self) -> None:
        # No waiting for the server's close reply; and the client skips closing the socket
        # when the server closed first, so it is closed here in any case.
        with contextlib.suppress(Exception):
            self._ws.close(timeout=0)
        with contextlib.suppress(Exception):
            self._ws.sock.shutdown()
