"""Runs cannot starve the program that controls them (embedded backend).

Each run's cgroup weighs 1/8 of a default process on a busy CPU, so however many runs spin at
once, the caller (its event loop, its timeouts, its other work) keeps a fair share of the
machine. bench/async.py measures what this does to an event loop's lag; here the attack is a
set of sessions spinning on every core while a host process tries to get work done.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.backends.local.cgroups import CGROUP_ROOT, RUN_CPU_SHARE
from llm_sandbox.backends.local.host import probe

pytestmark = pytest.mark.skipif(
    "cpu" not in probe().cgroup_controllers, reason="no cpu cgroup controller to weigh runs"
)

SPIN = """
import os, sys, time
print("SPINNING", flush=True)
os.fork()
end = time.monotonic() + float(sys.argv[1] if len(sys.argv) > 1 else 4)
while time.monotonic() < end:
    pass
"""


def _cpu_cgroup(pid_cgroup_text: str) -> Path:
    for line in pid_cgroup_text.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            return CGROUP_ROOT / path.lstrip("/")
        if "cpu" in controllers.split(","):
            return CGROUP_ROOT / controllers / path.lstrip("/")
    raise AssertionError(f"no cpu cgroup in {pid_cgroup_text!r}")


def test_a_runs_cgroup_weighs_less_than_a_default_process() -> None:
    seen: dict[str, str] = {}
    with SandboxSession(lang="python", backend="local") as session:

        def look(text: str) -> None:
            if "CGROUP" in text and not seen:
                path = _cpu_cgroup(text.split("CGROUP", 1)[1])
                for name in ("cpu.shares", "cpu.weight"):
                    if (path / name).exists():
                        seen[name] = (path / name).read_text().strip()

        result = session.run(
            "import time\nprint('CGROUP' + open('/proc/self/cgroup').read(), flush=True)\n"
            "time.sleep(1)",
            on_stdout=look,
        )
    assert result.exit_code == 0, result
    expected = {
        "cpu.shares": str(round(1024 * RUN_CPU_SHARE)),
        "cpu.weight": str(round(100 * RUN_CPU_SHARE)),
    }
    assert seen, "the run's cpu cgroup was not found from the host"
    for name, value in seen.items():
        assert value == expected[name], (name, value)


def test_spinning_runs_leave_the_caller_its_share() -> None:
    """Six sessions spin on every core; a busy host process beside them still gets most of
    a core (at equal weights it would get about 1/7 of the machine: 0.3 of a core here)."""
    sessions = [SandboxSession(lang="python", backend="local") for _ in range(6)]
    started = threading.Barrier(len(sessions) + 1, timeout=60)
    errors: list[BaseException] = []

    def spin(session: SandboxSession) -> None:
        waiting = [True]

        def ready(text: str) -> None:
            if "SPINNING" in text and waiting[0]:
                waiting[0] = False
                started.wait()

        try:
            session.run(SPIN, on_stdout=ready, timeout=30)
        except BaseException as exc:  # reported below
            errors.append(exc)
            started.abort()

    for session in sessions:
        session.open()
    try:
        threads = [threading.Thread(target=spin, args=(s,)) for s in sessions]
        for thread in threads:
            thread.start()
        started.wait()
        # A host process of the caller's own (same session and cgroup), busy for 2 s.
        busy = subprocess.run(
            [
                sys.executable,
                "-c",
                "import os, time\nend = time.monotonic() + 2\n"
                "while time.monotonic() < end:\n    pass\n"
                "t = os.times()\nprint(t.user + t.system)",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        for thread in threads:
            thread.join(60)
    finally:
        for session in sessions:
            session.close()
    assert not errors, errors
    cores = float(busy.stdout) / 2
    print(f"host process: {cores:.2f} cores")
    assert (os.cpu_count() or 1) < 2 or cores > 0.5, f"the host process got {cores:.2f} cores"
