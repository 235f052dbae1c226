"""What a program imports and which code it really contains, for any language.

`analyse(code, lang)` returns the masked source (for user patterns), the imported module names
with their lines, and *derived* code: canonical spellings of indirect calls that the Python
analyser resolved (`getattr(__builtins__, "ev"+"al")(...)` is derived as `eval(`), which user
patterns are matched against as well.

Nothing here is specific to a language: each language's handler declares its aliases and its
`SourceRules` (syntax, import forms, how module names compare), found through the handler
registry. Python additionally gets the syntax-tree analyser of `python_code`.
"""

from __future__ import annotations

from llm_sandbox.language_handlers.factory import LanguageHandlerFactory
from llm_sandbox.language_handlers.syntax import SourceRules
from llm_sandbox.security.scanning import Analysis, Masked, scan


def canonical_language(lang: str) -> str:
    """The language `lang` names, aliases resolved ("js" → "javascript")."""
    return LanguageHandlerFactory.canonical_name(lang)


def source_rules(lang: str) -> SourceRules | None:
    """The source rules the handler of (canonical) language `lang` declares, if any."""
    handler = LanguageHandlerFactory.lookup(lang)
    return handler.source_rules if handler is not None else None


def analyse(code: str, lang: str) -> Analysis:
    """Analyse `code` written in (canonical) language `lang`."""
    rules = source_rules(lang)
    if rules is None:
        return Analysis(Masked(code))  # a language without rules: patterns see the raw text
    if lang == "python":
        from llm_sandbox.security.python_code import analyse_python

        return analyse_python(code, rules)
    return scan(code, rules)


def module_matches(imported: str, restricted: str, rules: SourceRules) -> bool:
    """Whether importing `imported` imports `restricted` or one of its submodules."""
    got, banned = _module_name(imported, rules), _module_name(restricted, rules)

    def under(name: str, parent: str) -> bool:
        return name.startswith(tuple(parent + separator for separator in rules.separators))

    if rules.wildcard and got.endswith(rules.wildcard):
        package = got[: -len(rules.wildcard)]
        return banned == package or under(banned, package) or under(package, banned)
    return got == banned or under(got, banned)


def _module_name(name: str, rules: SourceRules) -> str:
    name = name.strip()
    return rules.spelling.sub("", name) if rules.spelling else name
