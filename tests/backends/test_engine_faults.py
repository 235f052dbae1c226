"""Engine faults under a live session: daemon restarts, containers killed and pods deleted from
outside, the engine's storage full.

For each: the session gives a clear error of ours within seconds (no hang), `close()` works,
a new session works once the engine is back, and nothing of the session is left.

The daemon restarts use engines of this module's own (see `tests/engines.py`): restarting the
machine's would break every other test running on it. They need root. These tests restart
daemons and fill storage, so they run alone, after the main suite (`-m engine_faults`, see
scripts/test.sh); the main run leaves them out.
"""

from __future__ import annotations

import gc
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engines import PrivateDocker, PrivatePodman, is_root
from llm_sandbox import SandboxSession
from llm_sandbox.backends.container import VOLUME_GRACE
from llm_sandbox.exceptions import BackendUnavailableError, SandboxError, SandboxTimeoutError
from llm_sandbox.layout import LABEL
from support import IN_CI

pytestmark = pytest.mark.engine_faults

FAULT_ANSWERED_WITHIN = 10.0
"""Seconds from a fault to the session's error."""
STORAGE = 400 * 1024 * 1024
IMAGE = "localhost/llm-sandbox/ruby:1"
"""The smallest default image: the private daemon's storage holds a copy."""
LONG = "echo STARTED; sleep 120"


def _require_root() -> None:
    if not is_root():
        if IN_CI:
            pytest.fail("the engine-fault tests run as root under CI")
        pytest.skip("running private engines needs root")


@pytest.fixture
def sdk_sockets_of_failed_connections() -> Iterator[None]:
    """The Docker and Podman SDKs do not close the socket of a connection attempt that failed
    (their daemon was down): tests that take a daemon away ignore those (the marker next to
    this fixture) and collect them, rather than have the garbage collector report them in
    whatever test runs next. Ours are closed (the other tests here check with warnings as
    errors)."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(scope="module")
def private_docker() -> Iterator[PrivateDocker]:
    _require_root()
    daemon = PrivateDocker(STORAGE)
    try:
        daemon.start()
        daemon.load(IMAGE)
        yield daemon
    finally:
        daemon.close()


@pytest.fixture(scope="module")
def private_podman() -> Iterator[PrivatePodman]:
    _require_root()
    service = PrivatePodman()
    try:
        service.start()
        yield service
    finally:
        service.close()


def _docker_session(daemon: PrivateDocker) -> SandboxSession:
    session = SandboxSession(lang="ruby", backend="docker", client=daemon.client())
    session.open()
    return session


def _fault_during_run(
    session: SandboxSession, fault: Callable[[], None]
) -> tuple[BaseException | None, float]:
    """Run a long command, inject `fault` once it printed STARTED; (error, seconds from the
    fault's start to the error)."""
    started = threading.Event()
    fault_at: list[float] = []

    def inject() -> None:
        if started.wait(60):
            fault_at.append(time.monotonic())
            fault()

    injector = threading.Thread(target=inject)
    injector.start()
    error: BaseException | None = None
    try:
        session.execute_command(LONG, timeout=180, on_stdout=lambda text: started.set())
    except Exception as exc:
        error = exc
    ended = time.monotonic()
    injector.join(timeout=120)
    return error, (ended - fault_at[0]) if fault_at else float("inf")


def _assert_ours(error: BaseException | None, took: float, what: str) -> None:
    print(f"\nOUTCOME {what} | {type(error).__name__} after {took:.2f} s | {error}")
    assert isinstance(error, SandboxError), f"{what}: {error!r}"
    assert took <= FAULT_ANSWERED_WITHIN, f"{what}: the error came {took:.1f} s after the fault"


def _assert_new_session_works(make: Callable[[], SandboxSession]) -> None:
    session = make()
    try:
        assert session.execute_command("echo fresh").stdout == "fresh\n"
    finally:
        session.close()


# --- the Docker daemon restarted -------------------------------------------------------------


@pytest.mark.usefixtures("sdk_sockets_of_failed_connections")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_docker_restart_mid_run(private_docker: PrivateDocker) -> None:
    session = _docker_session(private_docker)
    error, took = _fault_during_run(session, private_docker.restart)
    _assert_ours(error, took, "dockerd restarted mid-run")
    # While it is down the error names it; once it is back, the stopped container says so.
    assert "Docker is not reachable" in str(error) or "open a new session" in str(error)
    with pytest.raises(SandboxError, match="open a new session"):
        session.execute_command("echo after")
    session.close()
    _assert_new_session_works(lambda: _docker_session(private_docker))
    assert private_docker.ours(LABEL) == []


@pytest.mark.usefixtures("sdk_sockets_of_failed_connections")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_docker_restart_between_runs(private_docker: PrivateDocker) -> None:
    session = _docker_session(private_docker)
    assert session.execute_command("echo before").stdout == "before\n"
    private_docker.restart()
    started = time.monotonic()
    with pytest.raises(SandboxError, match="open a new session") as caught:
        session.execute_command("echo after")
    _assert_ours(caught.value, time.monotonic() - started, "dockerd restarted between runs")
    session.close()
    _assert_new_session_works(lambda: _docker_session(private_docker))
    assert private_docker.ours(LABEL) == []


@pytest.mark.usefixtures("sdk_sockets_of_failed_connections")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_docker_down_then_back(private_docker: PrivateDocker) -> None:
    """While the daemon is down: runs fail at once with BackendUnavailableError naming the
    engine, close() works; once it is back, gc removes what close could not."""
    session = _docker_session(private_docker)
    private_docker.stop()
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match=r"(?i)docker") as caught:
            session.execute_command("echo down")
        _assert_ours(caught.value, time.monotonic() - started, "dockerd down")
        session.close()
    finally:
        private_docker.start()
    # gc leaves a live process's unused library volume alone for a while (its session may be
    # opening); this one's session is closed.
    time.sleep(VOLUME_GRACE)
    _gc_private(private_docker)
    assert private_docker.ours(LABEL) == []
    _assert_new_session_works(lambda: _docker_session(private_docker))


