"""Pools on every real backend: user B never sees a trace of user A, and close() leaves nothing.

The pool holds one sandbox, so B always gets the very sandbox A used. A plays a hostile
tenant: files everywhere it can write (unreadable directories, hidden files, symlinks),
daemons in new sessions and double-forked, a System V shared memory segment, a "library" in
its user site-packages, a sitecustomize that would change B's environment; then it ends
normally, by timing out, by running out of memory, or by killing its own agent. B looks for
each of those. The host then checks that `close()` left no container, volume, pod, process,
cgroup or mount, and that `llm-sandbox gc` removes the sandboxes of a pool whose owner died.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import backend_options
from llm_sandbox.exceptions import SandboxError, SandboxTimeoutError
from llm_sandbox.pool import (
    ContainerPoolManager,
    PoolConfig,
    PooledSandboxSession,
    create_pool_manager,
)

ALSO_GVISOR = True
MARK = "A-was-here"

PLANT = f"""
import ctypes, os, site, subprocess
mark = {MARK!r}
planted = []
def plant(path, text="A"):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        planted.append(path)
    except OSError:
        pass
for d in [".", "/tmp", "/dev/shm", "/dev/mqueue", "/var/tmp", "/run", "/home", "/opt/llm-sandbox",
          "/opt/llm-sandbox/libs", os.path.expanduser("~")]:
    plant(os.path.join(d, mark))
    plant(os.path.join(d, "." + mark))
os.makedirs("deep/er", exist_ok=True)
plant("deep/er/" + mark)
os.symlink("/etc/passwd", "link-" + mark)
os.chmod("deep/er", 0)
os.chmod("deep", 0)
user_site = site.getusersitepackages()
plant(os.path.join(user_site, "a_was_here.py"), "X = 1")
plant(os.path.join(user_site, "sitecustomize.py"), "import os; os.environ['A_WAS_HERE'] = '1'")
plant(os.path.expanduser("~/.profile"), "export A_WAS_HERE=1")
subprocess.Popen(["sh", "-c", "exec -a " + mark + " sleep 1000"], start_new_session=True)
subprocess.Popen(["sh", "-c", "(exec -a " + mark + "-orphan sleep 1001 &); sleep 1"],
                 start_new_session=True).wait()
libc = ctypes.CDLL(None)
libc.shmget(0xA11CE, 4096, 0o1666)
print("planted", len(planted))
"""

LOOK = f"""
import os, importlib.util
mark = {MARK!r}
found = []
libs = "/opt/llm-sandbox/libs"
a_names = (mark, "/deep", ".local", ".profile", "a_was_here", "sitecustomize")
for line in open("/proc/self/mounts"):
    _, mount, _, options = line.split()[:4]
    if "rw" not in options.split(",") or mount.startswith(("/proc", "/sys")):
        continue
    if mount in ("/dev", "/dev/pts") or mount.startswith(libs) or not os.path.isdir(mount):
        continue
    for root, dirs, files in os.walk(mount):
        for name in dirs + files:
            path = os.path.join(root, name)
            if any(token in path for token in a_names):
                found.append(path)
found += ["in the work directory: " + name for name in os.listdir(".")]
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            with open(f"/proc/{{pid}}/cmdline", "rb") as f:
                if mark.encode() in f.read():
                    found.append("process " + pid)
        except OSError:
            pass
try:
    for line in open("/proc/sysvipc/shm").readlines()[1:]:
        if line.split()[0] == str(0xA11CE):
            found.append("shm segment")
except OSError:
    pass
if importlib.util.find_spec("a_was_here") is not None:
    found.append("module a_was_here")
if "A_WAS_HERE" in os.environ:
    found.append("environment")
if os.path.lexists(os.path.join(libs, mark)):
    found.append("libs file")
print(repr(found))
"""


def pool_options(backend: str) -> dict[str, Any]:
    options = backend_options(backend)
    return {"backend": options.pop("backend"), **options}


@pytest.fixture(scope="module")
def pool(backend: str) -> Iterator[ContainerPoolManager]:
    with create_pool_manager(
        config=PoolConfig(max_pool_size=1, min_pool_size=1), lang="python", **pool_options(backend)
    ) as pool:
        yield pool


def b_finds(pool: ContainerPoolManager) -> list[str]:
    """What user B finds of A's traces (in the sandbox A just gave back)."""
    from llm_sandbox import SandboxSession

    with SandboxSession(pool=pool) as session:
        result = session.run(LOOK, timeout=60)
        assert result.exit_code == 0, result.stderr
        found: list[str] = eval(result.stdout)  # a repr of a list of str, printed by LOOK
        return found


