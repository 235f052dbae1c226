"""Language handlers: pure descriptions of how to compile, run and install for a language."""

from llm_sandbox.language_handlers.base import AbstractLanguageHandler, CommandPlan, LanguageConfig
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory

__all__ = ["AbstractLanguageHandler", "CommandPlan", "LanguageConfig", "LanguageHandlerFactory"]
