"""The relay that carries the gate into sandboxes it cannot enter (gVisor, Kubernetes pods).

The real relay program runs here in a network namespace of its own (`unshare`), as it would in
a sandbox without network, its stdio standing in for the exec channel; the test connects to it
from a thread that enters that namespace. The host end is also fed hostile frames directly:
whatever arrives over the channel is untrusted, and everything it carries meets the gate.
Real sandboxes: tests/backends/test_egress.py (docker+runsc, kubernetes).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

import egress_servers
from llm_sandbox import EgressPolicy
from llm_sandbox.backends.agent.channel import ChannelStream
from llm_sandbox.backends.base import STDERR, STDOUT
from llm_sandbox.egress import PORT, Gate
from llm_sandbox.egress.netns import _setns
from llm_sandbox.egress.relay import (
    HEADER,
    MAX_BACKLOG,
    PERL_RELAY_SCRIPT,
    RELAY_SCRIPT,
    RelayHost,
    start_relay,
)
from llm_sandbox.egress.resolver import pretend_hosts
from llm_sandbox.exceptions import ControlUnavailableError

FORBIDDEN = b"HTTP/1.1 403 Forbidden by llm-sandbox egress policy"


class PipeStream(ChannelStream):
    """A ChannelStream over a child's stdin/stdout/stderr (the exec channel's stand-in)."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        assert child.stdin is not None
        assert child.stdout is not None
        assert child.stderr is not None
        self.child, self.eof = child, False
        self._selector = selectors.DefaultSelector()
        self._selector.register(child.stdout, selectors.EVENT_READ, STDOUT)
        self._selector.register(child.stderr, selectors.EVENT_READ, STDERR)
        self._open = 2

    def send(self, data: bytes) -> None:
        assert self.child.stdin
        try:
            self.child.stdin.write(data)
            self.child.stdin.flush()
        except OSError:
            pass

    def close_stdin(self) -> None:
        assert self.child.stdin
        self.child.stdin.close()

    def next_frame(self, timeout: float) -> tuple[int, bytes] | None:
        if self.eof:
            return 0, b""
        for key, _ in self._selector.select(timeout):
            data = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
            if data:
                return key.data, data
            self._selector.unregister(key.fileobj)
            self._open -= 1
            if not self._open:
                self.eof = True
                return 0, b""
        return None

    def close(self) -> None:
        self.child.kill()
        self.child.wait()
        self._selector.close()
        for pipe in (self.child.stdin, self.child.stdout, self.child.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class FakeStream(ChannelStream):
    """A channel the test writes the relay's side of."""

    def __init__(self) -> None:
        self.eof = False
        self.incoming: list[tuple[int, bytes]] = []
        self.sent = bytearray()
        self.lock = threading.Lock()

    def push(self, kind: bytes, cid: int, data: bytes = b"", stream: int = STDOUT) -> None:
        with self.lock:
            self.incoming.append((stream, HEADER.pack(kind, cid, len(data)) + data))

    def send(self, data: bytes) -> None:
        self.sent += data

    def close_stdin(self) -> None:
        pass

    def next_frame(self, timeout: float) -> tuple[int, bytes] | None:
        with self.lock:
            if self.incoming:
                return self.incoming.pop(0)
        if self.eof:
            return 0, b""
        time.sleep(timeout)
        return None

    def close(self) -> None:
        self.eof = True

    def frames(self) -> list[tuple[bytes, int, bytes]]:
        found, data = [], bytes(self.sent)
        while len(data) >= HEADER.size:
            kind, cid, size = HEADER.unpack_from(data)
            found.append((kind, cid, data[HEADER.size : HEADER.size + size]))
            data = data[HEADER.size + size :]
        return found


@pytest.fixture(scope="module")
def servers() -> Iterator[egress_servers.Servers]:
    with pretend_hosts(dict.fromkeys(egress_servers.NAMES, "127.0.0.1")):
        yield from egress_servers.start()


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate(EgressPolicy(allow=["api.test", "127.0.0.1"]))
    yield gate
    gate.close()


def connect_in(pid: int) -> socket.socket:
    """A connection to 127.0.0.1:PORT in the network namespace of `pid` (from a thread there)."""
    result: dict[str, socket.socket] = {}

    def enter() -> None:
        _setns(os.open(f"/proc/{pid}/ns/net", os.O_RDONLY))
        result["sock"] = socket.create_connection(("127.0.0.1", PORT), timeout=10)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    return result["sock"]


def ask(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    return answer


@pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("ip")),
    reason="needs root, unshare and ip",
)
@pytest.mark.parametrize("program", ["python3", "perl"])
def test_the_relay_carries_connections_to_the_gate(
    gate: Gate, servers: egress_servers.Servers, program: str
) -> None:
    if program == "perl" and not shutil.which("perl"):
        pytest.skip("no perl here")
    argv = (
        [sys.executable, "-I", "-S", "-c", RELAY_SCRIPT]
        if program == "python3"
        else ["perl", "-e", PERL_RELAY_SCRIPT]
    )
    child = subprocess.Popen(
        # A namespace with loopback up and nothing else, as in a sandbox without network.
        ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    relay = start_relay(PipeStream(child), gate.serve_connection)
    try:
        url = f"http://api.test:{servers.http_port}/"
        allowed = f"GET {url} HTTP/1.1\r\nHost: api.test:{servers.http_port}\r\n\r\n".encode()
        denied = allowed.replace(b"api.test", b"other.test")
        socks = [connect_in(child.pid) for _ in range(6)]  # several at once, interleaved
        answers: dict[int, bytes] = {}

        def one(i: int) -> None:
            answers[i] = ask(socks[i], allowed if i % 2 else denied)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(socks))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for i, answer in answers.items():
            if i % 2:
                assert answer.startswith(b"HTTP/1.0 200") or answer.startswith(b"HTTP/1.1 200")
                assert answer.endswith(f"hello api.test:{servers.http_port}".encode())
            else:
                assert answer.startswith(FORBIDDEN)
        assert len(answers) == 6
        assert sorted(e.verdict for e in gate.events) == ["allowed"] * 3 + ["denied"] * 3
        assert relay.alive
    finally:
        relay.close()
    assert child.wait(10) is not None
    assert not relay.alive


