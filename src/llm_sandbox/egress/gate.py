"""The egress gate: an HTTP proxy on the host that a sandbox reaches as 127.0.0.1:PORT.

One gate per session. For each command the backend reports a process inside the command's
network namespace; the gate opens a listening socket there (`netns.listen_in`) and closes it
when the command ends. That namespace has loopback only, so this socket is the sandbox's one
way out.

Per connection, the gate reads one request:

* `CONNECT host:port`: checks the name and every address it resolves to against the policy,
  connects, answers 200, then reads the client's first bytes; a TLS ClientHello whose server
  name (SNI) is not the CONNECT host is refused (domain fronting), then bytes are relayed.
* `GET http://host[:port]/path` (any method, absolute or origin form): the Host header must name
  the same host and port as the URL (no smuggling); the request is sent upstream with
  `Connection: close` and only that one request's body (Content-Length; chunked request bodies
  are refused), then the response is relayed and the connection closed.

A refusal is `403` with the reason in the body and the `X-LLM-Sandbox-Egress: denied` header.
Every attempt becomes a `NetworkEvent` in `Gate.events`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from llm_sandbox.egress import netns, resolver
from llm_sandbox.egress.policy import EgressPolicy, IPAddress, Verdict, parse_address
from llm_sandbox.egress.tls import HelloError, client_hello_sni

PORT = 3128
"""Where the gate listens inside every sandbox (each sandbox has a namespace of its own)."""
MAX_HEAD = 65536
CONNECT_TIMEOUT = 10.0
IDLE_TIMEOUT = 300.0
HELLO_TIMEOUT = 10.0
MAX_EVENTS = 10000
"""Entries `events` keeps (the oldest tenth goes when it is full); `denied` counts them all."""
MAX_CONNECTIONS = 128
"""Connections one gate serves at once; more are closed at once (the host's threads are not the
sandbox's to exhaust)."""
_HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te"}


@dataclass(frozen=True)
class NetworkEvent:
    """One connection attempt through the gate."""

    time: float
    """When it was decided (seconds since the epoch)."""
    host: str
    """The name (or address) the program asked for."""
    address: str | None
    """The address connected to (None when refused before one was chosen)."""
    port: int
    protocol: str
    """"http" (a proxied request), "tls" (a CONNECT carrying TLS) or "tcp" (other CONNECT)."""
    verdict: str
    """"allowed", "denied", or "failed" (allowed, but the destination did not answer)."""
    reason: str = ""


@dataclass(frozen=True)
class _Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    rest: bytes
    """What the client sent after the head (the start of a body)."""


class _Refused(Exception):
    def __init__(self, host: str, port: int, protocol: str, reason: str) -> None:
        super().__init__(reason)
        self.host, self.port, self.protocol, self.reason = host, port, protocol, reason


class Gate:
    """Serves one session's sandboxes under its (switchable) policy."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._lock = threading.Lock()
        self._events: list[NetworkEvent] = []
        self._denied = 0
        self._listeners: set[socket.socket] = set()
        self._open: set[socket.socket] = set()
        self._closed = False
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    # --- policy and record -------------------------------------------------------------------
    @property
    def policy(self) -> EgressPolicy:
        return self._policy

    @contextlib.contextmanager
    def using(self, policy: EgressPolicy) -> Iterator[None]:
        """Serve under `policy` for a while (an install), then under the session's again."""
        saved, self._policy = self._policy, policy
        try:
            yield
        finally:
            self._policy = saved

    @property
    def events(self) -> list[NetworkEvent]:
        with self._lock:
            return list(self._events)

    @property
    def denied(self) -> int:
        """Refused attempts since the gate started."""
        return self._denied

    def _record(self, event: NetworkEvent) -> None:
        with self._lock:
            if len(self._events) >= MAX_EVENTS:
                del self._events[: MAX_EVENTS // 10]
            self._events.append(event)
            if event.verdict == "denied":
                self._denied += 1

    # --- listeners ---------------------------------------------------------------------------
    def listen_in(self, pid: int) -> socket.socket:
        """Open the gate in the network namespace of `pid`; `unlisten` it when done."""
        return self._serve(netns.listen_in(pid, PORT))

    def listen_local(self, port: int = 0) -> tuple[str, int]:
        """Listen on the host's loopback (benchmarks and tests of the gate itself)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        self._serve(sock)
        host, bound = sock.getsockname()
        return str(host), int(bound)

    def _serve(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            if self._closed:
                sock.close()
                raise RuntimeError("the gate is closed")
            self._listeners.add(sock)
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()
        return sock

    def unlisten(self, sock: socket.socket) -> None:
        with self._lock:
            self._listeners.discard(sock)
        _shut(sock)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            socks = [*self._listeners, *self._open]
            self._listeners.clear()
        for sock in socks:
            _shut(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            self.serve_connection(conn)

    def serve_connection(self, conn: socket.socket) -> None:
        """Serve one connection from a sandbox (accepted here, or relayed: see relay.py)."""
        if self._closed or not self._slots.acquire(blocking=False):
            _shut(conn)
            return
        threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def _untrack(self, *socks: socket.socket | None) -> None:
        for sock in socks:
            if sock is None:
                continue
            with self._lock:
                self._open.discard(sock)
            _shut(sock)

    # --- one connection ----------------------------------------------------------------------
    def _handle(self, conn: socket.socket) -> None:
        self._track(conn)
        try:
            conn.settimeout(HELLO_TIMEOUT)
            head, rest = _read_head(conn)
            text = head.decode("latin-1")
            lines = text.split("\r\n")
            if any(c in line for line in lines for c in "\r\n\0") or any(
                line[:1] in (" ", "\t") for line in lines
            ):
                # A bare CR/LF or a folded line: a server could read headers we did not check.
                raise _Refused("-", 0, "http", "stray line breaks or folded lines in the request")
            method, target, version = _request_line(lines[0])
            headers = [_header(line) for line in lines[1:] if line]
            if method == "CONNECT":
                self._connect_tunnel(conn, target, rest)
            else:
                self._forward_request(conn, _Request(method, target, version, headers, rest))
        except _Refused as exc:
            self._record(
                NetworkEvent(
                    time.time(), exc.host, None, exc.port, exc.protocol, "denied", exc.reason
                )
            )
            _answer(conn, 403, "Forbidden by llm-sandbox egress policy", exc.reason)
        except (OSError, ValueError, UnicodeError):
            pass
        finally:
            self._untrack(conn)
            self._slots.release()

    def _decide(self, host: str, port: int, protocol: str) -> Verdict:
        policy = self._policy
        literal = parse_address(host)
        if literal is not None:
            verdict = policy.check_addresses(None, port, [literal])
        else:
            name = host.lower().rstrip(".")
            refused = policy.check_name(name, port)
            if refused is not None:
                raise _Refused(host, port, protocol, refused.reason)
            try:
                addresses = resolver.resolve(name)
            except OSError as exc:
                raise _Refused(host, port, protocol, f"{name} does not resolve ({exc})") from None
            verdict = policy.check_addresses(name, port, addresses)
        if not verdict.allowed:
            raise _Refused(host, port, protocol, verdict.reason)
        return verdict

    def _open_upstream(
        self, host: str, port: int, protocol: str, addresses: tuple[IPAddress, ...]
    ) -> tuple[socket.socket, IPAddress] | None:
        errors: list[str] = []
        for address in addresses:
            try:
                sock = socket.create_connection((str(address), port), timeout=CONNECT_TIMEOUT)
            except OSError as exc:
                errors.append(f"{address}: {exc.strerror or exc}")
                continue
            return sock, address
        reason = "; ".join(errors)
        self._record(NetworkEvent(time.time(), host, None, port, protocol, "failed", reason))
        return None

    def _connect_tunnel(self, conn: socket.socket, target: str, rest: bytes) -> None:
        host, port = _host_port(target, None)
        verdict = self._decide(host, port, "tcp")
        opened = self._open_upstream(host, port, "tcp", verdict.addresses)
        if opened is None:
            _answer(conn, 502, "Bad Gateway", f"cannot connect to {host}:{port}")
            return
        upstream, address = opened
        self._track(upstream)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        # The server may speak first (ssh, smtp): its bytes flow at once; the client's first
        # bytes, whenever they come, are checked before any of them goes upstream.
        conn.settimeout(IDLE_TIMEOUT)
        upstream.settimeout(IDLE_TIMEOUT)
        back = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
        back.start()
        refusal: str | None = "the tunnel ended early"
        try:
            first = rest or conn.recv(65536)
            protocol, refusal = "tcp", None
            if first[:1] == b"\x16":
                protocol = "tls"
                first = _read_tls_record(conn, first)
                refusal = _sni_refusal(first, host)
            verdict_text = "denied" if refusal else "allowed"
            self._record(
                NetworkEvent(
                    time.time(), host, str(address), port, protocol, verdict_text, refusal or ""
                )
            )
            if refusal is None:
                upstream.sendall(first)
                _pipe(conn, upstream)
        finally:
            if refusal is not None:
                _shut(upstream)  # ends the way back too
            back.join()
            self._untrack(upstream)

    def _forward_request(self, conn: socket.socket, request: _Request) -> None:
        method, target, version, headers, rest = (
            request.method,
            request.target,
            request.version,
            request.headers,
            request.rest,
        )
        host_header = [v for k, v in headers if k.lower() == "host"]
        if target.lower().startswith("http://"):
            authority, slash, path = target[7:].partition("/")
            path = slash + path or "/"
        elif target.startswith("/") and len(host_header) == 1:
            authority, path = host_header[0], target
        else:
            raise _Refused(
                target[:100],
                0,
                "http",
                "only http:// URLs go through the gate as requests; use CONNECT "
                "(HTTPS_PROXY) for TLS",
            )
        host, port = _host_port(authority, 80)
        if "@" in authority or len(host_header) > 1:
            raise _Refused(host, port, "http", "ambiguous request target (userinfo or Host twice)")
        if host_header:
            named, named_port = _host_port(host_header[0], 80)
            if (named.lower().rstrip("."), named_port) != (host.lower().rstrip("."), port):
                raise _Refused(
                    host,
                    port,
                    "http",
                    f"Host header {host_header[0]!r} does not match the URL's host {authority!r}",
                )
        if any(k.lower() == "transfer-encoding" for k, _ in headers):
            raise _Refused(host, port, "http", "chunked request bodies are not proxied")
        lengths = {v.strip() for k, v in headers if k.lower() == "content-length"}
        if len(lengths) > 1 or not all(v.isdigit() for v in lengths):
            raise _Refused(host, port, "http", "conflicting or invalid Content-Length")
        length = int(lengths.pop()) if lengths else 0
        verdict = self._decide(host, port, "http")
        opened = self._open_upstream(host, port, "http", verdict.addresses)
        if opened is None:
            _answer(conn, 502, "Bad Gateway", f"cannot connect to {host}:{port}")
            return
        upstream, address = opened
        self._track(upstream)
        self._record(NetworkEvent(time.time(), host, str(address), port, "http", "allowed"))
        kept = [(k, v) for k, v in headers if k.lower() not in _HOP_HEADERS]
        if not host_header:
            kept.insert(0, ("Host", authority))
        out = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in kept)
        out += "Connection: close\r\n\r\n"
        try:
            upstream.sendall(out.encode("latin-1"))
            body = rest[:length]
            while len(body) < length:
                chunk = conn.recv(min(65536, length - len(body)))
                if not chunk:
                    break
                body += chunk
            upstream.sendall(body)
            # One request per connection: the client's further bytes are not read.
            upstream.settimeout(IDLE_TIMEOUT)
            _pipe(upstream, conn)
        finally:
            self._untrack(upstream)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def _read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            raise ValueError("request head too long")
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("connection closed before a request")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _request_line(line: str) -> tuple[str, str, str]:
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError(f"not an HTTP request line: {line[:100]!r}")
    return parts[0], parts[1], parts[2]


def _header(line: str) -> tuple[str, str]:
    name, colon, value = line.partition(":")
    if not colon or not name or name != name.strip():
        raise ValueError(f"malformed header {line[:100]!r}")
    return name, value.strip()


def _host_port(authority: str, default: int | None) -> tuple[str, int]:
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif authority.count(":") == 1:
        host, port_text = authority.split(":")
    else:
        host, port_text = authority, ""
    if not port_text:
        if default is None:
            raise ValueError(f"no port in {authority!r}")
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in {authority!r}")
    return host, int(port_text)


def _read_tls_record(conn: socket.socket, first: bytes) -> bytes:
    """At least the whole first TLS record (the ClientHello), as the client sent it."""
    if len(first) < 5:
        first += conn.recv(5 - len(first))
    need = 5 + int.from_bytes(first[3:5], "big")
    while len(first) < min(need, 5 + 16384 + 2048):
        chunk = conn.recv(need - len(first))
        if not chunk:
            break
        first += chunk
    return first


def _answer(conn: socket.socket, code: int, phrase: str, reason: str) -> None:
    body = f"llm-sandbox egress gate: {reason}\n".encode()
    head = (
        f"HTTP/1.1 {code} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"X-LLM-Sandbox-Egress: denied\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError):
        conn.sendall(head.encode() + body)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def _sni_refusal(record: bytes, host: str) -> str | None:
    """Why a tunnel to `host` whose client sent this first TLS record is cut, or None."""
    try:
        sni = client_hello_sni(record)
    except HelloError as exc:
        return f"{exc}; its server name cannot be checked"
    if sni is not None and sni.lower().rstrip(".") != host.lower().rstrip("."):
        return f"TLS server name {sni!r} is not the CONNECT host {host!r}"
    return None
