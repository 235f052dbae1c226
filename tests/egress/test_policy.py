"""EgressPolicy: rules are validated with clear errors, and decisions follow the documented
order (deny wins; internal addresses need an explicit address rule; dns=False takes no names)."""

from __future__ import annotations

import ipaddress

import pytest

from llm_sandbox import EgressPolicy, SandboxSession
from llm_sandbox.egress.policy import is_internal
from llm_sandbox.egress.tls import HelloError, client_hello_sni
from llm_sandbox.exceptions import ConfigurationError


def addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("", "is not a rule"),
        ("a b.com", "not a valid host name"),
        ("*", "not a valid host name"),
        ("*.*.com", "not a valid host name"),
        ("-bad.com", "not a valid host name"),
        ("api.example.com:0", "use 1-65535"),
        ("api.example.com:http", "use 1-65535"),
        ("10.0.0.1/8", "host bits set"),
        ("[::1", "is not a rule"),
    ],
)
def test_bad_rules_are_named(rule: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        EgressPolicy(allow=[rule])


def test_a_string_instead_of_a_list_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="list of rules"):
        EgressPolicy(allow="api.example.com")


def test_dns_false_refuses_name_rules() -> None:
    with pytest.raises(ConfigurationError, match="dns=False"):
        EgressPolicy(allow=["api.example.com"], dns=False)
    policy = EgressPolicy(allow=["203.0.113.0/24"], dns=False)
    assert policy.check_addresses(None, 443, [addr("203.0.113.9")]).allowed


def test_names_wildcards_and_ports() -> None:
    policy = EgressPolicy(allow=["api.example.com", "*.pythonhosted.org", "data.example.com:443"])
    assert policy.check_name("api.example.com", 8080) is None
    assert policy.check_name("files.pythonhosted.org", 443) is None
    refused = policy.check_name("pythonhosted.org", 443)
    assert refused is not None
    assert "not in the session's allow list" in refused.reason
    assert policy.check_name("data.example.com", 443) is None
    assert policy.check_name("data.example.com", 80) is not None
    assert policy.check_name("evilapi.example.com", 443) is not None


def test_deny_wins() -> None:
    policy = EgressPolicy(allow=["*.example.com"], deny=["secret.example.com", "203.0.113.66"])
    refused = policy.check_name("secret.example.com", 443)
    assert refused is not None
    assert "deny rule" in refused.reason
    verdict = policy.check_addresses("www.example.com", 443, [addr("203.0.113.66")])
    assert not verdict.allowed


def test_internal_addresses_need_an_explicit_address_rule() -> None:
    named = EgressPolicy(allow=["api.example.com"])
    for target in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "fe80::1", "::ffff:10.0.0.1"):
        assert not named.check_addresses("api.example.com", 443, [addr(target)]).allowed
    everything = EgressPolicy(allow=["api.example.com", "0.0.0.0/0", "::/0"])
    assert not everything.check_addresses("api.example.com", 443, [addr("127.0.0.1")]).allowed
    unlocked = EgressPolicy(allow=["api.example.com", "10.0.0.0/8"])
    assert unlocked.check_addresses("api.example.com", 443, [addr("10.1.2.3")]).allowed
    # A public answer is used, the internal one skipped:
    mixed = named.check_addresses("api.example.com", 443, [addr("10.0.0.1"), addr("203.0.113.5")])
    assert mixed.addresses == (addr("203.0.113.5"),)


def test_internal_ranges() -> None:
    assert is_internal(addr("100.64.0.1"))
    assert is_internal(addr("::ffff:127.0.0.1"))
    assert not is_internal(addr("203.0.113.80"))
    assert not is_internal(addr("2001:db8::1"))


def test_literal_addresses_need_an_address_rule() -> None:
    policy = EgressPolicy(allow=["api.example.com", "203.0.113.0/24:443"])
    assert policy.check_addresses(None, 443, [addr("203.0.113.7")]).allowed
    assert not policy.check_addresses(None, 80, [addr("203.0.113.7")]).allowed
    assert not policy.check_addresses(None, 443, [addr("198.51.100.1")]).allowed


@pytest.mark.usefixtures("fake_backend")
def test_session_option() -> None:
    policy = EgressPolicy(allow=["api.example.com"])
    session = SandboxSession(backend="fake", network=policy)
    assert session.config.egress is policy
    assert session.config.network is False
    with pytest.raises(ConfigurationError, match="EgressPolicy"):
        SandboxSession(backend="fake", network="api.example.com")  # type: ignore[arg-type]


def test_sni_parser_refuses_what_it_cannot_read_whole() -> None:
    for garbage in (b"", b"\x16\x03\x01\x00\x05\x01\x00", b"GET / HTTP/1.1\r\n"):
        with pytest.raises(HelloError):
            client_hello_sni(garbage)
