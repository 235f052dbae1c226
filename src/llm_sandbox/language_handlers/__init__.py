"""Language handlers: pure descriptions of how to compile, run and install for a language.

The handler classes of the built-in languages are importable from here as in 0.3.x
(`from llm_sandbox.language_handlers import PythonHandler`); they load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from llm_sandbox.language_handlers.base import (
    AbstractLanguageHandler,
    CommandPlan,
    LanguageConfig,
    PlotDetectionConfig,
    PlotLibrary,
)
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory

if TYPE_CHECKING:
    from llm_sandbox.language_handlers.cpp import CppHandler
    from llm_sandbox.language_handlers.go import GoHandler
    from llm_sandbox.language_handlers.java import JavaHandler
    from llm_sandbox.language_handlers.javascript import JavaScriptHandler
    from llm_sandbox.language_handlers.python import PythonHandler
    from llm_sandbox.language_handlers.r import RHandler
    from llm_sandbox.language_handlers.ruby import RubyHandler

_HANDLER_MODULES = {
    "CppHandler": "cpp",
    "GoHandler": "go",
    "JavaHandler": "java",
    "JavaScriptHandler": "javascript",
    "PythonHandler": "python",
    "RHandler": "r",
    "RubyHandler": "ruby",
}

__all__ = [
    "AbstractLanguageHandler",
    "CommandPlan",
    "CppHandler",
    "GoHandler",
    "JavaHandler",
    "JavaScriptHandler",
    "LanguageConfig",
    "LanguageHandlerFactory",
    "PlotDetectionConfig",
    "PlotLibrary",
    "PythonHandler",
    "RHandler",
    "RubyHandler",
]


def __getattr__(name: str) -> object:
    module = _HANDLER_MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    handler: object = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = handler
    return handler
