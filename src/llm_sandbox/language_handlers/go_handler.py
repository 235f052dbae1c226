"""The 0.3.x import path of `GoHandler` (the language is the module `go`).

A compatibility alias only: it defines no `HANDLER`, so the registry does not take it for a
language of its own.
"""

from llm_sandbox.language_handlers.go import GoHandler

__all__ = ["GoHandler"]
