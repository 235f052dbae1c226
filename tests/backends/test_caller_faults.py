"""What the caller does wrong: dying with SIGKILL mid-run, using a session from many threads.

* A caller killed mid-run leaves its sandbox behind (containers, volumes, pods; for the
  embedded backend its private directory and the run's cgroups; its processes die with it).
  `llm-sandbox gc` removes all of it, and nothing of that session is left on the host.
* A session used from several threads at once runs one command at a time: every run gets its
  own output, and a close from another thread waits for the run in progress, after which runs
  are refused with `SessionStateError`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hostile import GVISOR, _cgroup_procs, _descendants, _main_pid
from llm_sandbox import SandboxSession
from llm_sandbox.exceptions import SessionStateError
from llm_sandbox.layout import PID_LABEL

ALSO_GVISOR = True
SessionFactory = Callable[..., SandboxSession]
REPO = Path(__file__).resolve().parents[2]

# The caller: opens a session, reports what it created, starts a long run, and is killed.
CALLER = r"""
import json, sys
from llm_sandbox import SandboxSession
options = json.loads(sys.argv[1])
session = SandboxSession(lang="python", **options)
session.open()
sandbox = session._sandbox
created = {
    "container": getattr(sandbox, "_container", None),
    "pod": getattr(sandbox, "name", None) if options.get("backend") == "kubernetes" else None,
    "state": getattr(getattr(sandbox, "_paths", None), "state", None),
    "holder": getattr(getattr(sandbox, "_holder", None), "pid", None),
}
print(json.dumps(created), flush=True)
session.run("import time\nprint('RUNNING', flush=True)\ntime.sleep(300)",
            timeout=600, on_stdout=lambda text: print(text, end="", flush=True))
"""


def _options(backend: str) -> dict[str, Any]:
    if backend == GVISOR:
        return {"backend": "docker", "runtime_config": {"runtime": "runsc"}}
    return {"backend": backend}


def _engine_has(engine: str, kind: str, label: str) -> list[str]:
    done = subprocess.run(
        [engine, kind, "ls", "-q", "--filter", f"label={label}"]
        if kind == "volume"
        else [engine, "ps", "-aq", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.split()


def _pods_of(pid: int) -> list[str]:
    from llm_sandbox.backends.kubernetes.client import default_client

    core, _ = default_client()
    try:
        pods = core.list_pod_for_all_namespaces(label_selector=f"{PID_LABEL}={pid}").items
        return [p.metadata.name for p in pods]
    finally:
        core.api_client.close()


def _local_leftovers(pid: int, state: str) -> list[str]:
    found = [state] if os.path.exists(state) else []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        found += [os.path.join(root, d) for d in dirs if d.startswith(f"llm-sandbox-{pid}-")]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if state.encode() in (entry / "cmdline").read_bytes():
                    found.append(f"process {entry.name}")
            except OSError:
                continue
    return found


def _leftovers(backend: str, pid: int, created: dict[str, Any]) -> list[str]:
    label = f"{PID_LABEL}={pid}"
    if backend == "local":
        return _local_leftovers(pid, created["state"])
    if backend == "kubernetes":
        return _pods_of(pid)
    engine = "podman" if backend == "podman" else "docker"
    return _engine_has(engine, "container", label) + _engine_has(engine, "volume", label)


def test_a_caller_killed_mid_run_leaves_only_what_gc_removes(
    backend: str, kubeconfig_if_needed: None, record_property: Callable[[str, object], None]
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    caller = subprocess.Popen(
        [sys.executable, "-c", CALLER, json.dumps(_options(backend))],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert caller.stdout is not None
    try:
        created = json.loads(caller.stdout.readline())
        assert caller.stdout.readline().strip() == "RUNNING"
    finally:
        os.kill(caller.pid, signal.SIGKILL)
        caller.wait(timeout=30)
        caller.stdout.close()
    time.sleep(0.5)  # the embedded backend's processes die with their parent
    before = _leftovers(backend, caller.pid, created)
    if backend != "local":
        assert before, "the killed caller's sandbox should still exist before gc"

    gc = subprocess.run(
        [sys.executable, "-m", "llm_sandbox", "gc"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert gc.returncode == 0, gc.stderr
    after = _leftovers(backend, caller.pid, created)
    record_property("left_before_gc", len(before))
    print(f"\nOUTCOME caller SIGKILL | {backend} | {len(before)} left before gc, {after} after")
    assert after == []
    if created.get("container") and backend != "kubernetes":
        engine = "podman" if backend == "podman" else "docker"
        pid = _main_pid(engine, created["container"])
        assert pid == 0 or _cgroup_procs(pid) is None
    if created.get("holder"):
        assert not _descendants(created["holder"])


@pytest.fixture
def kubeconfig_if_needed(backend: str, request: pytest.FixtureRequest) -> None:
    """The caller (another process) finds the cluster through KUBECONFIG, as users do."""
    if backend == "kubernetes":
        request.getfixturevalue("kubeconfig")


def test_concurrent_use_from_threads_is_serialized(make_session: SessionFactory) -> None:
    session = make_session()
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            results[n] = [session.run(f"print({n} * 1000 + {i})").stdout for i in range(4)]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == []
    assert results == {n: [f"{n * 1000 + i}\n" for i in range(4)] for n in range(8)}


def test_close_from_another_thread_waits_for_the_run_then_refuses(
    make_session: SessionFactory,
) -> None:
    session = make_session()
    started = threading.Event()
    outcome: list[object] = []

    def runner() -> None:
        outcome.append(
            session.run(
                "import time\nprint('go', flush=True)\ntime.sleep(1)\nprint('done')",
                on_stdout=lambda text: started.set(),
            )
        )

    thread = threading.Thread(target=runner)
    thread.start()
    assert started.wait(60)
    session.close()
    thread.join(timeout=60)
    assert [getattr(r, "stdout", r) for r in outcome] == ["go\ndone\n"]
    with pytest.raises(SessionStateError):
        session.run("print(1)")
