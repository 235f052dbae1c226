"""Shared fixtures: one suite, parametrized over every backend that exists in this version.

A backend that exists but cannot start here is skipped on a developer machine and is a
failure under CI (`CI=true`), where the test command must have set every engine up.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.exceptions import BackendUnavailableError

ALL_BACKENDS = ("local", "docker", "podman")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def implemented_backends() -> list[str]:
    return [
        name
        for name in ALL_BACKENDS
        if importlib.util.find_spec(f"llm_sandbox.backends.{name}") is not None
    ]


_unavailable: dict[str, str] = {}


def _require(backend: str) -> None:
    if backend not in _unavailable:
        try:
            with SandboxSession(lang="python", backend=backend) as session:
                session.run("pass")
            _unavailable[backend] = ""
        except BackendUnavailableError as exc:
            _unavailable[backend] = str(exc)
    reason = _unavailable[backend]
    if reason:
        if IN_CI:
            pytest.fail(f"backend {backend} cannot start under CI: {reason}")
        pytest.skip(f"backend {backend} unavailable here: {reason}")


@pytest.fixture(scope="module", params=implemented_backends())
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    _require(name)
    return name


@pytest.fixture(params=[b for b in implemented_backends() if b != "local"])
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
        session = SandboxSession(backend=backend, **options)
        session.open()
        opened.append(session)
        return session

    yield factory
    for session in opened:
        session.close()


@pytest.fixture
def session(make_session: SessionFactory) -> SandboxSession:
    return make_session()
