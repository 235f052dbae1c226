"""The session container, described engine-neutrally: secure defaults, then the user's opt-outs.

Pure: `build_spec` turns a session's config into the keyword arguments of the Docker SDK's
`containers.create` (Podman's adapter translates the few it spells differently).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from typing import Any

from llm_sandbox.backends.agent.protocol import KILLER_SCRIPT
from llm_sandbox.backends.container.options import ContainerOptions
from llm_sandbox.backends.seccomp import oci_profile
from llm_sandbox.config import ResourceLimits, SessionConfig, parse_size
from llm_sandbox.layout import LABEL, LIBS_DIR, PID_LABEL, SUPPORT_DIR

SANDBOX_USER = "1000:1000"
KILLER_USER = "0:0"
"""The container's own processes (init and the killer): root with no capability but CAP_KILL."""
# gVisor runs the code in a user-space kernel (the Sentry) whose host threads and per-process
# stubs share the container's pids cgroup. Measured with runsc's ptrace platform: about 56 at
# rest; a fork bomb under RLIMIT_NPROC n peaks at 361 (n=16), 1163 (n=64), 1848 (n=128). A
# Sentry that cannot create a thread panics and takes the whole sandbox down, so under gVisor
# the host limit budgets the Sentry (about twice those peaks), and the process limit itself
# is RLIMIT_NPROC, which gVisor enforces inside the sandbox.
GVISOR_HOST_PIDS_BASE = 512
GVISOR_HOST_PIDS_PER_PROCESS = 24


@dataclass
class ContainerSpec:
    """Engine-neutral description of the session container (Docker SDK argument names)."""

    image: str
    workdir: str
    user: str
    network: bool
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the SDK's `containers.create`."""
    isolate: bool = False
    """Disconnect the container from its network between create and start."""


def build_spec(config: SessionConfig, image: str, libs_volume: str) -> ContainerSpec:
    """Secure defaults, then the user's runtime_config on top (explicit opt-outs win)."""
    options = config.options(ContainerOptions)
    rc: dict[str, Any] = dict(options.runtime_config)  # keys validated by ContainerOptions
    limits = config.limits
    workdir = str(rc.pop("working_dir", config.workdir))
    user = str(rc.pop("user", SANDBOX_USER))
    network_mode = rc.pop("network_mode", None)
    network = config.full_network or network_mode not in (None, "none")
    environment = dict(options.environment)
    rc.pop("environment", None)
    tmpfs = f"rw,exec,size={limits.disk},nr_inodes={limits.max_files}"
    create: dict[str, Any] = {
        # pid 1 is an init (reaps orphans); its child, the container's main process, is the
        # killer (see agent/protocol.KILLER_SCRIPT), reached by attaching to its stdin. It is
        # root with CAP_KILL alone: the code's user (no capabilities) cannot signal, ptrace
        # or read it, while it can SIGKILL everything else at once however hostile the run.
        "entrypoint": ["sh", "-c", KILLER_SCRIPT],
        "init": True,
        "stdin_open": True,
        "user": KILLER_USER,
        "cap_drop": ["ALL"],
        "cap_add": ["KILL"],
        # Our seccomp policy (the one the embedded backend uses), not the engine's default.
        "security_opt": ["no-new-privileges:true", _seccomp_option()],
        # A committed container must be able to keep what install() put there.
        "read_only": not options.commit_container,
        "tmpfs": {
            workdir: f"{tmpfs},mode=1777{_owner_options(user)}",
            "/tmp": f"{tmpfs},mode=1777",
            SUPPORT_DIR: f"{tmpfs},mode=1777{_owner_options(user)}",
        },
        "environment": environment,
        "labels": {LABEL: "1", PID_LABEL: str(os.getpid())},
        # Created on the default bridge and, unless the session wants network, disconnected
        # before it starts: that leaves only loopback, yet lets install() connect for a while
        # (a container created with network "none" can never be connected).
        "network_mode": network_mode or "bridge",
        # Installed libraries live on disk, not in memory: written by root, read-only to code.
        "volumes": {libs_volume: {"bind": LIBS_DIR, "mode": "rw"}, **rc.pop("volumes", {})},
    }
    create.update(_limit_options(limits, rc, gvisor=is_gvisor(rc.get("runtime"))))
    # Capabilities the user adds come on top of the killer's.
    create["cap_add"] = sorted({"KILL", *(rc.pop("cap_add", None) or ())})
    create.update(rc)
    if "memory" in create:
        create["mem_limit"] = create.pop("memory")
    return ContainerSpec(
        image=image,
        workdir=workdir,
        user=user,
        network=network,
        options=create,
        isolate=network_mode is None and not network,
    )


def _owner_options(user: str) -> str:
    """tmpfs options making the work directory the exec user's own (Docker honours these)."""
    uid, _, gid = user.partition(":")
    if not uid.isdigit():
        return ""
    return f",uid={uid},gid={gid or uid}" if (gid or uid).isdigit() else f",uid={uid}"


def is_gvisor(runtime: object) -> bool:
    """Whether an OCI runtime name means gVisor (its binary and usual runtime name: runsc)."""
    return isinstance(runtime, str) and ("runsc" in runtime or "gvisor" in runtime)


def _limit_options(limits: ResourceLimits, rc: dict[str, Any], *, gvisor: bool) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if limits.memory is not None and "memory" not in rc and "mem_limit" not in rc:
        options["mem_limit"] = limits.memory
        options["memswap_limit"] = limits.memory
    elif "memswap_limit" not in rc and ("memory" in rc or "mem_limit" in rc):
        memory: int | str = rc.get("mem_limit", rc.get("memory", 0))
        options["memswap_limit"] = parse_size(memory, "runtime_config['memory']")
    rlimits = {"nofile": limits.open_files, "core": 0}
    if gvisor:
        # A pids_limit the user gave means their process limit here too.
        processes = rc.pop("pids_limit", limits.processes)
        if processes is not None:
            options["pids_limit"] = GVISOR_HOST_PIDS_BASE + GVISOR_HOST_PIDS_PER_PROCESS * processes
            rlimits["nproc"] = processes
    elif limits.processes is not None:
        options["pids_limit"] = limits.processes
    if limits.file_size is not None:
        rlimits["fsize"] = limits.file_size
    if limits.cpu_time is not None:
        rlimits["cpu"] = limits.cpu_time
    options["ulimits"] = [{"Name": n, "Soft": v, "Hard": v} for n, v in sorted(rlimits.items())]
    if limits.cpus is not None:
        options["nano_cpus"] = int(limits.cpus * 1e9)
    if "cpu_count" in rc:
        options["nano_cpus"] = int(rc.pop("cpu_count")) * 1_000_000_000
    return options


@functools.cache
def _seccomp_option() -> str:
    """The engine option carrying our seccomp profile (the same for every container of this
    machine; computing it costs milliseconds of CPU, paid once)."""
    return f"seccomp={json.dumps(oci_profile())}"