def test_forged_frames_still_meet_the_gate(gate: Gate, servers: egress_servers.Servers) -> None:
    """A program that writes frames into the relay's pipes gets what a connection gets."""
    stream = FakeStream()
    relay = RelayHost(stream, gate.serve_connection)
    stream.push(b"R", 0)
    relay.wait_ready(5)
    stream.push(b"O", 7)
    stream.push(b"D", 7, f"CONNECT other.test:{servers.https_port} HTTP/1.1\r\n\r\n".encode())
    stream.push(b"O", 7)  # the same stream twice: refused
    # The refusal (X, from the reader) and the gate's close (C) come from different threads,
    # in either order.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not {b"C", b"X"} <= {f[0] for f in stream.frames()}:
        time.sleep(0.01)
    frames = stream.frames()
    assert (b"X", 7, b"") in frames
    answer = b"".join(data for kind, cid, data in frames if kind == b"D" and cid == 7)
    assert answer.startswith(FORBIDDEN)
    assert [e.verdict for e in gate.events] == ["denied"]
    stream.push(b"D", 8, b"to nobody")  # an unknown stream: ignored
    stream.push(b"D", 9, b"x" * 10, stream=STDOUT)
    assert relay.alive
    relay.close()


def test_an_oversized_frame_ends_the_channel(gate: Gate) -> None:
    stream = FakeStream()
    relay = RelayHost(stream, gate.serve_connection)
    stream.push(b"R", 0)
    relay.wait_ready(5)
    with stream.lock:
        stream.incoming.append((STDOUT, HEADER.pack(b"D", 1, 1 << 30)))
    deadline = time.monotonic() + 5
    while relay.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not relay.alive


def test_an_image_without_python3_is_named(gate: Gate) -> None:
    stream = FakeStream()
    relay = RelayHost(stream, gate.serve_connection)
    with stream.lock:
        stream.incoming.append((STDERR, b"sh: 1: exec: python3: not found\n"))
    stream.eof = True
    with pytest.raises(ControlUnavailableError, match="python3 or perl"):
        relay.wait_ready(5)


def test_a_relay_that_stops_reading_does_not_make_the_host_buffer_everything() -> None:
    """A stopped relay (the code may SIGSTOP it on Kubernetes) while a server sends a lot:
    the host queues at most MAX_BACKLOG (plus one frame), then waits; close frees it."""

    class Stuck(FakeStream):
        @property
        def backlog(self) -> int:
            return len(self.sent)  # nothing is ever taken off the queue

    def flood(sock: socket.socket) -> None:
        def write() -> None:
            with sock, contextlib.suppress(OSError):
                while True:
                    sock.sendall(b"x" * 65536)

        threading.Thread(target=write, daemon=True).start()

    stream = Stuck()
    relay = RelayHost(stream, flood)
    stream.push(b"R", 0)
    relay.wait_ready(5)
    stream.push(b"O", 1)
    time.sleep(1.0)
    assert MAX_BACKLOG <= len(stream.sent) <= MAX_BACKLOG + 2 * (HEADER.size + 65536)
    relay.close()
    assert not relay.alive
