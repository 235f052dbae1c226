"""`llm-sandbox doctor`: what each backend can enforce on this machine, measured by probing.

Each check runs real code inside a real sandbox and reads the answer from the kernel
(/proc/self/status, the network devices, the pid namespace); nothing is inferred from config.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from llm_sandbox.backends.registry import BackendDefinition, list_backends
from llm_sandbox.exceptions import SandboxError

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
        return found


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
        # gVisor answers syscalls in its own user-space kernel; the host's seccomp and
        # no_new_privs then apply to that kernel, out of the code's sight (so "NO" above).
        controls["user_space_kernel"] = raw.get("kernel") != os.uname().release
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
