"""The previous generation's module for bubblewrap sessions: our embedded backend."""

from llm_sandbox.backend_sessions import BubblewrapSession

__all__ = ["BubblewrapSession"]
