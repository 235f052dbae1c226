"""The 0.3.x import path of `CppHandler` (the language is the module `cpp`).

A compatibility alias only: it defines no `HANDLER`, so the registry does not take it for a
language of its own.
"""

from llm_sandbox.language_handlers.cpp import CppHandler

__all__ = ["CppHandler"]
