"""The 0.3.x import path of `JavaHandler` (the language is the module `java`).

A compatibility alias only: it defines no `HANDLER`, so the registry does not take it for a
language of its own.
"""

from llm_sandbox.language_handlers.java import JavaHandler

__all__ = ["JavaHandler"]
