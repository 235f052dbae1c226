"""`container_id=`: a session in an existing container or pod, as the previous generation had.

The container is the user's: it is started if stopped, keeps running after the session, and
the processes it ran before the session (a service) survive every kill; what the runs start is
killed after each run and at close (checked from the host).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import TEST_NAMESPACE, backend_options
from llm_sandbox import EgressPolicy, ResourceLimits, SandboxSession
from llm_sandbox.const import SandboxBackend
from llm_sandbox.exceptions import ConfigurationError, SandboxTimeoutError

ALSO_GVISOR = True
IMAGE = "localhost/llm-sandbox/python:1"
# The "service": a process the container runs before any session, which must survive.
SERVICE = "sleep 100003 & exec sleep infinity"
# What runs in the sandbox, listed from inside (the image has no ps).
LIST = (
    "import os\n"
    "for p in os.listdir('/proc'):\n"
    "    if p.isdigit():\n"
    "        try: print(open(f'/proc/{p}/cmdline','rb').read().replace(b'\\0', b' ').decode())\n"
    "        except OSError: pass\n"
)


class Existing:
    """An existing container (Docker/Podman/gVisor) or pod (Kubernetes), made outside us."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.name = f"llm-sandbox-attach-{uuid.uuid4().hex[:8]}"
        if backend == "kubernetes":  # the cluster is the `kubeconfig` fixture's
            from kubernetes import client, config

            config.load_kube_config(config_file=os.environ["KUBECONFIG"])  # type: ignore[no-untyped-call]
            self.core = client.CoreV1Api()
            body: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": self.name},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": IMAGE,
                            "command": ["sh", "-c", SERVICE],
                            # every exec runs as this user, who must create our directories
                            "securityContext": {"runAsUser": 0},
                        }
                    ]
                },
            }
            self.core.create_namespaced_pod(TEST_NAMESPACE, body)  # type: ignore[arg-type]
            return
        self.engine: Any = _engine_client(backend)
        runtime = "runsc" if backend == "gvisor" else None
        options: dict[str, Any] = {"runtime": runtime} if runtime else {}
        self.container = self.engine.containers.create(
            IMAGE, ["sh", "-c", SERVICE], name=self.name, init=True, **options
        )

    @property
    def reference(self) -> str:
        return self.name if self.backend == "kubernetes" else str(self.container.id)

    def processes(self) -> list[str]:
        """Command lines of the processes running in the container, seen from the host."""
        self.container.reload()
        return [" ".join(map(str, row)) for row in self.container.top()["Processes"]]

    def running(self) -> bool:
        if self.backend == "kubernetes":
            pod = self.core.read_namespaced_pod(self.name, TEST_NAMESPACE)
            return bool(pod.status and pod.status.phase == "Running")
        self.container.reload()
        return bool(self.container.status == "running")

    def remove(self) -> None:
        if self.backend == "kubernetes":
            self.core.delete_namespaced_pod(self.name, TEST_NAMESPACE, grace_period_seconds=0)
            return
        self.container.remove(force=True)
        self.engine.close()


def _engine_client(backend: str) -> Any:
    if backend == "podman":
        from llm_sandbox.backends.container.podman import default_client as podman_client

        return podman_client()
    import docker

    return docker.from_env()


@pytest.fixture
def existing(backend: str, request: pytest.FixtureRequest) -> Iterator[Existing]:
    if backend == "local":
        pytest.skip("the embedded backend has no containers to attach to")
    if backend == "kubernetes":
        request.getfixturevalue("kubeconfig")
    made = Existing(backend)
    yield made
    made.remove()


def attach(backend: str, reference: str, **options: Any) -> SandboxSession:
    selected = backend_options(backend)
    selected.pop("runtime_config", None)  # the container was created with its runtime
    return SandboxSession(lang="python", container_id=reference, **selected, **options)


def test_a_session_runs_in_the_container_and_leaves_it_running(
    backend: str, existing: Existing
) -> None:
    with attach(backend, existing.reference, default_timeout=60.0) as session:
        first = session.run("open('state.txt', 'w').write('kept'); print('hello')")
        assert (first.exit_code, first.stdout) == (0, "hello\n"), first.stderr
        again = session.run("print(open('state.txt').read())")
        assert again.stdout == "kept\n"
        # A daemon the run leaves behind is killed; the container's own service is not.
        session.run(
            "import subprocess; subprocess.Popen(['sleep', '100007'], start_new_session=True)"
        )
        listing = session.run(LIST).stdout
        assert "sleep 100003" in listing
        assert "sleep 100007" not in listing
        if backend != "kubernetes":
            container: Any = session.container
            assert existing.reference.startswith(container.id[:12])
        else:
            assert session.container == existing.name
    assert existing.running()
    if backend != "kubernetes":
        left = " | ".join(existing.processes())
        assert "sleep 100003" in left
        assert "llm-sandbox" not in left, left
        assert "sleep 100007" not in left, left


