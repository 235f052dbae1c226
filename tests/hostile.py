"""What the hostile-code suites share: a session's host footprint, and timing a run.

The footprint is what a session holds, seen from the host: the processes in its container's
pids cgroup (docker, podman, the emulator's pod containers), or the processes under the
embedded backend's session holder. gVisor's processes live inside its kernel, and the host
sees only that kernel and a pool of helper processes it keeps for reuse, so there the count
is of the processes inside, read by a root exec that the sandboxed code does not control.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from llm_sandbox import SandboxSession

GVISOR = "docker+runsc"


def _engine(backend: str) -> str:
    return "podman" if backend == "podman" else "docker"


def container_name(session: SandboxSession, backend: str) -> str:
    """The engine container a session runs in (test-only reach into the session)."""
    sandbox: Any = session._sandbox
    if backend == "kubernetes":
        return f"kube-emulator-{sandbox._api.namespace}-{sandbox.name}"
    return str(sandbox._container)


def _main_pid(engine: str, container: str) -> int:
    done = subprocess.run(
        [engine, "inspect", "--format", "{{.State.Pid}}", container],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    text = done.stdout.strip()
    return int(text) if done.returncode == 0 and text.isdigit() else 0


def _cgroup_procs(pid: int) -> Path | None:
    """cgroup.procs of the pids cgroup `pid` is in (cgroup v1, else v2)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            return Path(f"/sys/fs/cgroup/pids{path}/cgroup.procs")
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                candidate = Path(f"{root}{path}/cgroup.procs")
                if candidate.exists():
                    return candidate
    return None


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def footprint(session: SandboxSession, backend: str) -> int:
    """How many host processes the session holds right now (0 once its sandbox is gone)."""
    sandbox: Any = session._sandbox
    if sandbox is None:
        return 0
    if backend == "local":
        holder = sandbox._holder
        return (
            0 if holder is None or holder.poll() is not None else 1 + len(_descendants(holder.pid))
        )
    if backend == GVISOR:
        return _inside_count(container_name(session, backend))
    pid = _main_pid(_engine(backend), container_name(session, backend))
    procs = _cgroup_procs(pid) if pid else None
    if procs is None:
        return 0
    try:
        return len(procs.read_text().split())
    except OSError:
        return 0


RUNSC_ROOTS = ("/var/run/docker/runtime-runc/moby", "/var/run/docker/runtime-runsc/moby")
"""Where dockerd's runsc keeps its containers' state (the runtime's root depends on how
dockerd names the shim's runtime directory)."""


def runsc_processes(container: str) -> list[tuple[int, str]] | None:
    """The processes inside a gVisor container as (pid, command name), asked of runsc from the
    host: an exec would have to start a process in the sandbox, which hangs for a minute while
    a fork bomb's aftermath holds its process table. None where runsc's state is not found
    (or the container is gone). runsc names each process's command only, not its arguments."""
    full = subprocess.run(
        ["docker", "inspect", "--format", "{{.Id}}", container],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout.strip()
    for root in RUNSC_ROOTS:
        if not full or not os.path.isdir(root):
            continue
        listed = subprocess.run(
            ["runsc", "--root", root, "ps", full],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if listed.returncode == 0:
            rows = [line.split() for line in listed.stdout.splitlines()[1:]]
            return [(int(row[1]), row[-1]) for row in rows if len(row) >= 8]
    return None


def _inside_count(container: str) -> int:
    """Processes inside a gVisor container: from runsc, or by a root exec where runsc's state
    is elsewhere."""
    listed = runsc_processes(container)
    if listed is not None:
        return len(listed)
    done = subprocess.run(
        ["docker", "exec", "-u", "0", container, "sh", "-c", "set -- /proc/[0-9]*; echo $#"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    text = done.stdout.strip()
    return int(text) - 1 if done.returncode == 0 and text.isdigit() else 0  # less the exec


def settled_footprint(
    session: SandboxSession, backend: str, at_most: int, grace: float = 3.0
) -> int:
    """The footprint once it is at most `at_most`, or as it is after `grace` seconds (engines
    reap a killed container's processes asynchronously)."""
    deadline = time.monotonic() + grace
    while True:
        now = footprint(session, backend)
        if now <= at_most or time.monotonic() >= deadline:
            return now
        time.sleep(0.05)
