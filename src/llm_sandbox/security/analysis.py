"""What a program imports and which code it really contains, per language.

`analyse(code, lang)` returns the masked source (for user patterns), the imported module names
with their lines, and *derived* code: canonical spellings of indirect calls that the Python
analyser resolved (`getattr(__builtins__, "ev"+"al")(...)` is derived as `eval(`), which user
patterns are matched against as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from llm_sandbox.security import scanning
from llm_sandbox.security.scanning import Masked

_ALIASES = {
    "py": "python",
    "python3": "python",
    "js": "javascript",
    "node": "javascript",
    "nodejs": "javascript",
    "c++": "cpp",
    "cxx": "cpp",
    "golang": "go",
    "rb": "ruby",
}

SYNTAX = {
    "python": scanning.PYTHON,
    "javascript": scanning.JAVASCRIPT,
    "java": scanning.JAVA,
    "cpp": scanning.C_LIKE,
    "go": scanning.GO,
    "ruby": scanning.RUBY,
    "r": scanning.R,
}


def canonical_language(lang: str) -> str:
    key = lang.strip().lower()
    return _ALIASES.get(key, key)


@dataclass(frozen=True)
class Found:
    """A piece of text found in the program (a module name or derived code) and its line."""

    text: str
    line: int


@dataclass
class Analysis:
    masked: Masked
    imports: list[Found] = field(default_factory=list)
    derived: list[Found] = field(default_factory=list)


def analyse(code: str, lang: str) -> Analysis:
    """Analyse `code` written in (canonical) language `lang`."""
    if lang == "python":
        from llm_sandbox.security.python_code import analyse_python

        return analyse_python(code)
    syntax = SYNTAX.get(lang)
    if syntax is None:
        return Analysis(Masked(code))  # unknown language: patterns see the raw text
    masked = scanning.mask(code, syntax)
    return Analysis(masked, find_imports(masked, code, lang))


_NAME = r"(['\"`])\s*([^'\"`\s]+?)\s*\1"
_IMPORT_FORMS: dict[str, list[tuple[re.Pattern[str], int]]] = {
    "javascript": [
        (re.compile(r"\brequire\s*\(\s*" + _NAME), 2),
        (re.compile(r"\bimport\s*\(\s*" + _NAME), 2),
        (re.compile(r"\b(?:import|export)\s+(?:[\w*${}\s,]+?\s+from\s+)?" + _NAME), 2),
    ],
    "java": [(re.compile(r"\bimport\s+(?:static\s+)?([\w$.\s]+?(?:\.\s*\*)?)\s*;"), 1)],
    "cpp": [(re.compile(r"#\s*include\s*[<\"]([^>\"\n]+)[>\"]"), 1)],
    "go": [(re.compile(r"\bimport\s+(?:[\w.]+\s+)?" + _NAME), 2)],
    "ruby": [(re.compile(r"\b(?:require|require_relative|load)\b\s*\(?\s*" + _NAME), 2)],
    "r": [
        (
            re.compile(
                r"\b(?:library|require|requireNamespace|loadNamespace|attachNamespace)"
                r"\s*\(\s*(?:package\s*=\s*)?(['\"`]?)([A-Za-z][\w.]*)\1"
            ),
            2,
        ),
        (re.compile(r"(?<![\w.])([A-Za-z][\w.]*):::?"), 1),
    ],
}
_GO_BLOCK = re.compile(r"\bimport\s*\(([^)]*)\)")
_GO_ENTRY = re.compile(r"(?:[\w.]+\s+)?" + _NAME)


def find_imports(masked: Masked, code: str, lang: str) -> list[Found]:
    """Module names imported by `code`; only forms that start in real code count.

    Module names are string literals in most languages, so the name is read from the original
    text while the form's position is checked against the masked one.
    """
    found = []
    for regex, group in _IMPORT_FORMS.get(lang, []):
        for match in regex.finditer(masked.text):
            if masked.in_code(match.start()):
                name = re.sub(r"\s+", "", code[match.start(group) : match.end(group)])
                found.append(Found(name, masked.line_of(match.start())))
    if lang == "go":
        found.extend(_go_blocks(masked, code))
    return found


def _go_blocks(masked: Masked, code: str) -> list[Found]:
    found = []
    for block in _GO_BLOCK.finditer(masked.text):
        if not masked.in_code(block.start()):
            continue
        for entry in _GO_ENTRY.finditer(masked.text, block.start(1), block.end(1)):
            name = code[entry.start(2) : entry.end(2)]
            found.append(Found(name, masked.line_of(entry.start(2))))
    return found


def _normalise(name: str, lang: str) -> str:
    name = name.strip()
    if lang == "javascript":
        name = name.removeprefix("node:")
    elif lang == "cpp":
        name = re.sub(r"\.(?:h|hh|hpp|hxx)$", "", name)
    elif lang == "ruby":
        name = name.removesuffix(".rb")
    return name


def module_matches(imported: str, restricted: str, lang: str) -> bool:
    """Whether importing `imported` imports `restricted` or one of its submodules."""
    got, banned = _normalise(imported, lang), _normalise(restricted, lang)
    if lang == "java" and got.endswith(".*"):
        package = got[:-2]
        return banned == package or _under(banned, package) or _under(package, banned)
    return got == banned or _under(got, banned)


def _under(name: str, parent: str) -> bool:
    return name.startswith((parent + ".", parent + "/"))
