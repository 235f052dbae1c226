"""0.3.x's `llm_sandbox.pool.podman_pool`: its manager class, now the generic pool on podman."""

from llm_sandbox.pool.factory import PodmanPoolManager

__all__ = ["PodmanPoolManager"]
