"""Network egress control: what a sandbox may reach, through a gate we run on the host.

`EgressPolicy` (policy.py, pure) says which names, addresses and ports are allowed. `Gate`
(gate.py) is an HTTP/CONNECT proxy of ours that enforces it, resolving names itself
(resolver.py) and checking TLS server names (tls.py). The sandbox keeps a network namespace with
loopback only; for each command the gate opens a listening socket inside that namespace
(netns.py) on 127.0.0.1:`PORT`, and the standard proxy variables point there. A program that
honours them works unchanged; one that ignores them reaches nothing. Where the gate cannot
enter the namespace (gVisor's own network stack, a pod on a cluster node), a relay of ours
inside the sandbox carries each connection to it over an exec channel (relay.py).

`GateAttachment` is what the session hands a backend with a command (`ExecRequest.egress`): the
backend calls `attach(pid)` with a process inside the command's network namespace before the
command starts (or hands relayed connections to `serve`); the session closes the attachment
when the command has ended.
"""

from __future__ import annotations

import socket

from llm_sandbox.egress.gate import PORT, Gate, NetworkEvent
from llm_sandbox.egress.policy import NO_EGRESS, EgressPolicy

PROXY_URL = f"http://127.0.0.1:{PORT}"
PROXY_ENV = {
    **{name: PROXY_URL for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
    **{name: "localhost,127.0.0.1,::1" for name in ("NO_PROXY", "no_proxy")},
    # npm reads its own settings; pip and most HTTP clients read the variables above.
    "npm_config_proxy": PROXY_URL,
    "npm_config_https_proxy": PROXY_URL,
}
"""The environment of every command that goes through the gate (it wins over the user's)."""


class GateAttachment:
    """The gate's side of one command (see the module docstring)."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self._sockets: list[socket.socket] = []

    def attach(self, pid: int) -> None:
        self._sockets.append(self._gate.listen_in(pid))

    def serve(self, conn: socket.socket) -> None:
        self._gate.serve_connection(conn)

    def close(self) -> None:
        while self._sockets:
            self._gate.unlisten(self._sockets.pop())


__all__ = [
    "NO_EGRESS",
    "PORT",
    "PROXY_ENV",
    "EgressPolicy",
    "Gate",
    "GateAttachment",
    "NetworkEvent",
]
