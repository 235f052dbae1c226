"""How the gate resolves host names: the host's resolver, or names a test maps to addresses.

The sandbox itself resolves nothing (it has no route to any DNS server); programs hand names to
the gate in CONNECT requests and absolute URLs, and the gate resolves them here, so the policy
judges the address that is actually connected to.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence

from llm_sandbox.egress.policy import IPAddress, parse_address

SPECIAL_USE = (".test", ".invalid", ".localhost")
"""Names never sent to DNS (only `pretend_hosts` maps them): tests use them, nothing leaks."""
_lock = threading.Lock()
_pretend_hosts: dict[str, tuple[IPAddress, ...]] = {}


def resolve(name: str) -> tuple[IPAddress, ...]:
    """Every address of `name` (raises OSError when it has none)."""
    with _lock:
        mapped = _pretend_hosts.get(name)
    if mapped is not None:
        return mapped
    if name == "localhost" or name.endswith(SPECIAL_USE):
        raise OSError(f"{name} is a special-use name (RFC 6761) that no DNS server answers")
    found: list[IPAddress] = []
    for *_, sockaddr in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM):
        address = parse_address(str(sockaddr[0]))
        if address is not None and address not in found:
            found.append(address)
    if not found:
        raise OSError(f"{name} has no address")
    return tuple(found)


@contextlib.contextmanager
def pretend_hosts(mapping: Mapping[str, str | Sequence[str]]) -> Iterator[None]:
    """For tests only: resolve these names to these addresses (e.g. loopback test servers)."""
    parsed: dict[str, tuple[IPAddress, ...]] = {}
    for name, value in mapping.items():
        texts = [value] if isinstance(value, str) else list(value)
        addresses = tuple(parse_address(t) for t in texts)
        if any(a is None for a in addresses):
            raise ValueError(f"pretend_hosts: {value!r} is not a list of addresses")
        parsed[name.lower()] = tuple(a for a in addresses if a is not None)
    with _lock:
        saved = dict(_pretend_hosts)
        _pretend_hosts.update(parsed)
    try:
        yield
    finally:
        with _lock:
            _pretend_hosts.clear()
            _pretend_hosts.update(saved)
