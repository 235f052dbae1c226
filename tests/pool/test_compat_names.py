"""The previous generation's pool names import from where 0.3.x had them."""

from __future__ import annotations

import importlib

import pytest

from llm_sandbox.exceptions import SandboxError

NAMES = {
    "llm_sandbox.pool": [
        "ArtifactPooledSandboxSession",
        "ContainerPoolManager",
        "ContainerState",
        "ExhaustionStrategy",
        "PoolClosedError",
        "PoolConfig",
        "PoolExhaustedError",
        "PoolHealthCheckError",
        "PooledContainer",
        "PooledSandboxSession",
        "create_pool_manager",
    ],
    "llm_sandbox.pool.base": ["ContainerPoolManager", "ContainerState", "PooledContainer"],
    "llm_sandbox.pool.config": ["PoolConfig", "ExhaustionStrategy"],
    "llm_sandbox.pool.exceptions": [
        "PoolExhaustedError",
        "PoolClosedError",
        "PoolHealthCheckError",
        "SessionNotOpenError",
    ],
    "llm_sandbox.pool.factory": ["create_pool_manager"],
    "llm_sandbox.pool.session": [
        "PooledSandboxSession",
        "ArtifactPooledSandboxSession",
        "DuplicateClientError",
    ],
    "llm_sandbox.pool.docker_pool": ["DockerPoolManager"],
    "llm_sandbox.pool.podman_pool": ["PodmanPoolManager"],
    "llm_sandbox.pool.kubernetes_pool": ["KubernetesPoolManager"],
    "llm_sandbox.session": [
        "ContainerPoolManager",
        "PooledSandboxSession",
        "ArtifactPooledSandboxSession",
    ],
}


@pytest.mark.parametrize(("module", "names"), sorted(NAMES.items()))
def test_names_import(module: str, names: list[str]) -> None:
    loaded = importlib.import_module(module)
    for name in names:
        assert hasattr(loaded, name), f"{module}.{name}"


def test_pool_errors_are_ours_with_the_old_messages_and_fields() -> None:
    from llm_sandbox.pool import PoolClosedError, PoolExhaustedError, PoolHealthCheckError

    exhausted = PoolExhaustedError(3, 1.5)
    assert str(exhausted).startswith("All 3 containers in pool are busy and timeout of 1.5s")
    assert (exhausted.pool_size, exhausted.timeout) == (3, 1.5)
    assert str(PoolClosedError()) == "Container pool has been closed"
    health = PoolHealthCheckError("abc", "gone")
    assert str(health) == "Health check failed for container abc: gone"
    assert (health.container_id, health.reason) == ("abc", "gone")
    for error in (exhausted, PoolClosedError(), health):
        assert isinstance(error, SandboxError)
