"""The 0.3.x import path of `PythonHandler` (the language is the module `python`).

A compatibility alias only: it defines no `HANDLER`, so the registry does not take it for a
language of its own.
"""

from llm_sandbox.language_handlers.python import PythonHandler

__all__ = ["PythonHandler"]
