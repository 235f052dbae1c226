"""The previous generation's module for Kubernetes sessions (`SandboxKubernetesSession`)."""

from llm_sandbox.backend_sessions import SandboxKubernetesSession

__all__ = ["SandboxKubernetesSession"]