def _gc_private(daemon: PrivateDocker) -> None:
    """`llm-sandbox gc` against the private daemon (DOCKER_HOST points the CLI there)."""
    import os
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "llm_sandbox", "gc"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DOCKER_HOST": daemon.url},
        check=False,
    )
    assert done.returncode == 0, done.stderr


# --- the engine's storage full ----------------------------------------------------------------


def test_docker_storage_full(private_docker: PrivateDocker) -> None:
    """With no byte left where the engine keeps containers and volumes: a new session is
    refused at once with the engine's reason; an open one still runs and stops runs; close()
    works; once space is back a new session works."""
    session = _docker_session(private_docker)
    filler = private_docker.fill_storage()
    try:
        started = time.monotonic()
        with pytest.raises(SandboxError, match=r"(?i)no space|space left") as caught:
            _docker_session(private_docker)
        _assert_ours(caught.value, time.monotonic() - started, "storage full at open")
        assert session.execute_command("echo still").stdout == "still\n"
        with pytest.raises(SandboxError):
            session.execute_command("sleep 60", timeout=1)
        assert session.execute_command("echo again").stdout == "again\n"
        session.close()
    finally:
        filler.unlink()
    _assert_new_session_works(lambda: _docker_session(private_docker))
    assert private_docker.ours(LABEL) == []


# --- the Podman service restarted -------------------------------------------------------------


def _podman_session(service: PrivatePodman) -> SandboxSession:
    session = SandboxSession(lang="ruby", backend="podman", client=service.client())
    session.open()
    return session


def _podman_container_gone(session_container: str) -> bool:
    done = subprocess.run(
        ["podman", "container", "exists", session_container], capture_output=True, check=False
    )
    return done.returncode != 0


