"""The registry of language handlers: built-in languages plus any the user registers."""

from __future__ import annotations

import importlib
import logging
from typing import ClassVar

from llm_sandbox.exceptions import LanguageNotSupportedError
from llm_sandbox.language_handlers.base import AbstractLanguageHandler

_BUILTIN = {
    "python": "llm_sandbox.language_handlers.python:PythonHandler",
    "javascript": "llm_sandbox.language_handlers.javascript:JavaScriptHandler",
    "java": "llm_sandbox.language_handlers.java:JavaHandler",
    "cpp": "llm_sandbox.language_handlers.cpp:CppHandler",
    "go": "llm_sandbox.language_handlers.go:GoHandler",
    "ruby": "llm_sandbox.language_handlers.ruby:RubyHandler",
    "r": "llm_sandbox.language_handlers.r:RHandler",
}


class LanguageHandlerFactory:
    """Maps a language name to its handler class."""

    _handlers: ClassVar[dict[str, type[AbstractLanguageHandler]]] = {}

    @classmethod
    def register_handler(cls, name: str, handler: type[AbstractLanguageHandler]) -> None:
        if not (isinstance(handler, type) and issubclass(handler, AbstractLanguageHandler)):
            raise TypeError("handler must be a subclass of AbstractLanguageHandler")
        cls._handlers[name.lower()] = handler

    @classmethod
    def get_supported_languages(cls) -> list[str]:
        return sorted({*_BUILTIN, *cls._handlers})

    @classmethod
    def create_handler(
        cls, name: str, logger: logging.Logger | None = None
    ) -> AbstractLanguageHandler:
        key = name.lower()
        handler = cls._handlers.get(key)
        if handler is None and key in _BUILTIN:
            module, _, attr = _BUILTIN[key].partition(":")
            handler = getattr(importlib.import_module(module), attr)
            cls._handlers[key] = handler
        if handler is None:
            raise LanguageNotSupportedError(
                f"language {name!r} is not supported; registered languages: "
                + ", ".join(cls.get_supported_languages())
                + ". Register your own with LanguageHandlerFactory.register_handler()."
            )
        return handler(logger)
