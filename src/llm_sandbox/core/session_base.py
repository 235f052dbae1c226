"""The previous generation's `llm_sandbox.core.session_base`: every session is a `BaseSession`."""

from llm_sandbox.session import SandboxSession

BaseSession = SandboxSession
"""The class every session is an instance of."""

__all__ = ["BaseSession"]
