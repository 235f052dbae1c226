"""Network egress through the gate: what a policy allows is reachable, nothing else is.

Every backend: local (bubblewrap), docker, podman, gVisor, kubernetes (the emulator). On gVisor
and Kubernetes the gate is reached through a relay in the sandbox (`egress.relay`), the others
get it opened in their network namespace.
All traffic stays on this machine: test servers listen on the host's loopback, and the
addresses the attacks aim at elsewhere (TEST-NET documentation addresses) are unreachable from
the sandbox's namespace, which has no route at all, so nothing is ever sent to them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import egress_servers
from llm_sandbox import EgressPolicy, SandboxSession
from llm_sandbox.egress import PORT
from llm_sandbox.egress.resolver import pretend_hosts
from llm_sandbox.exceptions import ControlUnavailableError, SandboxTimeoutError

ALSO_GVISOR = True
GVISOR = "docker+runsc"
LOOPBACK = "127.0.0.1"
ALLOW_API = EgressPolicy(allow=["api.test", LOOPBACK])


@pytest.fixture(scope="module")
def servers() -> Iterator[egress_servers.Servers]:
    names = {name: LOOPBACK for name in egress_servers.NAMES}
    with pretend_hosts(names):
        yield from egress_servers.start()


@pytest.fixture
def gated(make_session: Any, backend: str) -> Any:
    """Open sessions with a policy (where the backend can enforce one)."""

    def factory(policy: EgressPolicy = ALLOW_API) -> SandboxSession:
        session: SandboxSession = make_session(network=policy)
        return session

    return factory


FETCH = """
import ssl, urllib.request
def fetch(url, cert=None):
    context = ssl.create_default_context(cadata=cert) if cert else None
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as r:
            print("OK", r.read().decode())
    except Exception as exc:
        print("ERR", exc)
"""


def run(session: SandboxSession, code: str) -> str:
    result = session.run(FETCH + code)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_allowed_host_over_http_and_https(gated: Any, servers: egress_servers.Servers) -> None:
    session = gated()
    out = run(
        session,
        f"fetch('http://api.test:{servers.http_port}/')\n"
        f"fetch('https://api.test:{servers.https_port}/', {servers.cert_pem!r})",
    )
    assert out == (
        f"OK hello api.test:{servers.http_port}\nOK hello api.test:{servers.https_port}\n"
    )
    log = session.network_log
    assert [(e.host, e.protocol, e.verdict) for e in log] == [
        ("api.test", "http", "allowed"),
        ("api.test", "tls", "allowed"),
    ]
    assert log[1].address == LOOPBACK
    assert log[1].port == servers.https_port


def test_denied_host_is_refused_clearly_and_logged(
    gated: Any, servers: egress_servers.Servers
) -> None:
    session = gated()
    result = session.run(
        FETCH + f"fetch('http://other.test:{servers.http_port}/')\n"
        f"fetch('https://other.test:{servers.https_port}/', {servers.cert_pem!r})"
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "ERR HTTP Error 403: Forbidden by llm-sandbox egress policy"
    assert lines[1].startswith("ERR")
    assert "403" in lines[1]
    assert result.egress_denied == 2
    denied = [e for e in session.network_log if e.verdict == "denied"]
    assert [e.host for e in denied] == ["other.test", "other.test"]
    assert "not in the session's allow list" in denied[0].reason


def test_direct_connections_reach_nothing(gated: Any, servers: egress_servers.Servers) -> None:
    """Ignoring the proxy: loopback of the host, an outside address, IPv6, DNS, raw sockets."""
    session = gated()
    out = run(
        session,
        f"""
import errno, socket
def attempt(label, family, kind, address, proto=0, udp=False):
    try:
        s = socket.socket(family, kind, proto)
        s.settimeout(3)
        if udp:
            s.sendto(b"x", address)
        else:
            s.connect(address)
        print(label, "CONNECTED")
    except OSError as exc:
        print(label, errno.errorcode.get(exc.errno, exc.errno))
