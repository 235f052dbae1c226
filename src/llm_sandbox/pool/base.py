"""0.3.x's `llm_sandbox.pool.base`: the manager and the pooled sandbox's record."""

from llm_sandbox.pool.container import ContainerState, PooledContainer
from llm_sandbox.pool.manager import ContainerPoolManager

__all__ = ["ContainerPoolManager", "ContainerState", "PooledContainer"]
