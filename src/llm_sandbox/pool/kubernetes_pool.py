"""0.3.x's `llm_sandbox.pool.kubernetes_pool`: its manager, now the generic pool on pods."""

from llm_sandbox.pool.factory import KubernetesPoolManager

__all__ = ["KubernetesPoolManager"]
