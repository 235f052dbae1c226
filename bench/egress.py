"""What the egress gate costs (JSON, one run; compare as ratios).

* `https_get`: an HTTPS GET (new connection, TLS handshake, one request) to a test server on the
  host's loopback, direct from the host vs through the gate (CONNECT, SNI check, relay). Medians
  of `--repeat` requests; `added_ms` is the difference.
* `connections_per_s`: plain-HTTP GETs through one gate from `--clients` threads for
  `--seconds`, each a new connection (the gate's worst case), beside the same load direct.
* `sandbox_run`: a trivial run in a session with a policy vs one without, per backend
  (`--backends`): the cost of opening the gate in each command's network namespace, or (gVisor,
  `docker+runsc`; Kubernetes, through the API emulator of tests/kube_emulator) of the relay.
  `run_with_get_s`: a run that makes one HTTP GET to the loopback test server through the gate;
  `get_in_sandbox_ms`: the median of twenty such GETs timed inside one run (the whole path:
  proxy variables, gate, and on gVisor and Kubernetes the relay).

All traffic stays on loopback (the test servers of tests/egress_servers.py).

    python bench/egress.py --repeat 200 --clients 8 --seconds 3 \
        --backends local docker docker+runsc kubernetes
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

# bench/kubernetes.py is named like the client package: take this directory off the path.
_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
sys.path.insert(0, str(_here.parent / "tests"))

import egress_servers  # noqa: E402
from llm_sandbox import EgressPolicy, SandboxSession  # noqa: E402
from llm_sandbox.egress import Gate  # noqa: E402
from llm_sandbox.egress.resolver import pretend_hosts  # noqa: E402
from llm_sandbox.exceptions import SandboxError  # noqa: E402

POLICY = EgressPolicy(allow=["api.test", "127.0.0.1"])


def https_get(port: int, context: ssl.SSLContext, proxy: int | None) -> None:
    if proxy is None:
        sock = socket.create_connection(("127.0.0.1", port))
    else:
        sock = socket.create_connection(("127.0.0.1", proxy))
        sock.sendall(f"CONNECT api.test:{port} HTTP/1.1\r\n\r\n".encode())
        if not sock.recv(4096).startswith(b"HTTP/1.1 200"):
            raise RuntimeError("the gate refused")
    with context.wrap_socket(sock, server_hostname="api.test") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
        while tls.recv(65536):
            pass


def http_get(port: int, proxy: int | None) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy or port, timeout=10)
    path = f"http://api.test:{port}/" if proxy else "/"
    conn.request("GET", path, headers={"Host": f"api.test:{port}"})
    if conn.getresponse().read()[:5] != b"hello":
        raise RuntimeError("unexpected answer")
    conn.close()


def median_ms(call: Callable[[], object], repeat: int) -> float:
    call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return round(statistics.median(samples) * 1000, 3)


def rate(call: Callable[[], None], clients: int, seconds: float) -> float:
    done = [0] * clients
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        while time.monotonic() < stop:
            call()
            done[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return round(sum(done) / (time.monotonic() - started), 1)


GET = "import urllib.request\nurllib.request.urlopen('http://api.test:PORT/', timeout=10).read()"
GETS = """
import statistics, time, urllib.request
def get():
    urllib.request.urlopen('http://api.test:PORT/', timeout=10).read()
get()
samples = []
for _ in range(20):
    started = time.perf_counter()
    get()
    samples.append(time.perf_counter() - started)
print(round(statistics.median(samples) * 1000, 2))
"""
"""Twenty GETs in one run, timed inside the sandbox: the gate's path without the run's cost."""


def session_options(backend: str) -> dict[str, Any]:
    if backend == "docker+runsc":
        return {"backend": "docker", "runtime_config": {"runtime": "runsc"}}
    return {"backend": backend}


@contextlib.contextmanager
def kube_emulator(backends: list[str]) -> Iterator[None]:
    """The API emulator, when kubernetes is measured and no KUBECONFIG is given."""
    if "kubernetes" not in backends or os.environ.get("KUBECONFIG"):
        yield
        return
    from kube_emulator import KubeEmulator

    emulator = KubeEmulator().start()
    config = Path(tempfile.mkdtemp(prefix="kube-emulator-bench-")) / "kubeconfig"
    os.environ["KUBECONFIG"] = str(emulator.write_kubeconfig(config))
    try:
        yield
    finally:
        emulator.stop()


def sandbox_run(backend: str, repeat: int, http_port: int) -> dict[str, object]:
    options = session_options(backend)
    get = GET.replace("PORT", str(http_port))
    try:
        with (
            SandboxSession(**options) as plain,
            SandboxSession(network=POLICY, **options) as gated,
        ):
            base = median_ms(lambda: plain.run("pass"), repeat) / 1000
            with_gate = median_ms(lambda: gated.run("pass"), repeat) / 1000
            fetch = median_ms(lambda: gated.run(get), repeat) / 1000
            if gated.network_log[-1].verdict != "allowed":
                return {"error": f"the GET was refused: {gated.network_log[-1]}"}
            inside = gated.run(GETS.replace("PORT", str(http_port)))
            if inside.exit_code != 0:
                return {"error": inside.stderr.strip()[-300:]}
    except SandboxError as exc:
        return {"error": str(exc)}
    return {
        "plain_s": round(base, 4),
        "policy_s": round(with_gate, 4),
        "ratio": round(with_gate / base, 3),
        "run_with_get_s": round(fetch, 4),
        "get_in_sandbox_ms": float(inside.stdout),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--backends", nargs="*", default=["local"])
    args = parser.parse_args()
    report: dict[str, object] = {}
    with pretend_hosts({"api.test": "127.0.0.1"}), kube_emulator(args.backends):
        servers_iter: Generator[egress_servers.Servers] = egress_servers.start()
        servers = next(servers_iter)
        gate = Gate(POLICY)
        _, proxy = gate.listen_local()
        context = ssl.create_default_context(cadata=servers.cert_pem)
        try:
            direct = median_ms(lambda: https_get(servers.https_port, context, None), args.repeat)
            gated = median_ms(lambda: https_get(servers.https_port, context, proxy), args.repeat)
            report["https_get"] = {
                "direct_ms": direct,
                "gate_ms": gated,
                "added_ms": round(gated - direct, 3),
                "ratio": round(gated / direct, 3),
            }
            port = servers.http_port
            direct_rate = rate(lambda: http_get(port, None), args.clients, args.seconds)
            gate_rate = rate(lambda: http_get(port, proxy), args.clients, args.seconds)
            report["connections_per_s"] = {
                "clients": args.clients,
                "direct": direct_rate,
                "gate": gate_rate,
                "ratio": round(gate_rate / direct_rate, 3),
                "gate_log_entries": len(gate.events),
            }
            report["sandbox_run"] = {
                backend: sandbox_run(backend, max(5, args.repeat // 20), port)
                for backend in args.backends
            }
        finally:
            gate.close()
            servers_iter.close()
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
