"""The previous generation's micromamba backend, which this version does not have: making a
`MicromambaSession` raises an error that says what to use instead."""

from llm_sandbox.backend_sessions import MicromambaSession

__all__ = ["MicromambaSession"]
