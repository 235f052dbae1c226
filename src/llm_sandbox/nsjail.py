"""The previous generation's NsJail backend, which this version does not have: making an
`NsjailSession` raises an error that says to use the embedded (bubblewrap) backend."""

from llm_sandbox.backend_sessions import NsjailSession

__all__ = ["NsjailSession"]