def test_b_sees_nothing_of_a(pool: ContainerPoolManager, caplog: pytest.LogCaptureFixture) -> None:

    with PooledSandboxSession(pool) as session:
        first = session.pooled_container
        result = session.run(PLANT, timeout=60)
        assert result.exit_code == 0, result.stderr
        assert "planted" in result.stdout
        seen = session.run(LOOK).stdout
        assert MARK in seen  # while A has the sandbox
        assert "module a_was_here" in seen
    assert b_finds(pool) == []
    if pool.backend == "kubernetes":
        # In a pod the code's user can write the libraries directory: the wipe keeps it,
        # sees it differ from when the sandbox was new, and the pool replaces the sandbox.
        assert "libdata" in caplog.text
    else:
        assert next(iter(pool.containers())) is first  # the same sandbox, wiped


def test_b_sees_nothing_after_a_timed_out(pool: ContainerPoolManager) -> None:
    from llm_sandbox import SandboxSession

    with SandboxSession(pool=pool) as session, pytest.raises(SandboxTimeoutError):
        session.run(PLANT + "\nwhile True: pass", timeout=3)
    assert b_finds(pool) == []


def test_b_sees_nothing_after_a_ran_out_of_memory(pool: ContainerPoolManager) -> None:
    from llm_sandbox import SandboxSession

    hog = PLANT + "\nhog = []\nwhile True: hog.append(bytearray(32 * 2**20))"
    with SandboxSession(pool=pool) as session:
        try:
            result = session.run(hog, timeout=60)
            assert result.exit_code != 0
        except SandboxError:
            pass  # under gVisor running out of memory ends the whole sandbox
    assert b_finds(pool) == []


def test_b_sees_nothing_after_a_killed_its_agent(pool: ContainerPoolManager) -> None:
    from llm_sandbox import SandboxSession

    crash = PLANT + "\nimport os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(-1, 9)"
    with SandboxSession(pool=pool) as session, contextlib.suppress(SandboxError):
        session.run(crash, timeout=30)  # it ends its agent: the exit status is unknown
    assert b_finds(pool) == []


# --- what the host sees ----------------------------------------------------------------------
def host_traces(backend: str, pool: ContainerPoolManager) -> dict[str, list[str]]:
    """Everything of `pool`'s sandboxes the host can see (ids, processes, paths)."""
    traces: dict[str, list[str]] = {"containers": [], "volumes": [], "processes": [], "paths": []}
    ours: set[str] = set()
    for container in pool.containers():
        assert container.prepared is not None
        sandbox: Any = container.prepared.sandbox
        if backend == "local":
            traces["processes"].append(str(sandbox._holder.pid))
            traces["processes"].append(str(sandbox._holder_pid))
            traces["paths"].append(sandbox._paths.state)
            server = sandbox._forks.process if sandbox._forks else None
            if server is not None and server._cgroup is not None:  # the fork server's
                ours.update(str(path) for path in server._cgroup.dirs.values())
        elif backend == "kubernetes":
            traces["containers"].append(sandbox.name)
        else:
            traces["containers"].append(container.container_id)
            traces["volumes"].append(sandbox._libs_volume)
    if backend == "local":
        # Cgroups of other sandboxes alive now (e.g. a module's pool) are not this pool's.
        traces["foreign_cgroups"] = [p for p in _my_cgroups() if p not in ours]
    return traces


def _my_cgroups() -> list[str]:
    from llm_sandbox.backends.local import cgroups

    mine = str(os.getpid())
    return [str(p) for p in cgroups.orphans(lambda pid: pid != mine)]


