"""An exec over the Kubernetes websocket channel protocol, as the agent's `ChannelStream`.

The API server multiplexes an exec on one websocket: every binary message starts with a
channel byte (0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize). When the command ends, the
status channel carries a `Status` object (`status: Success`, or `reason: NonZeroExitCode` with
the code in `details.causes[reason=ExitCode].message`) and the server closes the socket.

The official client's `WSClient` does the websocket work; this adapter reads it with a
deadline, in arrival order per channel, and drops the copy of all output the client keeps for
`read_all()` (a long-lived agent would otherwise accumulate every run's output).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from typing import Any

from llm_sandbox.backends.agent import ChannelStream
from llm_sandbox.backends.base import STDERR, STDOUT
from llm_sandbox.exceptions import SandboxRuntimeError

STDIN_CHANNEL = 0
STATUS_CHANNEL = 3
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
        ws = self._ws
        try:
            ws.update(timeout=timeout)
        except Exception:  # the connection broke without a close frame
            self.close()
        for channel, stream in ((1, STDOUT), (2, STDERR)):
            data = ws.read_channel(channel)
            if data:
                self._chunks.append((stream, data))
        status = ws.read_channel(STATUS_CHANNEL)
        if status:
            self.status = (self.status or b"") + status
        ws.read_all()  # drop the client's copy of everything received
        if not ws.is_open():
            self.eof = True

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
