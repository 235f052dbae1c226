"""Library names checked before anything runs (the previous generation's module).

`validate_package_name(library, language)` returns the name stripped of surrounding blanks or
raises `ValidationError` (our `InvalidPackageError`) naming the problem. Each language's rule is
its handler's: one place decides what an installable name looks like.
"""

from __future__ import annotations

from llm_sandbox.exceptions import InvalidPackageError
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory

_LANGUAGES = ("python", "javascript", "node", "go", "ruby", "r", "cpp", "c", "java")
_OTHER = "c"  # 0.3.x had a key for C; it shares C++'s rule here


def _pattern(language: str) -> str:
    name = "cpp" if language == _OTHER else LanguageHandlerFactory.canonical_name(language)
    return LanguageHandlerFactory.create_handler(name).package_pattern.pattern


PACKAGE_NAME_PATTERNS: dict[str, str] = {language: _pattern(language) for language in _LANGUAGES}
"""Each language's rule for a library name, as a regular expression."""


def validate_package_name(library: object, language: str) -> str:
    """`library` without surrounding blanks, if it is a valid library name for `language`."""
    if not isinstance(library, str) or not library.strip():
        got = "" if isinstance(library, str) else f", got {type(library).__name__}"
        raise InvalidPackageError(f"Library identifier must be a non-empty string{got}")
    name = library.strip()
    canonical = "cpp" if language == _OTHER else LanguageHandlerFactory.canonical_name(language)
    LanguageHandlerFactory.create_handler(canonical).validate_library(name)
    return name