def running(pid: str) -> bool:
    """Whether process `pid` exists and is not a zombie (dead; this machine's pid 1, a
    process supervisor, does not reap the orphans it inherits)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def settled(backend: str, traces: dict[str, list[str]]) -> list[str]:
    """`still_there` once it is empty, or after a while: a pod's deletion is asynchronous
    in the API (close asks for it and waits, but a loaded API server may answer late)."""
    deadline = time.monotonic() + (30.0 if backend == "kubernetes" else 0.0)
    while True:
        left = still_there(backend, traces)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def still_there(backend: str, traces: dict[str, list[str]]) -> list[str]:
    left = [f"process {pid}" for pid in traces["processes"] if running(pid)]
    left += [f"path {path}" for path in traces["paths"] if os.path.exists(path)]
    with open("/proc/self/mountinfo") as f:
        mounts = f.read()
    left += [f"mount {path}" for path in traces["paths"] if path in mounts]
    if backend == "local":
        foreign = set(traces.get("foreign_cgroups", []))
        left += [f"cgroup {p}" for p in _my_cgroups() if p not in foreign]
    elif backend == "kubernetes":
        from kubernetes import client, config

        config.load_kube_config(config_file=os.environ["KUBECONFIG"])  # type: ignore[no-untyped-call]
        names = {
            p.metadata.name
            for p in client.CoreV1Api().list_namespaced_pod("llm-sandbox-test").items
            if p.metadata
        }
        left += [f"pod {name}" for name in traces["containers"] if name in names]
    else:
        engine = "podman" if backend == "podman" else "docker"
        for kind, ids in (("container", traces["containers"]), ("volume", traces["volumes"])):
            for ident in ids:
                found = subprocess.run(
                    [engine, kind, "inspect", ident], capture_output=True, check=False
                )
                if found.returncode == 0:
                    left.append(f"{kind} {ident}")
    return left


def test_close_leaves_nothing(backend: str) -> None:
    from llm_sandbox import SandboxSession

    pool = create_pool_manager(
        config=PoolConfig(max_pool_size=3, min_pool_size=2), lang="python", **pool_options(backend)
    )
    try:
        deadline = time.monotonic() + 120
        while pool.get_stats()["state_counts"]["idle"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        busy = SandboxSession(pool=pool)
        busy.open()
        busy.run(PLANT)
        traces = host_traces(backend, pool)
        assert len(traces["containers"]) + len(traces["paths"]) == 2
        assert len(still_there(backend, traces)) >= 2  # the check sees them while open
    finally:
        pool.close()
    assert settled(backend, traces) == []
    busy.close()  # giving it back to a closed pool is harmless


GC_CHILD = """
import json, os, sys, time
sys.path.insert(0, "tests")
from llm_sandbox.pool import PoolConfig, create_pool_manager
options = json.loads(sys.argv[1])  # kubernetes: KUBECONFIG names the tests' cluster
pool = create_pool_manager(config=PoolConfig(max_pool_size=2, min_pool_size=2), **options)
while pool.get_stats()["state_counts"]["idle"] < 2:
    time.sleep(0.05)
traces = {"containers": [], "volumes": [], "processes": [], "paths": []}
for c in pool.containers():
    s = c.prepared.sandbox
    if options["backend"] == "local":
        traces["paths"].append(s._paths.state)
    elif options["backend"] == "kubernetes":
        traces["containers"].append(s.name)
    else:
        traces["containers"].append(c.container_id)
        traces["volumes"].append(s._libs_volume)
print(json.dumps(traces), flush=True)
os._exit(9)  # the owner crashes: no close()
"""


def test_gc_removes_the_pool_of_a_crashed_owner(backend: str) -> None:
    if backend == "docker+runsc":
        pytest.skip("the same clean-up as docker")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.run(
        [sys.executable, "-c", GC_CHILD, json.dumps(pool_options(backend))],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert child.returncode == 9, child.stderr
    traces = json.loads(child.stdout.strip().splitlines()[-1])
    if backend == "local":  # this process's own sandboxes (e.g. the module's pool) stay
        traces["foreign_cgroups"] = _my_cgroups()
    if backend != "local":  # local sandboxes die with their owner; their state stays
        assert still_there(backend, traces) != []
    gc = subprocess.run(
        [sys.executable, "-m", "llm_sandbox", "gc"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert gc.returncode == 0, gc.stderr
    assert settled(backend, traces) == []


def test_the_pools_libraries_stay_and_a_users_go(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    if backend in ("kubernetes", "docker+runsc"):
        pytest.skip("installs need the network: a pod's is all or nothing, gVisor's is off here")
    config = PoolConfig(max_pool_size=1)
    with create_pool_manager(
        config=config, lang="python", libraries=["six"], **pool_options(backend)
    ) as pool:
        with PooledSandboxSession(pool) as a:
            first = a.pooled_container
            result = a.run("import six, tomli; print('both')", libraries=["tomli"])
            assert result.stdout == "both\n", result.stderr
        with PooledSandboxSession(pool) as b:
            assert b.pooled_container is not first  # changed libraries: replaced, not reused
            check = "import six\ntry:\n    import tomli\nexcept ImportError:\n    print('gone')"
            assert b.run(check).stdout == "gone\n"
    assert "libraries were installed" in caplog.text
