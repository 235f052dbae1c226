"""The previous generation's module for Docker sessions (`SandboxDockerSession`)."""

from llm_sandbox.backend_sessions import SandboxDockerSession

__all__ = ["SandboxDockerSession"]
