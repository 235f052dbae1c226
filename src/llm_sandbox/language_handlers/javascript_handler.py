"""The 0.3.x import path of `JavaScriptHandler` (the language is the module `javascript`).

A compatibility alias only: it defines no `HANDLER`, so the registry does not take it for a
language of its own.
"""

from llm_sandbox.language_handlers.javascript import JavaScriptHandler

__all__ = ["JavaScriptHandler"]
