"""Per-run control groups: memory, process and CPU limits, OOM detection, and a sure kill.

Two layouts exist in the wild and both are supported:

* cgroup v2 (unified): one directory holds every controller. Linux forbids processes in a
  cgroup whose children have controllers, so we cannot nest under our own cgroup. We use the
  directory named by `LLM_SANDBOX_CGROUP` (a delegated subtree, e.g. from
  `systemd-run --user --scope -p Delegate=yes`), or, as root, `<root>/llm-sandbox`.
* cgroup v1 (one hierarchy per controller): we nest under the cgroup our own process is in,
  for each of the `memory`, `pids` and `cpu` controllers, so the caller's own limits still apply.

A `CgroupSet` is created per run, processes are attached before the sandboxed command starts,
and after the run it reports whether the kernel OOM-killed something, kills whatever is left
and removes the directories.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
RUN_PREFIX = "llm-sandbox-"
"""Run cgroups are named `llm-sandbox-<pid of the session's process>-<random>`."""
V1_CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000
RUN_CPU_SHARE = 0.125
"""A run's CPU weight against a process at the default weight (see `CgroupSet`)."""


@dataclass(frozen=True)
class CgroupLimits:
    memory: int | None
    processes: int | None
    cpus: float | None


@dataclass(frozen=True)
class CgroupHost:
    """Where this process may create cgroups, and which controllers it gets there."""

    version: int
    parents: dict[str, Path]
    """Controller name → directory under which run cgroups are created."""

    @property
    def controllers(self) -> frozenset[str]:
        return frozenset(self.parents)

    def create(self, limits: CgroupLimits) -> CgroupSet:
        name = f"{RUN_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        dirs: dict[str, Path] = {}
        try:
            for controller, parent in self.parents.items():
                path = parent / name
                if path not in dirs.values():
                    path.mkdir()
                dirs[controller] = path
            cgroups = CgroupSet(self.version, dirs)
            cgroups.apply(limits)
        except OSError:
            for path in set(dirs.values()):
                with contextlib.suppress(OSError):
                    path.rmdir()
            raise
        return cgroups


