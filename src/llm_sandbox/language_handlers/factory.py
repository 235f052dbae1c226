"""The registry of language handlers: built-in languages plus any the user registers.

A built-in language is found, not listed: it is a module of this package whose `HANDLER` is its
handler class, and the module's name is the language's name. Adding one is adding that module.
Users add languages at run time with `register_handler`; a registered name shadows a built-in.

Language names are case-insensitive and may be any `str`, including a str enum member such as
`SupportedLanguage.PYTHON`. The methods keep 0.3.x's names and parameter names
(`create_handler(language, logger)`, `register_handler(language, handler_class)`).
"""

from __future__ import annotations

import functools
import importlib
import logging
import pkgutil
from enum import Enum
from typing import ClassVar

from llm_sandbox.exceptions import LanguageNotSupportedError
from llm_sandbox.language_handlers.base import AbstractLanguageHandler

_PACKAGE = __name__.rpartition(".")[0]


@functools.cache
def _builtin_handlers() -> dict[str, type[AbstractLanguageHandler]]:
    """The `HANDLER` of every module of this package that has one, by module name."""
    package = importlib.import_module(_PACKAGE)
    found = {}
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if module.ispkg or module.name.startswith("_"):
            continue
        handler = getattr(importlib.import_module(f"{_PACKAGE}.{module.name}"), "HANDLER", None)
        if handler is not None:
            found[module.name] = _checked(handler)
    return found


def _key(language: object) -> str:
    """The registry's key for a language name: its value lower-cased (a str enum member counts
    by its value)."""
    if isinstance(language, Enum):
        language = language.value
    if not isinstance(language, str):
        raise TypeError(f"a language name must be a string, not {type(language).__name__}")
    return language.lower()


def _checked(handler: object) -> type[AbstractLanguageHandler]:
    if not (isinstance(handler, type) and issubclass(handler, AbstractLanguageHandler)):
        raise TypeError("handler must be a subclass of AbstractLanguageHandler")
    return handler


class LanguageHandlerFactory:
    """Maps a language name to its handler class."""

    _handlers: ClassVar[dict[str, type[AbstractLanguageHandler]]] = {}
    """Languages registered at run time (they shadow built-ins of the same name)."""

    @classmethod
    def register_handler(cls, language: str, handler_class: type[AbstractLanguageHandler]) -> None:
        """Make `language` (any case) name `handler_class`; replaces an earlier registration."""
        cls._handlers[_key(language)] = _checked(handler_class)

    @classmethod
    def unregister_handler(cls, language: str) -> None:
        """Forget a registered language (a built-in it shadowed comes back); no-op if absent."""
        cls._handlers.pop(_key(language), None)

    @classmethod
    def builtin_languages(cls) -> tuple[str, ...]:
        """The languages this package ships, sorted."""
        return tuple(_builtin_handlers())

    @classmethod
    def get_supported_languages(cls) -> list[str]:
        """Every language name, built-in and registered, sorted."""
        return sorted({*_builtin_handlers(), *cls._handlers})

    @classmethod
    def lookup(cls, name: str) -> type[AbstractLanguageHandler] | None:
        """The handler class of language `name` (not an alias), or None."""
        key = _key(name)
        return cls._handlers.get(key) or _builtin_handlers().get(key)

    @classmethod
    def canonical_name(cls, name: str) -> str:
        """The language `name` or its alias stands for (e.g. "py" → "python"); unknown names are
        returned trimmed and lower-cased."""
        key = _key(name).strip()
        if cls.lookup(key) is not None:
            return key
        aliases = {
            alias.lower(): language
            for language, handler in (*_builtin_handlers().items(), *cls._handlers.items())
            for alias in handler.aliases
        }
        return aliases.get(key, key)

    @classmethod
    def create_handler(
        cls, language: str, logger: logging.Logger | None = None
    ) -> AbstractLanguageHandler:
        """A new handler for `language` (any case), logging to `logger`."""
        handler = cls.lookup(language)
        if handler is None:
            raise LanguageNotSupportedError(
                str(language),
                f"language {_key(language)!r} is not supported; registered languages: "
                + ", ".join(cls.get_supported_languages())
                + ". Register your own with LanguageHandlerFactory.register_handler().",
            )
        return handler(logger)
