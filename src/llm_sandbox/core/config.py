"""The previous generation's `llm_sandbox.core.config`: the session's settings."""

from llm_sandbox.config import SessionConfig

__all__ = ["SessionConfig"]