attempt("host-loopback", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", {servers.http_port}))
attempt("outside-ip", socket.AF_INET, socket.SOCK_STREAM, ("192.0.2.10", 443))
attempt("ipv6", socket.AF_INET6, socket.SOCK_STREAM, ("2001:db8::10", 443))
attempt("dns-udp", socket.AF_INET, socket.SOCK_DGRAM, ("192.0.2.53", 53), udp=True)
attempt("raw-icmp", socket.AF_INET, socket.SOCK_RAW, ("192.0.2.10", 0), socket.IPPROTO_ICMP)
try:
    socket.getaddrinfo("pypi.org", 443)
    print("resolve RESOLVED")
except OSError:
    print("resolve FAILED")
""",
    )
    results = dict(line.split(" ", 1) for line in out.splitlines())
    assert results["host-loopback"] == "ECONNREFUSED"  # the sandbox's own loopback
    unreachable = ("ENETUNREACH", "EHOSTUNREACH")  # gVisor's netstack says the latter
    assert results["outside-ip"] in unreachable
    assert results["ipv6"] in (*unreachable, "EADDRNOTAVAIL", "EAFNOSUPPORT")
    assert results["dns-udp"] in unreachable
    assert results["raw-icmp"] in ("EPERM", "EACCES")
    assert results["resolve"] == "FAILED"


RAW_PROXY = f"""
import socket, ssl
def proxy(request):
    s = socket.create_connection(("127.0.0.1", {PORT}), timeout=10)
    s.sendall(request.encode())
    return s
def first_line(s):
    return s.recv(4096).split(b"\\r\\n")[0].decode()
"""


def test_connect_with_another_sni_is_cut(gated: Any, servers: egress_servers.Servers) -> None:
    """Domain fronting: CONNECT to an allowed name, TLS to another."""
    session = gated()
    out = run(
        session,
        RAW_PROXY
        + f"""
s = proxy("CONNECT api.test:{servers.https_port} HTTP/1.1\\r\\nHost: api.test\\r\\n\\r\\n")
print(first_line(s))
context = ssl.create_default_context(cadata={servers.cert_pem!r})
try:
    context.wrap_socket(s, server_hostname="evil.test")
    print("TLS UP")
except (OSError, ssl.SSLError) as exc:
    print("TLS FAILED")
""",
    )
    assert out == "HTTP/1.1 200 Connection established\nTLS FAILED\n"
    event = session.network_log[-1]
    assert event.verdict == "denied"
    assert "'evil.test'" in event.reason


def test_host_header_smuggling_is_refused(gated: Any, servers: egress_servers.Servers) -> None:
    session = gated()
    out = run(
        session,
        RAW_PROXY
        + f"""
print(first_line(proxy("GET http://api.test:{servers.http_port}/ HTTP/1.1\\r\\n"
                       "Host: evil.test:{servers.http_port}\\r\\n\\r\\n")))
print(first_line(proxy("GET / HTTP/1.1\\r\\nHost: api.test:{servers.http_port}\\r\\n"
                       "Host: evil.test:{servers.http_port}\\r\\n\\r\\n")))
""",
    )
    assert out.splitlines() == ["HTTP/1.1 403 Forbidden by llm-sandbox egress policy"] * 2
    assert "does not match" in session.network_log[0].reason


def test_rebinding_to_loopback_is_refused(gated: Any, servers: egress_servers.Servers) -> None:
    """An allowed name that resolves to loopback: refused unless 127.0.0.1 is allowed itself."""
    session = gated(EgressPolicy(allow=["rebind.test"]))
    out = run(session, f"fetch('http://rebind.test:{servers.http_port}/')")
    assert out.startswith("ERR HTTP Error 403")
    assert "internal address" in session.network_log[-1].reason


def test_ipv6_and_odd_literals_through_the_gate(
    gated: Any, servers: egress_servers.Servers
) -> None:
    session = gated()
    out = run(
        session,
        RAW_PROXY
        + f"""
for target in ("[::1]:{servers.http_port}", "[::ffff:127.0.0.2]:{servers.http_port}",
               "2130706434:{servers.http_port}", "[fe80::1]:80", "169.254.169.254:80"):
    print(first_line(proxy(f"CONNECT {{target}} HTTP/1.1\\r\\n\\r\\n")))
""",
    )
    assert out.splitlines() == ["HTTP/1.1 403 Forbidden by llm-sandbox egress policy"] * 5
    assert all(e.verdict == "denied" for e in session.network_log)


def test_policies_are_per_session_and_concurrent(
    gated: Any, servers: egress_servers.Servers
) -> None:
    first = gated(EgressPolicy(allow=["api.test", LOOPBACK]))
    second = gated(EgressPolicy(allow=["other.test", LOOPBACK]))
    code = (
        f"fetch('http://api.test:{servers.http_port}/')\n"
        f"fetch('http://other.test:{servers.http_port}/')"
    )
    outputs: dict[str, str] = {}

    def go(name: str, session: SandboxSession) -> None:
        for _ in range(3):
            outputs[name] = run(session, code)

    threads = [threading.Thread(target=go, args=item) for item in (("a", first), ("b", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    forbidden = "ERR HTTP Error 403: Forbidden by llm-sandbox egress policy"
    assert outputs["a"].splitlines() == [f"OK hello api.test:{servers.http_port}", forbidden]
    assert outputs["b"].splitlines() == [forbidden, f"OK hello other.test:{servers.http_port}"]
    assert {e.host for e in first.network_log if e.verdict == "allowed"} == {"api.test"}
    assert {e.host for e in second.network_log if e.verdict == "allowed"} == {"other.test"}


def test_without_a_policy_there_is_no_gate(
    make_session: Any, backend: str, servers: egress_servers.Servers
) -> None:
    if backend == GVISOR:
        pytest.skip("covered by test_gvisor")
    session = make_session()
    out = session.run(
        "import os, socket\nprint(os.environ.get('HTTPS_PROXY'))\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {PORT}), timeout=3)\n"
        "    print('gate')\nexcept OSError:\n    print('nothing')"
    ).stdout
    assert out == "None\nnothing\n"
    assert session.network_log == []


def test_the_gate_outlives_a_timeout_and_close_leaves_nothing(
    gated: Any, backend: str, servers: egress_servers.Servers
) -> None:
    """A timeout kills every process in the sandbox (on gVisor and Kubernetes the gate's relay
    too): the next command reaches the gate again. Close leaves no relay behind, and on
    Kubernetes no object of the session's own (only the shared deny-all NetworkPolicy)."""
    session = gated()
    url = f"http://api.test:{servers.http_port}/"
    with pytest.raises(SandboxTimeoutError):
        session.run("import time\ntime.sleep(60)", timeout=2)
    assert run(session, f"fetch({url!r})") == f"OK hello api.test:{servers.http_port}\n"
    sandbox: Any = session._sandbox
    session.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        t.name == "llm-sandbox-gate-relay" for t in threading.enumerate()
    ):
        time.sleep(0.05)
    assert not [t for t in threading.enumerate() if t.name == "llm-sandbox-gate-relay"]
    if backend == "kubernetes":
        import kubernetes.client

        core = sandbox._api.core
        namespace = sandbox._api.namespace
        pods = [p.metadata.name for p in core.list_namespaced_pod(namespace).items]
        assert sandbox.name not in pods
        # (No Service either: the backend creates none, and the emulator serves none.)
        policies = kubernetes.client.NetworkingV1Api(core.api_client)
        listed = policies.list_namespaced_network_policy(namespace).items
        names = {p.metadata.name for p in listed if p.metadata is not None}
        assert names <= {"llm-sandbox-no-network"}


