"""The previous generation's module for Podman sessions (`SandboxPodmanSession`)."""

from llm_sandbox.backend_sessions import SandboxPodmanSession

__all__ = ["SandboxPodmanSession"]