class CgroupSet:
    """The cgroup directories of one run."""

    def __init__(self, version: int, dirs: dict[str, Path]) -> None:
        self.version = version
        self.dirs = dirs

    def apply(self, limits: CgroupLimits) -> None:
        if "cpu" in self.dirs:
            self._set_cpu_weight()
        if limits.memory is not None:
            self._set_memory(limits.memory)
        if limits.processes is not None:
            _write(self.dirs["pids"] / "pids.max", str(limits.processes))
        if limits.cpus is not None:
            quota = max(1000, int(limits.cpus * CPU_PERIOD_US))
            if self.version == 2:
                _write(self.dirs["cpu"] / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            else:
                _write(self.dirs["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(quota))

    def _set_cpu_weight(self) -> None:
        """A run's share of a busy CPU: RUN_CPU_SHARE of a default process's. A sandbox
        cannot starve the program that controls it (and its timeouts) however many runs
        spin at once; an idle machine still gives each run all the CPU it can use."""
        cpu = self.dirs["cpu"]
        if self.version == 2:
            _write(cpu / "cpu.weight", str(max(1, round(100 * RUN_CPU_SHARE))))
        else:
            _write(cpu / "cpu.shares", str(max(2, round(1024 * RUN_CPU_SHARE))))

    def _set_memory(self, limit: int) -> None:
        memory = self.dirs["memory"]
        if self.version == 2:
            _write(memory / "memory.max", str(limit))
            swap = memory / "memory.swap.max"
            if swap.exists():
                _write(swap, "0")
            return
        _write(memory / "memory.limit_in_bytes", str(limit))
        memsw = memory / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            _write(memsw, str(limit))

    def attach(self, pid: int) -> None:
        for path in set(self.dirs.values()):
            _write(path / "cgroup.procs", str(pid))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for path in set(self.dirs.values()):
            with contextlib.suppress(FileNotFoundError):
                found.update(int(line) for line in (path / "cgroup.procs").read_text().split())
        return found

    def oom_killed(self) -> bool:
        return self.oom_kills() > 0

    def oom_kills(self) -> int:
        """How many processes the OOM killer has killed in this cgroup."""
        memory = self.dirs.get("memory")
        if memory is None:
            return 0
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            text = (memory / name).read_text()
        except FileNotFoundError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def kill_all(self, timeout: float = 5.0) -> bool:
        """SIGKILL everything in the run's cgroups; True once they are empty."""
        deadline = time.monotonic() + timeout
        kill_file = next(iter(self.dirs.values())) / "cgroup.kill"
        while True:
            pids = self.pids()
            if not pids:
                return True
            if self.version == 2 and kill_file.exists():
                _write(kill_file, "1")
            else:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)

    def remove(self) -> None:
        self.kill_all()
        for path in set(self.dirs.values()):
            for _ in range(100):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise
                    time.sleep(0.005)


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _own_cgroups() -> dict[str, str]:
    """Controller (or "" for v2) → our cgroup path, from /proc/self/cgroup."""
    found: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            found[controller] = path
    return found


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _detect_v1(own: dict[str, str]) -> CgroupHost | None:
    parents: dict[str, Path] = {}
    for controller in V1_CONTROLLERS:
        mount = CGROUP_ROOT / controller
        if controller not in own or not (mount / "cgroup.procs").exists():
            continue
        parent = mount / own[controller].lstrip("/")
        if _writable_dir(parent):
            parents[controller] = parent
    return CgroupHost(1, parents) if parents else None


def _detect_v2(own: dict[str, str]) -> CgroupHost | None:
    if not (CGROUP_ROOT / "cgroup.controllers").exists():
        return None
    delegated = os.environ.get("LLM_SANDBOX_CGROUP")
    if delegated:
        parent = Path(delegated)
    elif os.geteuid() == 0:
        parent = CGROUP_ROOT / "llm-sandbox"
        with contextlib.suppress(FileExistsError, PermissionError):
            parent.mkdir()
    else:
        return None
    if not _writable_dir(parent):
        return None
    available = set((parent / "cgroup.controllers").read_text().split())
    wanted = {"memory", "pids", "cpu"} & available
    enabled = set((parent / "cgroup.subtree_control").read_text().split())
    for controller in sorted(wanted - enabled):
        with contextlib.suppress(OSError):
            _write(parent / "cgroup.subtree_control", f"+{controller}")
    enabled = set((parent / "cgroup.subtree_control").read_text().split())
    parents = {controller: parent for controller in wanted & enabled}
    return CgroupHost(2, parents) if parents else None


def detect() -> CgroupHost | None:
    """Find where this process can create limited cgroups; None when nowhere."""
    try:
        own = _own_cgroups()
    except OSError:
        return None
    try:
        return _detect_v2(own) or _detect_v1(own)
    except OSError:
        return None


def orphans(alive: Callable[[str], bool], all_: bool = False) -> list[Path]:
    """Run cgroups whose session process is gone (every one with `all_`), deepest first.

    A caller killed in the middle of a run leaves its run's cgroups behind (their processes
    die with it: bubblewrap runs with --die-with-parent). They are found anywhere under the
    cgroup mounts, since `llm-sandbox gc` may itself run in another cgroup.
    """
    roots = [CGROUP_ROOT / c for c in V1_CONTROLLERS] if not _unified() else [CGROUP_ROOT]
    found: list[Path] = []
    for root in roots:
        if not root.is_dir():
            continue
        for parent, dirs, _ in os.walk(root):
            for name in dirs:
                if not name.startswith(RUN_PREFIX):
                    continue
                owner = name[len(RUN_PREFIX) :].split("-", 1)[0]
                if all_ or (owner.isdigit() and not alive(owner)):
                    found.append(Path(parent, name))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_orphan(path: Path) -> None:
    """Kill what is left in a run cgroup found by `orphans` and remove it."""
    CgroupSet(2 if _unified() else 1, {"": path}).remove()


def _unified() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()