def _times_out_and_spares_the_service(
    session: SandboxSession, code: str, *, timeout: float, within: float, trace: str
) -> None:
    """`code` times out within `within` seconds, nothing of it (`trace` in its command line)
    is left, the container's own service still runs, and the next run works."""
    started = time.monotonic()
    with pytest.raises(SandboxTimeoutError):
        session.run(code, timeout=timeout)
    assert time.monotonic() - started < within
    listing = session.run(LIST).stdout
    assert "sleep 100003" in listing
    assert trace not in listing
    assert session.run("print(6 * 7)").stdout == "42\n"


def test_a_timeout_kills_the_run_and_spares_the_service(backend: str, existing: Existing) -> None:
    with attach(backend, existing.reference) as session:
        _times_out_and_spares_the_service(
            session, "import time; time.sleep(1000)", timeout=1.0, within=8, trace="time.sleep"
        )
    assert existing.running()


def test_a_stopped_container_is_started(container_backend: str) -> None:
    made = Existing(container_backend)
    try:
        with attach(container_backend, made.name) as session:  # by name, never started
            assert session.run("print(1)").stdout == "1\n"
        assert made.running()
    finally:
        made.remove()


def test_an_unknown_container_is_a_clear_error(container_backend: str) -> None:
    with pytest.raises(ConfigurationError, match="no container 'no-such-container-x'"):
        attach(container_backend, "no-such-container-x").open()


def test_settings_of_a_new_container_cannot_be_combined_with_it() -> None:
    with pytest.raises(ConfigurationError, match="container_id"):
        SandboxSession(backend="docker", container_id="x", dockerfile="Dockerfile")
    with pytest.raises(ConfigurationError, match="container_id"):
        SandboxSession(backend="docker", container_id="x", runtime_config={"runtime": "runsc"})
    with pytest.raises(ConfigurationError, match="container_id"):
        SandboxSession(backend="kubernetes", container_id="x", pod_manifest={"kind": "Pod"})
    with pytest.raises(ConfigurationError, match="container_id"):
        SandboxSession(backend="docker", container_id="x", network=EgressPolicy(allow=["a.test"]))


def test_a_memory_limit_cannot_be_applied_to_an_existing_container(
    container_backend: str,
) -> None:
    made = Existing(container_backend)
    try:
        session = attach(container_backend, made.name, limits=ResourceLimits(memory=64 << 20))
        with pytest.raises(ConfigurationError, match="memory cannot be applied"):
            session.open()
    finally:
        made.remove()


def test_the_previous_generations_factory_attaches() -> None:
    made = Existing("docker")
    try:
        from llm_sandbox import create_session

        with create_session(SandboxBackend.DOCKER, lang="python", container_id=made.name) as s:
            assert s.run("print('old')").stdout == "old\n"
        assert made.running()
    finally:
        made.remove()


def test_the_embedded_backend_has_no_container_to_attach_to() -> None:
    with pytest.raises(ConfigurationError, match="container_id"):
        SandboxSession(backend="local", container_id="x")


def test_a_fork_bomb_that_retries_is_killed_and_the_service_survives(backend: str) -> None:
    """Hostile: every process forks forever, retrying on EAGAIN, under the agent's process
    limit (the container has no pids limit of ours). The timeout kills all of it, the
    container's own service lives on, and the session runs again. (Not on Kubernetes here:
    the test pod runs as root, whom RLIMIT_NPROC does not bind.)"""
    if backend in ("local", "kubernetes"):
        pytest.skip("needs an existing container whose user a process limit binds")
    made = Existing(backend)
    try:
        bomb = (
            "import os\nwhile True:\n    try:\n        os.fork()\n"
            "    except OSError:\n        pass\n"
        )
        with attach(backend, made.reference, limits=ResourceLimits(processes=64)) as session:
            _times_out_and_spares_the_service(
                session, bomb, timeout=2.0, within=10, trace="os.fork"
            )
        assert made.running()
    finally:
        made.remove()
