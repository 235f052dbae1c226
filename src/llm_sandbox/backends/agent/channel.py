"""The agent's duplex byte channel, and its Docker/Podman form: a hijacked exec socket.

Kubernetes delivers the same channel as websocket messages (`backends/kubernetes/channel.py`).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from abc import ABC, abstractmethod

from llm_sandbox.backends.base import STDERR, STDOUT

READ_SIZE = 65536


class ChannelStream(ABC):
    """A duplex exec connection: output chunks in, stdin bytes out, neither blocking."""

    eof: bool

    @abstractmethod
    def send(self, data: bytes) -> None:
        """Queue `data` for the command's stdin."""

    @abstractmethod
    def close_stdin(self) -> None:
        """End stdin once everything queued has been sent (where the transport can)."""

    @abstractmethod
    def next_frame(self, timeout: float) -> tuple[int, bytes] | None:
        """The next chunk; `(0, b"")` at end of stream; None when `timeout` passed first."""

    @property
    def backlog(self) -> int:
        """Bytes `send` has queued and not yet handed to the transport (0 where it blocks)."""
        return 0

    def check_eof(self) -> bool:
        """Whether the connection has ended, looked at without waiting (between commands,
        where nothing is expected: an engine restart may have broken it)."""
        return self.eof

    @abstractmethod
    def close(self) -> None: ...


class FrameStream(ChannelStream):
    """A hijacked exec connection: frames in, stdin bytes out, both without blocking.

    `send` may be called from another thread while one thread reads (a kernel's interrupt)."""

    def __init__(self, sock: socket.socket, ahead: bytes) -> None:
        self.sock = sock
        self.eof = False
        self._buffer = bytearray(ahead)
        self._pending = bytearray()
        self._closing = False
        self._selector = selectors.DefaultSelector()
        self._registered = False
        self._send_lock = threading.Lock()
        sock.setblocking(False)

    def send(self, data: bytes) -> None:
        with self._send_lock:
            self._pending += data
            self._flush()

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def close_stdin(self) -> None:
        """End stdin once everything queued has been sent."""
        with self._send_lock:
            self._closing = True
            self._flush()

    def _flush(self) -> None:
        """Send what is pending without blocking (holding `_send_lock`)."""
        while self._pending:
            try:
                sent = self.sock.send(self._pending)
            except BlockingIOError:
                return
            except OSError:
                self._pending.clear()
                break
            del self._pending[:sent]
        if self._closing:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)
            self._closing = False

    def _frame(self) -> tuple[int, bytes] | None:
        if len(self._buffer) < 8:
            return None
        stream, size = self._buffer[0], struct.unpack(">I", self._buffer[4:8])[0]
        if len(self._buffer) < 8 + size:
            return None
        data = bytes(self._buffer[8 : 8 + size])
        del self._buffer[: 8 + size]
        return (STDERR if stream == 2 else STDOUT), data

    def next_frame(self, timeout: float) -> tuple[int, bytes] | None:
        deadline = time.monotonic() + timeout
        while True:
            frame = self._frame()
            if frame is not None:
                return frame
            if self.eof:
                return 0, b""
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self._pending else 0)
            if self._registered:
                self._selector.modify(self.sock, events)
            else:
                self._selector.register(self.sock, events)
                self._registered = True
            ready = self._selector.select(max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            for _, mask in ready:
                if mask & selectors.EVENT_WRITE:
                    with self._send_lock:
                        self._flush()
                if mask & selectors.EVENT_READ:
                    self._receive()

    def check_eof(self) -> bool:
        if not self.eof:
            with selectors.DefaultSelector() as selector:
                selector.register(self.sock, selectors.EVENT_READ)
                if selector.select(0):
                    self._receive()
        return self.eof

    def _receive(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._buffer += data
        else:
            self.eof = True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._selector.close()
        with contextlib.suppress(OSError):
            self.sock.close()
