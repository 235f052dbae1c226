"""`llm-sandbox doctor`: what each backend can enforce on this machine, measured by probing.

Each check runs real code inside a real sandbox and reads the answer from the kernel
(/proc/self/status, the network devices, the pid namespace); nothing is inferred from config.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from llm_sandbox.backends.registry import BackendDefinition, list_backends
from llm_sandbox.exceptions import SandboxError

if TYPE_CHECKING:
    from llm_sandbox.session import SandboxSession

_PROBE = r"""
import json, os
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
devs = [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]]
try:
    open("/probe-root-write", "w"); root_ro = False
except OSError:
    root_ro = True
print(json.dumps({
    "uid": os.getuid(),
    "cap_eff": status["CapEff"].strip(),
    "no_new_privs": status.get("NoNewPrivs", "").strip() == "1",
    "seccomp": status.get("Seccomp", "").strip() == "2",
    "net_devices": devs,
    "pid1": open("/proc/1/cmdline").read().split("\0")[0],
    "root_read_only": root_ro,
    "home_visible": os.path.exists("/home") and bool(os.listdir("/home")),
    "kernel": os.uname().release,
}))
"""


_GATE_PROBE = r"""
import socket
s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
s.sendall(b"CONNECT doctor.invalid:443 HTTP/1.1\r\n\r\n")
print(s.recv(4096).split(b"\r\n")[0].decode())
"""
GATE_ANSWER = "HTTP/1.1 403 Forbidden by llm-sandbox egress policy"


@dataclass
class BackendReport:
    backend: str
    usable: bool
    error: str = ""
    controls: dict[str, object] = field(default_factory=dict)


def _probe_session(backend: str, options: Mapping[str, object]) -> dict[str, object]:
    from llm_sandbox.session import SandboxSession

    with SandboxSession(lang="python", backend=backend, **options) as session:  # type: ignore[arg-type]
        result = session.run(_PROBE, timeout=60)
        if result.exit_code != 0:
            raise SandboxError(f"probe failed: {result.stderr.strip()}")
        found: dict[str, object] = json.loads(result.stdout)
        found["warm_runs"] = _probe_warm_runs(session)
        return found


def _probe_warm_runs(session: SandboxSession) -> str:
    """How a pooled sandbox of this backend runs warm Python: forked from a warm interpreter
    (tried here: a run must come back from it), or started plainly, and why."""
    sandbox = session._sandbox
    assert sandbox is not None
    reason = sandbox.warm_runs(session._run_env())
    if reason is not None:
        return f"plain start ({reason})"
    result = session.run("print('forked')", timeout=60)
    if result.stdout != "forked\n":
        return f"plain start (the fork server did not answer: {result.stderr.strip()[-200:]})"
    return "fork server (Python in pooled sandboxes; other runs start plainly)"


def _probe_gate(backend: str, options: Mapping[str, object]) -> str:
    """Whether the egress gate is the sandbox's way out here: a session whose policy allows
    nothing asks the gate for a host; the gate must answer (and refuse, so nothing is sent)."""
    from llm_sandbox.egress import PORT, EgressPolicy
    from llm_sandbox.session import SandboxSession

    try:
        with SandboxSession(
            lang="python",
            backend=backend,
            network=EgressPolicy(),
            **options,  # type: ignore[arg-type]
        ) as session:
            result = session.run(_GATE_PROBE.replace("PORT", str(PORT)), timeout=60)
            denied = [e for e in session.network_log if e.verdict == "denied"]
    except SandboxError as exc:
        return f"unavailable: {exc}"
    if result.stdout.strip() == GATE_ANSWER and len(denied) == 1:
        return "enforced (policies and installs go through the gate)"
    return f"NOT working: {(result.stdout + result.stderr).strip()[-300:]}"


def _summarise(raw: dict[str, object]) -> dict[str, object]:
    devices = raw.get("net_devices") or []
    assert isinstance(devices, list)
    return {
        "non_root_user": raw.get("uid") != 0,
        "capabilities_dropped": raw.get("cap_eff") == "0000000000000000",
        "seccomp_filter": raw.get("seccomp"),
        "no_new_privileges": raw.get("no_new_privs"),
        "network_isolated": set(devices) <= {"lo"},
        "read_only_root": raw.get("root_read_only"),
        "host_home_hidden": not raw.get("home_visible"),
        "own_pid_namespace": raw.get("pid1") != "/sbin/init",
    }


def check(
    definition: BackendDefinition, suffix: str = "", options: Mapping[str, object] = {}
) -> BackendReport:
    """Probe one backend (one variant of it: e.g. docker with gVisor as the runtime)."""
    name = definition.name + suffix
    try:
        raw = _probe_session(definition.name, options)
        controls = _summarise(raw)
        controls["kernel_seen_by_code"] = raw.get("kernel")
        controls["warm_runs"] = raw.get("warm_runs")
        # gVisor answers syscalls in its own user-space kernel; the host's seccomp and
        # no_new_privs then apply to that kernel, out of the code's sight (so "NO" above).
        controls["user_space_kernel"] = raw.get("kernel") != os.uname().release
        controls["egress_gate"] = _probe_gate(definition.name, options)
        if definition.doctor_facts is not None and not suffix:
            controls.update(definition.doctor_facts())
    except SandboxError as exc:
        return BackendReport(name, usable=False, error=str(exc))
    return BackendReport(name, usable=True, controls=controls)


def run_doctor() -> list[BackendReport]:
    """A report per backend and variant, in the registry's order."""
    return [
        check(definition, suffix, options)
        for definition in list_backends()
        for suffix, options in definition.doctor_variants
    ]


def format_reports(reports: list[BackendReport]) -> str:
    lines: list[str] = []
    for report in reports:
        mark = "usable" if report.usable else "NOT usable"
        lines.append(f"{report.backend}: {mark}")
        if report.error:
            lines.append(f"  reason: {report.error}")
        for name, value in report.controls.items():
            shown = (
                {True: "yes", False: "NO"}.get(value, value) if isinstance(value, bool) else value
            )
            lines.append(f"  {name:22} {shown}")
    return "\n".join(lines)
