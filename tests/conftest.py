"""Shared fixtures: one suite, parametrized over every backend that exists in this version.

A backend that exists but cannot start here is skipped on a developer machine and is a
failure under CI (`CI=true`), where the test command must have set every engine up.

A test module that sets `ALSO_GVISOR = True` runs over one more variant, "docker+runsc": the
Docker backend with gVisor as the container runtime.

The kubernetes backend runs against the Kubernetes API emulator in `tests/kube_emulator/`
(a test double that runs pods as Docker containers), started the first time a test needs
it. To run the same suites against a real cluster (kind, k3s, ...) instead, point
`LLM_SANDBOX_TEST_KUBECONFIG` at its kubeconfig, with the default images loaded into it:

    LLM_SANDBOX_TEST_KUBECONFIG=~/.kube/config .venv/bin/python -m pytest tests -k kubernetes

When that file does not exist, the kubernetes tests are skipped (even under CI).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fake_backend import FakeBackend
from llm_sandbox import SandboxSession
from llm_sandbox.backends.registry import list_backends, register_backend, unregister_backend
from llm_sandbox.exceptions import BackendUnavailableError
from llm_sandbox.pool import ContainerPoolManager, PoolConfig, create_pool_manager
from support import IN_CI

ALL_BACKENDS = ("local", "docker", "podman", "kubernetes")
GVISOR = "docker+runsc"
REAL_CLUSTER_ENV = "LLM_SANDBOX_TEST_KUBECONFIG"
TEST_NAMESPACE = "llm-sandbox-test"

_emulator: list[Any] = []  # the running emulator, once started


def real_cluster() -> bool:
    return bool(os.environ.get(REAL_CLUSTER_ENV))


def kube_cluster() -> str:
    """Point KUBECONFIG at the cluster under test (starting the emulator once); its path."""
    real = os.environ.get(REAL_CLUSTER_ENV)
    if real:
        if not Path(real).is_file():
            pytest.skip(f"{REAL_CLUSTER_ENV}={real} does not exist; no real cluster to test")
        os.environ["KUBECONFIG"] = real
        return real
    if not _emulator:
        sys.path.insert(0, str(Path(__file__).parent))
        from kube_emulator import KubeEmulator

        try:
            emulator = KubeEmulator().start()
        except Exception as exc:  # no Docker engine: the emulator cannot run pods
            raise BackendUnavailableError(f"the Kubernetes emulator needs Docker: {exc}") from exc
        path = Path(tempfile.mkdtemp(prefix="kube-emulator-")) / "kubeconfig"
        emulator.write_kubeconfig(path, namespace=TEST_NAMESPACE)
        os.environ["KUBECONFIG"] = str(path)
        _emulator.append(emulator)
    return os.environ["KUBECONFIG"]


def kube_emulator() -> Any:
    """The running emulator (None against a real cluster)."""
    kube_cluster()
    return _emulator[0] if _emulator else None


@pytest.fixture(scope="session")
def fake_backend() -> Iterator[type[FakeBackend]]:
    """The test double backend "fake" (see `fake_backend.py`), registered for the run."""
    register_backend("fake", FakeBackend)
    yield FakeBackend
    unregister_backend("fake")


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    """The kubeconfig of the cluster under test (the emulator unless a real one is given)."""
    return kube_cluster()


@pytest.fixture(scope="session")
def emulator(kubeconfig: str) -> Any:
    """The running Kubernetes API emulator; skips the test against a real cluster."""
    if not _emulator:
        pytest.skip("needs the Kubernetes API emulator (a real cluster is under test)")
    return _emulator[0]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for emulator in _emulator:
        emulator.stop()


def implemented_backends() -> list[str]:
    known = {definition.name for definition in list_backends()}
    return [name for name in ALL_BACKENDS if name in known]


def backend_options(name: str) -> dict[str, Any]:
    """The session options that select a backend name of this suite."""
    if name == GVISOR:
        return {"backend": "docker", "runtime_config": {"runtime": "runsc"}}
    return {"backend": name}


@contextlib.contextmanager
def pool_of_one(backend: str, **options: Any) -> Iterator[ContainerPoolManager]:
    """A pool that keeps exactly one Python sandbox of a backend of this suite."""
    with create_pool_manager(
        config=PoolConfig(max_pool_size=1, min_pool_size=1),
        lang="python",
        **backend_options(backend),
        **options,
    ) as pool:
        yield pool


_unavailable: dict[str, str] = {}


def _require(backend: str) -> None:
    if backend not in _unavailable:
        try:
            if backend == "kubernetes":
                kube_cluster()
            with SandboxSession(lang="python", **backend_options(backend)) as session:
                session.run("pass")
            _unavailable[backend] = ""
        except (BackendUnavailableError, ImportError) as exc:
            _unavailable[backend] = str(exc)
    reason = _unavailable[backend]
    if reason:
        if IN_CI:
            pytest.fail(f"backend {backend} cannot start under CI: {reason}")
        pytest.skip(f"backend {backend} unavailable here: {reason}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    names = implemented_backends()
    if getattr(metafunc.module, "ALSO_GVISOR", False) and "docker" in names:
        names.append(GVISOR)
    metafunc.parametrize("backend", names, indirect=True, scope="module")


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """The backend name under test (parametrized by `pytest_generate_tests`)."""
    name: str = request.param
    _require(name)
    return name


@pytest.fixture(params=[b for b in implemented_backends() if b in ("docker", "podman")])
def container_backend(request: pytest.FixtureRequest) -> str:
    """Only the container engines (docker, podman)."""
    name: str = request.param
    _require(name)
    return name


SessionFactory = Callable[..., SandboxSession]


@pytest.fixture
def make_session(backend: str) -> Iterator[SessionFactory]:
    """Open sessions on the parametrized backend; all are closed after the test."""
    opened: list[SandboxSession] = []

    def factory(**options: Any) -> SandboxSession:
        options.setdefault("lang", "python")
        selected = backend_options(backend)
        if "runtime_config" in selected and "runtime_config" in options:
            options["runtime_config"] = {
                **selected.pop("runtime_config"),
                **options["runtime_config"],
            }
        session = SandboxSession(**selected, **options)
        session.open()
        opened.append(session)
        return session

    yield factory
    for session in opened:
        session.close()


@pytest.fixture
def session(make_session: SessionFactory) -> SandboxSession:
    return make_session()
