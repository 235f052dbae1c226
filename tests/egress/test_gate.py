"""The gate itself, reached from the host over loopback (`Gate.listen_local`): the request
parsing a hostile client would probe, in milliseconds. The same attacks from inside real
sandboxes are in tests/backends/test_egress.py."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

import egress_servers
from llm_sandbox import EgressPolicy
from llm_sandbox.egress import Gate
from llm_sandbox.egress.resolver import pretend_hosts

FORBIDDEN = b"HTTP/1.1 403 Forbidden by llm-sandbox egress policy"


@pytest.fixture(scope="module")
def servers() -> Iterator[egress_servers.Servers]:
    with pretend_hosts(dict.fromkeys(egress_servers.NAMES, "127.0.0.1")):
        yield from egress_servers.start()


@pytest.fixture
def gate() -> Iterator[tuple[Gate, int]]:
    gate = Gate(EgressPolicy(allow=["api.test", "127.0.0.1"]))
    _, port = gate.listen_local()
    yield gate, port
    gate.close()


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_one_request_per_connection(
    gate: tuple[Gate, int], servers: egress_servers.Servers
) -> None:
    """A pipelined second request (to another host) is never read, let alone sent."""
    _, port = gate
    hp = servers.http_port
    reply = exchange(
        port,
        f"GET http://api.test:{hp}/ HTTP/1.1\r\nHost: api.test:{hp}\r\n\r\n"
        f"GET http://evil.test:{hp}/ HTTP/1.1\r\nHost: evil.test:{hp}\r\n\r\n".encode(),
    )
    assert reply.count(b" 200 OK") == 1
    assert reply.endswith(f"hello api.test:{hp}".encode())


def test_chunked_bodies_and_two_lengths_are_refused(
    gate: tuple[Gate, int], servers: egress_servers.Servers
) -> None:
    _, port = gate
    hp = servers.http_port
    for extra in ("Transfer-Encoding: chunked\r\n", "Content-Length: 1\r\nContent-Length: 2\r\n"):
        reply = exchange(
            port,
            f"POST http://api.test:{hp}/ HTTP/1.1\r\nHost: api.test:{hp}\r\n{extra}\r\n".encode(),
        )
        assert reply.startswith(FORBIDDEN)


def test_userinfo_and_unresolvable_names(gate: tuple[Gate, int]) -> None:
    g, port = gate
    assert exchange(port, b"GET http://x@api.test/ HTTP/1.1\r\n\r\n").startswith(FORBIDDEN)
    reply = exchange(port, b"CONNECT nowhere.invalid:443 HTTP/1.1\r\n\r\n")
    assert reply.startswith(FORBIDDEN)
    assert g.denied == 2


def test_garbage_gets_nothing(gate: tuple[Gate, int]) -> None:
    g, port = gate
    assert exchange(port, b"\x16\x03\x01garbage\r\n\r\n") == b""
    assert g.events == []


def test_tls_through_connect_checks_sni(
    gate: tuple[Gate, int], servers: egress_servers.Servers
) -> None:
    g, port = gate
    context = ssl.create_default_context(cadata=servers.cert_pem)
    for server_name, works in (("api.test", True), ("other.test", False)):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(f"CONNECT api.test:{servers.https_port} HTTP/1.1\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        try:
            with context.wrap_socket(sock, server_hostname=server_name) as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
                assert tls.recv(4096).startswith(b"HTTP/1.0 200") is works
        except (OSError, ssl.SSLError):
            assert not works
        finally:
            sock.close()
    assert [e.verdict for e in g.events] == ["allowed", "denied"]


def test_policy_switch_is_scoped(gate: tuple[Gate, int], servers: egress_servers.Servers) -> None:
    g, port = gate
    request = f"GET http://other.test:{servers.http_port}/ HTTP/1.1\r\n\r\n".encode()
    with g.using(EgressPolicy(allow=["other.test", "127.0.0.1"])):
        assert exchange(port, request).startswith(b"HTTP/1.0 200")
    assert exchange(port, request).startswith(FORBIDDEN)


def client_hello(server_name: str) -> bytes:
    """The first flight of a real TLS client (Python's ssl) for `server_name`."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_a_client_hello_split_over_records_is_refused(
    gate: tuple[Gate, int], servers: egress_servers.Servers
) -> None:
    """Splitting the hello would put the server name beyond the first record's check."""
    g, port = gate
    hello = client_hello("evil.test")
    body = hello[5:]
    half = len(body) // 2
    split = b"".join(
        b"\x16" + hello[1:3] + len(part).to_bytes(2, "big") + part
        for part in (body[:half], body[half:])
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"CONNECT api.test:{servers.https_port} HTTP/1.1\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(split)
        assert sock.recv(4096) == b""
    event = g.events[-1]
    assert event.verdict == "denied"
    assert "does not fit" in event.reason


def test_bare_line_feeds_in_the_head_are_refused(
    gate: tuple[Gate, int], servers: egress_servers.Servers
) -> None:
    """A server reading a bare LF as a line end would see a Host header the gate did not."""
    _, port = gate
    hp = servers.http_port
    reply = exchange(
        port,
        f"GET http://api.test:{hp}/ HTTP/1.1\r\nHost: api.test:{hp}\r\n"
        f"X-Pad: 1\nHost: evil.test:{hp}\r\n\r\n".encode(),
    )
    assert reply.startswith(FORBIDDEN)


def test_a_flood_of_connections_does_not_exhaust_the_host(gate: tuple[Gate, int]) -> None:
    """Past MAX_CONNECTIONS the gate closes new connections instead of starting threads."""
    from llm_sandbox.egress.gate import MAX_CONNECTIONS

    _, port = gate
    before = threading.active_count()
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CONNECTIONS + 40)]
    try:
        time.sleep(0.5)
        assert threading.active_count() - before <= MAX_CONNECTIONS + 2
        held[-1].settimeout(5)
        assert held[-1].recv(1) == b""  # closed by the gate
    finally:
        for sock in held:
            sock.close()


def read_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    return data


@pytest.fixture
def banner_server(servers: egress_servers.Servers) -> Iterator[int]:
    """A loopback server that speaks first (like ssh or smtp), then echoes one chunk. (It needs
    `servers` for the test names they map.)"""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"BANNER\n")
                conn.sendall(conn.recv(65536))

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def test_a_server_that_speaks_first_works(gate: tuple[Gate, int], banner_server: int) -> None:
    g, port = gate
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"CONNECT api.test:{banner_server} HTTP/1.1\r\n\r\n".encode())
        assert read_until(sock, b"BANNER\n").startswith(b"HTTP/1.1 200")
        sock.sendall(b"ping")
        assert sock.recv(4096) == b"ping"
    assert [e.protocol for e in g.events] == ["tcp"]


def test_a_late_client_hello_is_still_checked(gate: tuple[Gate, int], banner_server: int) -> None:
    """Waiting for the server before sending a ClientHello does not skip the SNI check."""
    g, port = gate
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"CONNECT api.test:{banner_server} HTTP/1.1\r\n\r\n".encode())
        assert read_until(sock, b"BANNER\n").startswith(b"HTTP/1.1 200")
        time.sleep(0.5)
        sock.sendall(client_hello("evil.test"))
        assert sock.recv(4096) == b""  # cut, nothing echoed
    assert g.events[-1].verdict == "denied"
    assert "'evil.test'" in g.events[-1].reason
