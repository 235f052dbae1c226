"""The 0.3.x import path of `RubyHandler` (the language is the module `ruby`).

A compatibility alias only: it defines no `HANDLER`, so the registry does not take it for a
language of its own.
"""

from llm_sandbox.language_handlers.ruby import RubyHandler

__all__ = ["RubyHandler"]