KILL_RELAY = """
import os, signal
found = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"struct.Struct" in f.read() and int(pid) != os.getpid():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                    found.append("killed")
                except OSError as exc:
                    found.append(type(exc).__name__)
    except OSError:
        pass
print(found)
"""


def test_the_code_cannot_keep_the_gate_away_by_killing_the_relay(
    gated: Any, backend: str, servers: egress_servers.Servers
) -> None:
    """Under gVisor the relay is root and cannot be signalled; on Kubernetes it shares the
    code's user and can be killed: the next command finds it silent and starts another."""
    if backend not in (GVISOR, "kubernetes"):
        pytest.skip("no relay here")
    session = gated()
    url = f"http://api.test:{servers.http_port}/"
    assert run(session, f"fetch({url!r})") == f"OK hello api.test:{servers.http_port}\n"
    killed = session.run(KILL_RELAY).stdout.strip()
    assert killed == ("['PermissionError']" if backend == GVISOR else "['killed']")
    assert run(session, f"fetch({url!r})") == f"OK hello api.test:{servers.http_port}\n"


def test_an_image_without_python3_gets_the_gate_through_perl(
    make_session: Any, backend: str, servers: egress_servers.Servers
) -> None:
    """Where the gate is relayed (gVisor, Kubernetes), an image without python3 (ruby) runs the
    relay in perl; Ruby's Net::HTTP honours http_proxy like any program."""
    if backend not in (GVISOR, "kubernetes"):
        pytest.skip("no relay here: the gate is opened in the sandbox's namespace")
    session = make_session(lang="ruby", network=ALLOW_API)
    code = (
        "require 'net/http'\n"
        "['api.test', 'other.test'].each do |host|\n"
        f'  r = Net::HTTP.get_response(URI("http://#{{host}}:{servers.http_port}/"))\n'
        '  puts "#{r.code} #{r.body.lines.first}"\n'
        "end\n"
    )
    result = session.run(code)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"200 hello api.test:{servers.http_port}"
    assert lines[1].startswith("403 llm-sandbox egress gate:")
    assert result.egress_denied == 1


