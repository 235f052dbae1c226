"""Egress policies: which hosts, addresses and ports a sandbox may reach through the gate. Pure.

A rule is `HOST[:PORT]` where HOST is a host name (`api.example.com`), a wildcard name
(`*.example.com`: any name below example.com, not example.com itself), an address (`203.0.113.7`,
`[2001:db8::1]` with a port) or a CIDR range (`203.0.113.0/24`). Without a port a rule covers
every port.

Decisions are made on what the gate will actually connect to: the name a program asked for and
every address the gate resolved it to. Deny rules win over allow rules. Addresses on internal
networks (loopback, private, link-local, carrier-grade NAT, unique-local, multicast, unspecified)
are refused even for an allowed name, unless an allow rule that is itself an address range inside
an internal network covers them: `allow=["10.0.0.0/8"]` unlocks 10.x, `allow=["0.0.0.0/0"]` does
not. That is what defeats DNS rebinding.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from llm_sandbox.exceptions import ConfigurationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

INTERNAL_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
)
"""Where a sandbox must not get to by accident: the host, the local network, the cloud metadata
service (169.254.169.254)."""

_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
_NAME = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*\.?$")
RULE_HELP = (
    "use a host name ('api.example.com'), a wildcard ('*.example.com'), an address "
    "('203.0.113.7', '[2001:db8::1]:443') or a CIDR range ('203.0.113.0/24'), each with an "
    "optional ':PORT'"
)


def canonical_address(address: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 addresses (::ffff:127.0.0.1) as the IPv4 address they carry."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_internal(address: IPAddress) -> bool:
    address = canonical_address(address)
    return any(address.version == n.version and address in n for n in INTERNAL_NETWORKS)


def parse_address(text: str) -> IPAddress | None:
    """`text` as an address (brackets allowed around IPv6), or None when it is a name."""
    try:
        return canonical_address(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None


@dataclass(frozen=True)
class Rule:
    """One allow or deny entry."""

    text: str
    name: str | None = None
    """Lower-case host name; a leading `*.` makes it a wildcard."""
    network: IPNetwork | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: object, where: str) -> Rule:
        if not isinstance(text, str) or not text.strip():
            raise ConfigurationError(f"{where}: {text!r} is not a rule; {RULE_HELP}")
        raw = text.strip().lower()
        host, port = _split_port(raw, where, text)
        if "/" in host:
            try:
                network = ipaddress.ip_network(host.strip("[]"), strict=True)
            except ValueError as exc:
                raise ConfigurationError(
                    f"{where}: {text!r} is not a CIDR range ({exc}); give the network address, "
                    "e.g. '203.0.113.0/24'"
                ) from None
            return cls(text, network=network, port=port)
        address = parse_address(host)
        if address is not None:
            return cls(text, network=ipaddress.ip_network(address), port=port)
        if host == "*" or not _NAME.match(host):
            raise ConfigurationError(f"{where}: {text!r} is not a valid host name; {RULE_HELP}")
        return cls(text, name=host.rstrip("."), port=port)

    def covers_port(self, port: int) -> bool:
        return self.port is None or self.port == port

    def matches_name(self, name: str, port: int) -> bool:
        if self.name is None or not self.covers_port(port):
            return False
        if self.name.startswith("*."):
            return name.endswith(self.name[1:])
        return name == self.name

    def matches_address(self, address: IPAddress, port: int) -> bool:
        return (
            self.network is not None
            and self.covers_port(port)
            and address.version == self.network.version
            and address in self.network
        )

    @property
    def unlocks_internal(self) -> bool:
        """An address range inside an internal network: allows reaching exactly that."""
        net = self.network
        return net is not None and any(
            net.version == n.version and net.subnet_of(n)  # type: ignore[arg-type]
            for n in INTERNAL_NETWORKS
        )


def _split_port(raw: str, where: str, text: str) -> tuple[str, int | None]:
    if raw.startswith("["):
        host, bracket, rest = raw[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigurationError(f"{where}: {text!r} is not a rule; {RULE_HELP}")
        port_text = rest[1:] if rest else None
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
    else:
        host, port_text = raw, None  # a bare IPv6 address or no port
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigurationError(f"{where}: {text!r} has port {port_text!r}; use 1-65535")
    return host, int(port_text)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str
    addresses: tuple[IPAddress, ...] = ()
    """For an allowed connection: the addresses the gate may connect to, in order."""


@dataclass(frozen=True, init=False)
class EgressPolicy:
    """What a sandbox may reach through the egress gate (see the module docstring).

    `allow` and `deny` are rules (`"api.example.com"`, `"*.pythonhosted.org"`,
    `"203.0.113.0/24:443"`); deny wins. `dns=True` lets the gate resolve host names for the
    sandbox; with `dns=False` only address rules can match and a name is refused unresolved.
    Pass it as `SandboxSession(network=EgressPolicy(...))`.
    """

    allow: tuple[Rule, ...] = field(default=())
    deny: tuple[Rule, ...] = field(default=())
    dns: bool = True

    def __init__(
        self, allow: Iterable[str] = (), deny: Iterable[str] = (), dns: bool = True
    ) -> None:
        for name, value in (("allow", allow), ("deny", deny)):
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise ConfigurationError(
                    f"EgressPolicy({name}=...) takes a list of rules, e.g. "
                    f"{name}=['api.example.com'], got {value!r}"
                )
        if not isinstance(dns, bool):
            raise ConfigurationError(f"EgressPolicy(dns=...) is True or False, got {dns!r}")
        allowed = tuple(Rule.parse(r, "EgressPolicy(allow=...)") for r in allow)
        denied = tuple(Rule.parse(r, "EgressPolicy(deny=...)") for r in deny)
        if not dns and any(r.name for r in allowed):
            names = ", ".join(repr(r.text) for r in allowed if r.name)
            raise ConfigurationError(
                f"EgressPolicy(dns=False) cannot allow host names ({names}): the gate resolves "
                "no names then; allow addresses instead, or pass dns=True"
            )
        object.__setattr__(self, "allow", allowed)
        object.__setattr__(self, "deny", denied)
        object.__setattr__(self, "dns", dns)

    def __repr__(self) -> str:
        allow = [r.text for r in self.allow]
        deny = [r.text for r in self.deny]
        return f"EgressPolicy(allow={allow!r}, deny={deny!r}, dns={self.dns!r})"

    def extended(self, hosts: Sequence[str]) -> EgressPolicy:
        """This policy with `hosts` allowed too (an install's package indexes)."""
        return EgressPolicy(
            [*(r.text for r in self.allow), *hosts], [r.text for r in self.deny], dns=True
        )

    def check_name(self, name: str, port: int) -> Verdict | None:
        """The verdict on a host name before resolving it: a refusal, or None to go on."""
        if any(r.matches_name(name, port) for r in self.deny):
            return Verdict(False, f"{name}:{port} matches a deny rule")
        if not any(r.matches_name(name, port) for r in self.allow):
            return Verdict(False, f"{name}:{port} is not in the session's allow list")
        if not self.dns:
            return Verdict(False, "the policy has dns=False: host names are not resolved")
        return None

    def check_addresses(
        self, name: str | None, port: int, addresses: Sequence[IPAddress]
    ) -> Verdict:
        """The verdict on connecting to `addresses` (resolved from `name`, or a literal)."""
        usable: list[IPAddress] = []
        reasons: list[str] = []
        for raw in addresses:
            address = canonical_address(raw)
            if any(r.matches_address(address, port) for r in self.deny):
                reasons.append(f"{address} matches a deny rule")
                continue
            by_address = [r for r in self.allow if r.matches_address(address, port)]
            if name is None and not by_address:
                reasons.append(f"{address}:{port} is not in the session's allow list")
                continue
            if is_internal(address) and not any(r.unlocks_internal for r in by_address):
                reasons.append(
                    f"{address} is an internal address (loopback/private/link-local); allow "
                    "it explicitly by address to reach it"
                )
                continue
            usable.append(address)
        if usable:
            return Verdict(True, "allowed", tuple(usable))
        what = name if name is not None else "the address"
        return Verdict(False, f"{what}: " + "; ".join(reasons or ["no address"]))


NO_EGRESS = EgressPolicy()
"""Nothing allowed: the gate only records and refuses."""
