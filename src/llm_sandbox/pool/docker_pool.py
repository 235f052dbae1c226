"""0.3.x's `llm_sandbox.pool.docker_pool`: its manager class, now the generic pool on docker."""

from llm_sandbox.pool.factory import DockerPoolManager

__all__ = ["DockerPoolManager"]
