"""Test servers for the egress gate: HTTP and HTTPS on the host's loopback, never elsewhere.

The HTTPS server's certificate is made for the test (self-signed, names `*.test`); programs in
the sandbox trust it by being handed its PEM. Each server answers `hello <Host header>`.
Test host names reach these servers because the gate's resolver is told so
(`llm_sandbox.egress.resolver.pretend_hosts`); reaching loopback also needs the policy to allow
127.0.0.1 explicitly, which only tests do.
"""

from __future__ import annotations

import http.server
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

NAMES = ("api.test", "other.test", "evil.test", "rebind.test")


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello {self.headers.get('Host', '')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass(frozen=True)
class Servers:
    http_port: int
    https_port: int
    cert_pem: str


def _certificate(directory: Path) -> tuple[Path, Path]:
    key, cert = directory / "key.pem", directory / "cert.pem"
    san = ",".join(f"DNS:{name}" for name in NAMES)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=api.test",
            "-addext",
            f"subjectAltName={san}",
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


def _serve(server: http.server.ThreadingHTTPServer) -> None:
    threading.Thread(target=server.serve_forever, daemon=True).start()


def start() -> Generator[Servers]:
    """Start both servers (a generator for a pytest fixture: yields, then stops them)."""
    with tempfile.TemporaryDirectory() as tmp:
        key, cert = _certificate(Path(tmp))
        plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
        secure = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        secure.socket = context.wrap_socket(secure.socket, server_side=True)
        for server in (plain, secure):
            _serve(server)
        try:
            yield Servers(plain.server_address[1], secure.server_address[1], cert.read_text())
        finally:
            for server in (plain, secure):
                server.shutdown()
                server.server_close()
