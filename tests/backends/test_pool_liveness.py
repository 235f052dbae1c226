"""A pooled sandbox that ended while idle (its container killed, its pod deleted, its
session holder killed, from outside) is never handed out: `acquire()` notices, destroys it
and hands out a working replacement. A live idle sandbox is confirmed by a cheap look."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import pool_of_one
from llm_sandbox.pool import (
    ContainerPoolManager,
    ContainerState,
    PooledSandboxSession,
)


@pytest.fixture
def pool(backend: str) -> Iterator[ContainerPoolManager]:
    with pool_of_one(backend) as pool:
        yield pool


def _idle_sandbox(pool: ContainerPoolManager) -> Any:
    deadline = time.monotonic() + 120
    while True:
        idle = [c for c in pool.containers() if c.state is ContainerState.IDLE]
        if idle:
            assert idle[0].prepared is not None
            return idle[0], idle[0].prepared.sandbox
        assert time.monotonic() < deadline, "no idle sandbox in time"
        time.sleep(0.05)


def _kill_from_outside(backend: str, sandbox: Any) -> None:
    if backend == "local":
        pid = sandbox._holder_pid  # the process that keeps the sandbox's files
        os.kill(pid, signal.SIGKILL)
        while _running(pid):  # a kill is delivered asynchronously: wait until it is done
            time.sleep(0.001)
    elif backend == "kubernetes":
        from llm_sandbox.backends.kubernetes.client import default_client

        core, _ = default_client()
        core.delete_namespaced_pod(sandbox.name, sandbox._api.namespace, grace_period_seconds=0)
        while sandbox._api.read_if_exists(sandbox.name) is not None:  # deletion is asynchronous
            time.sleep(0.01)
    else:
        cli = "podman" if backend == "podman" else "docker"
        subprocess.run(
            [cli, "kill", sandbox._container], capture_output=True, timeout=60, check=True
        )


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def test_a_live_idle_sandbox_is_confirmed_cheaply(backend: str, pool: ContainerPoolManager) -> None:
    _, sandbox = _idle_sandbox(pool)
    started = time.perf_counter()
    alive = sandbox.alive()
    took = time.perf_counter() - started
    if backend == "kubernetes":
        assert alive is None  # a pod is confirmed by the API, not by its exec streams
        sandbox.check_alive()
        return
    assert alive is True
    assert took < 0.005, f"the cheap look took {took * 1000:.2f} ms"


def test_an_idle_sandbox_killed_from_outside_is_replaced(
    backend: str, pool: ContainerPoolManager
) -> None:
    container, sandbox = _idle_sandbox(pool)
    _kill_from_outside(backend, sandbox)
    with PooledSandboxSession(pool) as session:
        assert session.pooled_container is not container
        result = session.run("print(6 * 7)")
        assert result.exit_code == 0, result.stderr
        assert result.stdout == "42\n"
    assert pool.get_stats()["found_dead"] == 1