@pytest.mark.usefixtures("sdk_sockets_of_failed_connections")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_podman_restart_mid_run(private_podman: PrivatePodman) -> None:
    """Podman's containers outlive its service: the run in progress fails (its connection is
    gone), and the same session runs again once the service is back."""
    session = _podman_session(private_podman)
    container = _container(session)
    error, took = _fault_during_run(session, private_podman.restart)
    _assert_ours(error, took, "podman service restarted mid-run")
    assert session.execute_command("echo again").stdout == "again\n"
    session.close()
    assert _podman_container_gone(container)
    _assert_new_session_works(lambda: _podman_session(private_podman))


@pytest.mark.usefixtures("sdk_sockets_of_failed_connections")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_podman_restart_between_runs(private_podman: PrivatePodman) -> None:
    """Between runs a restart goes unnoticed: the next run starts a new agent, and a timeout
    still kills (Podman closed the killer's stdin with its connection: a root exec kills)."""
    session = _podman_session(private_podman)
    container = _container(session)
    assert session.execute_command("echo before").stdout == "before\n"
    private_podman.restart()
    started = time.monotonic()
    result = session.execute_command("echo after")
    took = time.monotonic() - started
    print(f"\nOUTCOME podman restarted between runs | after {took:.2f} s | {result.stdout!r}")
    assert result.stdout == "after\n"
    with pytest.raises(SandboxTimeoutError) as caught:
        session.execute_command("echo STARTED; sleep 60", timeout=2)
    assert caught.value.processes_killed
    assert session.execute_command("echo again").stdout == "again\n"
    session.close()
    assert _podman_container_gone(container)


# --- the container killed, the pod deleted, from outside --------------------------------------


def _container(session: SandboxSession) -> str:
    container: str = session._sandbox._container  # type: ignore[union-attr]
    return container


@pytest.mark.parametrize("engine", ["docker", "podman", "docker+runsc"])
@pytest.mark.parametrize("when", ["mid-run", "between runs"])
def test_container_killed_from_outside(engine: str, when: str) -> None:
    options: dict[str, Any] = {"backend": engine}
    if engine == "docker+runsc":
        options = {"backend": "docker", "runtime_config": {"runtime": "runsc"}}
    cli = "podman" if engine == "podman" else "docker"
    session = SandboxSession(lang="ruby", **options)
    session.open()
    container = _container(session)

    def kill() -> None:
        subprocess.run([cli, "kill", container], capture_output=True, timeout=60, check=True)

    if when == "mid-run":
        error, took = _fault_during_run(session, kill)
    else:
        kill()
        started = time.monotonic()
        try:
            session.execute_command("echo after")
            error = None
        except Exception as exc:
            error = exc
        took = time.monotonic() - started
    _assert_ours(error, took, f"{engine} container killed {when}")
    assert "open a new session" in str(error)
    session.close()
    done = subprocess.run(
        [cli, "container", "inspect", container], capture_output=True, check=False
    )
    assert done.returncode != 0, "the killed container was not removed"
    fresh = SandboxSession(lang="ruby", **options)
    with fresh:
        assert fresh.execute_command("echo fresh").stdout == "fresh\n"


@pytest.mark.parametrize("when", ["mid-run", "between runs"])
def test_pod_deleted_from_outside(kubeconfig: str, when: str) -> None:
    from llm_sandbox.backends.kubernetes.client import default_client

    session = SandboxSession(lang="ruby", backend="kubernetes")
    session.open()
    sandbox: Any = session._sandbox
    core, _ = default_client()

    def delete() -> None:
        core.delete_namespaced_pod(sandbox.name, sandbox._api.namespace, grace_period_seconds=0)

    try:
        if when == "mid-run":
            error, took = _fault_during_run(session, delete)
        else:
            delete()
            started = time.monotonic()
            try:
                session.execute_command("echo after")
                error = None
            except Exception as exc:
                error = exc
            took = time.monotonic() - started
        _assert_ours(error, took, f"pod deleted {when}")
        assert "open a new session" in str(error)
        session.close()
        fresh = SandboxSession(lang="ruby", backend="kubernetes")
        with fresh:
            assert fresh.execute_command("echo fresh").stdout == "fresh\n"
    finally:
        core.api_client.close()