def test_a_caller_who_cannot_enter_the_namespace_gets_the_relay(
    container_backend: str, servers: egress_servers.Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Docker/Podman with runc, for a caller that may not enter the container's network
    namespace (not root: a docker group member, rootless Podman). The tests run as root, so
    that refusal is simulated: `netns.listen_in` raises what it raises for such a caller."""
    from llm_sandbox.egress import netns

    def refuse(pid: int, port: int) -> Any:
        raise netns._unavailable(PermissionError(1, "Operation not permitted"))

    monkeypatch.setattr(netns, "listen_in", refuse)
    session = SandboxSession(backend=container_backend, network=ALLOW_API)
    with session:
        url = f"http://api.test:{servers.http_port}/"
        for _ in range(2):  # the relay serves the session's later commands too
            out = run(session, f"fetch({url!r})\nfetch({url.replace('api', 'other')!r})")
            assert out.splitlines() == [
                f"OK hello api.test:{servers.http_port}",
                "ERR HTTP Error 403: Forbidden by llm-sandbox egress policy",
            ]
        assert any(t.name == "llm-sandbox-gate-relay" for t in threading.enumerate())


def test_doctor_shows_the_gate_enforced(backend: str) -> None:
    from llm_sandbox import doctor

    options: dict[str, object] = (
        {"runtime_config": {"runtime": "runsc"}} if backend == GVISOR else {}
    )
    name = "docker" if backend == GVISOR else backend
    assert doctor._probe_gate(name, options).startswith("enforced")


def test_a_pod_with_a_network_refuses_a_policy(make_session: Any, backend: str) -> None:
    """A pod_manifest that puts the pod on the pod network (its network label is not `none`,
    so the deny-all NetworkPolicy does not select it): the gate would not be its only way out."""
    if backend != "kubernetes":
        pytest.skip("kubernetes pods only")
    manifest = {"metadata": {"labels": {"io.llm-sandbox.network": "on"}}}
    with pytest.raises(ControlUnavailableError, match="only way out"):
        make_session(network=ALLOW_API, pod_manifest=manifest)


def test_a_network_mode_means_the_whole_network_and_no_gate(container_backend: str) -> None:
    """runtime_config={'network_mode': 'bridge'} is the whole network: installs use it; a policy
    cannot be combined with it (the gate would not be the only way out)."""
    with pytest.raises(ControlUnavailableError, match="network_mode"):
        SandboxSession(
            backend=container_backend,
            runtime_config={"network_mode": "bridge"},
            network=ALLOW_API,
        ).open()
    session = SandboxSession(backend=container_backend, runtime_config={"network_mode": "bridge"})
    assert session.config.full_network


@pytest.mark.slow
def test_install_reaches_the_index_and_runs_do_not(gated: Any) -> None:
    """An install gets pip's index on top of the session's policy; the runs do not. (The index
    is the machine's PyPI, as in test_install.py; the run's attempt is refused by name, before
    anything is resolved or sent.)"""
    session = gated()
    session.install(["six==1.16.0"])
    installed = {e.host for e in session.network_log if e.verdict == "allowed"}
    assert installed <= {"pypi.org", "files.pythonhosted.org"}
    assert "pypi.org" in installed
    result = session.run(FETCH + "fetch('https://pypi.org/simple/six/')\nimport six")
    assert result.stdout.startswith("ERR")
    assert "403" in result.stdout
    assert result.egress_denied == 1
    assert session.network_log[-1].host == "pypi.org"
