"""The policy model: severities, patterns, restricted modules, violations and the policy itself.

The classes are plain Python (no pydantic) but read like the 0.3 generation's pydantic models:
keyword construction with the same field names and defaults, nested dicts accepted for nested
models, values validated on construction *and* on assignment, and `model_dump`,
`model_dump_json`, `model_validate`, `model_validate_json` and `model_copy` with the same shapes.
Our additions (positional construction, `languages`, `Violation`) stay out of the way: a
`languages` left at None is not dumped, so a policy 0.3 could build dumps exactly as 0.3 did.

A policy is a value. Checking code reads it and never changes it; presets hand out fresh copies.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, Literal, Self

from llm_sandbox.exceptions import ConfigurationError, InvalidRegexPatternError
from llm_sandbox.security.analysis import (
    analyse,
    canonical_language,
    module_matches,
    source_rules,
)
from llm_sandbox.security.scanning import Analysis


class SecurityIssueSeverity(IntEnum):
    """How bad a finding is; ordered SAFE < LOW < MEDIUM < HIGH."""

    SAFE = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3


SeverityLike = SecurityIssueSeverity | int | str
"""A severity, its number (0-3, also as a string such as "3") or its name ("high")."""

DumpMode = Literal["python", "json"]


def severity(value: object, what: str = "severity") -> SecurityIssueSeverity:
    """`value` as a severity: a member, its number (int, integral float or digit string) or name."""
    if isinstance(value, SecurityIssueSeverity):
        return value
    number: object = value
    if isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.upper() in SecurityIssueSeverity.__members__:
            return SecurityIssueSeverity[text.upper()]
        number = int(text) if text.isdigit() else value
    if isinstance(number, int):
        try:
            return SecurityIssueSeverity(number)
        except ValueError:
            pass
    raise ConfigurationError(
        f"{what} must be a SecurityIssueSeverity (SAFE=0, LOW=1, MEDIUM=2, HIGH=3), got {value!r}"
    )


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"{what} must be a string, got {value!r}")
    return value


def _languages(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, Iterable):
        raise ConfigurationError(f"languages must be a list of language names, got {value!r}")
    return tuple(canonical_language(_text(lang, "a language")) for lang in value)


class _Model:
    """pydantic-style access for the plain classes below.

    `_fields` are what `model_dump` shows, in order; `_optional` fields (our additions) are
    dumped only when set; `_defaults` are the 0.3 defaults `exclude_defaults` leaves out.
    Assignment runs the field's validator, as construction does; other attributes are refused.
    """

    _fields: ClassVar[tuple[str, ...]] = ()
    _optional: ClassVar[frozenset[str]] = frozenset()
    _defaults: ClassVar[Mapping[str, object]] = {}
    _validators: ClassVar[Mapping[str, Callable[[Any], object]]] = {}
    __hash__ = None  # type: ignore[assignment]  # mutable, as 0.3's models were

    def __setattr__(self, name: str, value: object) -> None:
        validator = self._validators.get(name)
        if validator is None:
            fields = ", ".join(self._fields)
            raise AttributeError(f"{type(self).__name__} has no field {name!r} (fields: {fields})")
        object.__setattr__(self, name, validator(value))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._fields)

    def __repr__(self) -> str:
        shown = (
            f"{name}={getattr(self, name)!r}"
            for name in self._fields
            if not (name in self._optional and getattr(self, name) is None)
        )
        return f"{type(self).__name__}({', '.join(shown)})"

    def model_dump(
        self,
        *,
        mode: DumpMode = "python",
        include: Collection[str] | None = None,
        exclude: Collection[str] | None = None,
        exclude_none: bool = False,
        exclude_defaults: bool = False,
    ) -> dict[str, Any]:
        """The fields as a dict; `mode="json"` gives severities as ints (like pydantic's)."""
        if mode not in ("python", "json"):
            raise ValueError(f"mode must be 'python' or 'json', got {mode!r}")
        out: dict[str, Any] = {}
        for name in self._fields:
            value = getattr(self, name)
            if include is not None and name not in include:
                continue
            if exclude is not None and name in exclude:
                continue
            if value is None and (exclude_none or name in self._optional):
                continue
            if exclude_defaults and name in self._defaults and value == self._defaults[name]:
                continue
            out[name] = _dump(value, mode, exclude_none, exclude_defaults)
        return out

    def model_dump_json(
        self,
        *,
        indent: int | None = None,
        include: Collection[str] | None = None,
        exclude: Collection[str] | None = None,
        exclude_none: bool = False,
        exclude_defaults: bool = False,
    ) -> str:
        """`model_dump(mode="json")` as JSON text, compact unless `indent` is given."""
        data = self.model_dump(
            mode="json",
            include=include,
            exclude=exclude,
            exclude_none=exclude_none,
            exclude_defaults=exclude_defaults,
        )
        separators = (",", ":") if indent is None else None
        return json.dumps(data, indent=indent, separators=separators, ensure_ascii=False)

    @classmethod
    def model_validate(cls, obj: object) -> Self:
        """An instance from a dict of its fields (or `obj` itself if it already is one).

        Unknown keys are refused (0.3 ignored them): a misspelt field of a security policy
        should not silently fall back to its default.
        """
        if isinstance(obj, cls):
            return obj
        if not isinstance(obj, Mapping):
            raise ConfigurationError(f"{cls.__name__} expects a dict of its fields, got {obj!r}")
        unknown = [str(key) for key in obj if key not in cls._fields]
        if unknown:
            raise ConfigurationError(
                f"{cls.__name__} has no field {', '.join(map(repr, unknown))}"
                f" (fields: {', '.join(cls._fields)})"
            )
        return cls._from_fields(dict(obj))

    @classmethod
    def model_validate_json(cls, data: str | bytes | bytearray) -> Self:
        try:
            obj = json.loads(data)
        except ValueError as exc:
            raise ConfigurationError(f"{cls.__name__}: invalid JSON: {exc}") from exc
        return cls.model_validate(obj)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy, with `update`'s fields replaced (validated); `deep` copies nested values too."""
        values = {name: getattr(self, name) for name in self._fields}
        if deep:
            values = copy.deepcopy(values)
        unknown = [str(key) for key in update or {} if key not in self._fields]
        if unknown:
            raise ConfigurationError(
                f"{type(self).__name__} has no field {', '.join(map(repr, unknown))}"
            )
        values.update(update or {})
        return self._from_fields(values)

    @classmethod
    def _from_fields(cls, values: dict[str, Any]) -> Self:
        return cls(**values)


def _dump(value: object, mode: DumpMode, exclude_none: bool, exclude_defaults: bool) -> object:
    if isinstance(value, _Model):
        return value.model_dump(
            mode=mode, exclude_none=exclude_none, exclude_defaults=exclude_defaults
        )
    if isinstance(value, list | tuple):
        items = [_dump(item, mode, exclude_none, exclude_defaults) for item in value]
        return items if mode == "json" or isinstance(value, list) else tuple(items)
    if mode == "json" and isinstance(value, IntEnum):
        return int(value)
    return value


def _compile(pattern: object) -> re.Pattern[str]:
    text = _text(pattern, "a security pattern")
    try:
        return re.compile(text, re.MULTILINE)
    except re.error as exc:
        raise InvalidRegexPatternError(text, str(exc)) from exc


class SecurityPattern(_Model):
    """A regex that must not match the program's code (strings and comments excluded).

    `SecurityPattern(pattern=..., description=..., severity=...)` as in 0.3, or positionally.
    `languages` (ours) limits the pattern to some languages; None applies it to every language.
    An invalid regex raises `InvalidRegexPatternError`.
    """

    _fields = ("pattern", "description", "severity", "languages")
    _optional = frozenset({"languages"})
    _validators: ClassVar[Mapping[str, Callable[[Any], object]]] = {
        "pattern": lambda value: _text(value, "a security pattern"),
        "description": lambda value: _text(value, "description"),
        "severity": severity,
        "languages": _languages,
    }

    pattern: str
    description: str
    severity: SecurityIssueSeverity
    languages: tuple[str, ...] | None

    def __init__(
        self,
        pattern: str,
        description: str,
        severity: SeverityLike = SecurityIssueSeverity.MEDIUM,
        languages: Iterable[str] | None = None,
    ) -> None:
        self.pattern = pattern
        self.description = description
        self.severity = severity  # type: ignore[assignment]  # validated to a member
        self.languages = languages  # type: ignore[assignment]  # validated to a tuple

    def __setattr__(self, name: str, value: object) -> None:
        if name == "pattern":
            object.__setattr__(self, "_regex", _compile(value))
        super().__setattr__(name, value)

    @property
    def regex(self) -> re.Pattern[str]:
        """The compiled pattern (multi-line: `^` and `$` match at every line)."""
        compiled: re.Pattern[str] = self.__dict__["_regex"]
        return compiled

    def applies_to(self, lang: str) -> bool:
        return self.languages is None or lang in self.languages


def _module_name(value: object) -> str:
    name = _text(value, "restricted module name")
    if not name.strip():
        raise ConfigurationError(f"restricted module name {name!r} must be non-empty")
    return name


class RestrictedModule(_Model):
    """A module (package, header, library) the program must not import.

    A name also covers its submodules: `os` matches `os.path`, `child_process` matches
    `node:child_process`. `languages` (ours) limits it to some languages; None means all.
    """

    _fields = ("name", "description", "severity", "languages")
    _optional = frozenset({"languages"})
    _validators: ClassVar[Mapping[str, Callable[[Any], object]]] = {
        "name": _module_name,
        "description": lambda value: _text(value, "description"),
        "severity": severity,
        "languages": _languages,
    }

    name: str
    description: str
    severity: SecurityIssueSeverity
    languages: tuple[str, ...] | None

    def __init__(
        self,
        name: str,
        description: str,
        severity: SeverityLike = SecurityIssueSeverity.MEDIUM,
        languages: Iterable[str] | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self.severity = severity  # type: ignore[assignment]  # validated to a member
        self.languages = languages  # type: ignore[assignment]  # validated to a tuple

    def applies_to(self, lang: str) -> bool:
        return self.languages is None or lang in self.languages


@dataclass(frozen=True)
class Violation(_Model):
    """One finding: `kind` is "pattern" or "module"; `matched` is what was found in the code.

    0.3's `is_safe` returned the matching `SecurityPattern`s themselves; a `Violation` reads
    like one: `pattern` (the regex, or the restricted module's name), `description` and
    `severity`, and dumps those keys first.
    """

    kind: Literal["pattern", "module"]
    matched: str
    description: str
    severity: SecurityIssueSeverity
    line: int
    rule: str = ""
    """The pattern source or the restricted module's name that produced the finding."""

    _fields = ("pattern", "description", "severity", "kind", "matched", "line")

    @property
    def pattern(self) -> str:
        """The rule that matched: a pattern's regex, or a restricted module's name."""
        return self.rule

    @classmethod
    def _from_fields(cls, values: dict[str, Any]) -> Self:
        values = dict(values)
        rule = values.pop("pattern", "")
        return cls(rule=rule, **values)

    def __str__(self) -> str:
        return (
            f"line {self.line}: {self.severity.name} {self.kind} {self.matched!r}"
            f" ({self.description})"
        )


def _items(kind: type[_Model], what: str) -> Callable[[object], list[Any] | None]:
    def validate(value: object) -> list[Any] | None:
        if value is None:
            return None
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
            raise ConfigurationError(f"{what} must be a list of {kind.__name__}, got {value!r}")
        return [_item(item, kind, what) for item in value]

    return validate


def _item(item: object, kind: type[_Model], where: str) -> Any:
    if isinstance(item, kind):
        return item
    if isinstance(item, Mapping):
        return kind.model_validate(item)
    raise ConfigurationError(f"{where} expects {kind.__name__} objects, got {item!r}")


class SecurityPolicy(_Model):
    """Which findings exist (patterns, restricted modules) and which ones block (the threshold).

    As in 0.3: `SecurityPolicy()` has threshold SAFE and no patterns or modules (None); a
    finding blocks when the threshold is above SAFE and the finding's severity reaches it, so
    a SAFE threshold reports findings but blocks none.
    """

    _fields = ("severity_threshold", "patterns", "restricted_modules")
    _defaults: ClassVar[Mapping[str, object]] = {
        "severity_threshold": SecurityIssueSeverity.SAFE,
        "patterns": None,
        "restricted_modules": None,
    }
    _validators: ClassVar[Mapping[str, Callable[[Any], object]]] = {
        "severity_threshold": lambda value: severity(value, "severity_threshold"),
        "patterns": _items(SecurityPattern, "patterns"),
        "restricted_modules": _items(RestrictedModule, "restricted_modules"),
    }

    severity_threshold: SecurityIssueSeverity
    patterns: list[SecurityPattern] | None
    restricted_modules: list[RestrictedModule] | None

    def __init__(
        self,
        severity_threshold: SeverityLike = SecurityIssueSeverity.SAFE,
        patterns: Iterable[SecurityPattern | Mapping[str, Any]] | None = None,
        restricted_modules: Iterable[RestrictedModule | Mapping[str, Any]] | None = None,
    ) -> None:
        self.severity_threshold = severity_threshold  # type: ignore[assignment]
        self.patterns = patterns  # type: ignore[assignment]  # validated to a list
        self.restricted_modules = restricted_modules  # type: ignore[assignment]

    def add_pattern(self, pattern: SecurityPattern) -> None:
        _item(pattern, SecurityPattern, "add_pattern")
        if self.patterns is None:
            self.patterns = []
        self.patterns.append(pattern)

    def add_restricted_module(self, module: RestrictedModule) -> None:
        _item(module, RestrictedModule, "add_restricted_module")
        if self.restricted_modules is None:
            self.restricted_modules = []
        self.restricted_modules.append(module)

    def copy(self) -> SecurityPolicy:
        return self.model_copy()

    def check(self, code: str, lang: str) -> list[Violation]:
        """Every finding in `code`, whatever its severity, ordered by line."""
        language = canonical_language(lang)
        patterns = [_item(p, SecurityPattern, "patterns") for p in self.patterns or ()]
        modules = [
            _item(m, RestrictedModule, "restricted_modules") for m in self.restricted_modules or ()
        ]
        if not patterns and not modules:
            return []
        found = analyse(code, language)
        violations = _module_violations(modules, found, language) + _pattern_violations(
            patterns, found, language
        )
        return _dedupe(violations)

    def is_safe(self, code: str, lang: str) -> tuple[bool, list[Violation]]:
        """(no finding blocks, all findings)."""
        violations = self.check(code, lang)
        return not self.blocking(violations), violations

    def blocks(self, level: SeverityLike) -> bool:
        """Whether a finding of severity `level` blocks under this policy."""
        threshold = self.severity_threshold
        return threshold > SecurityIssueSeverity.SAFE and severity(level) >= threshold

    def blocking(self, violations: list[Violation]) -> list[Violation]:
        """The findings that block under this policy's threshold."""
        return [v for v in violations if self.blocks(v.severity)]


def _module_violations(
    modules: list[RestrictedModule], found: Analysis, lang: str
) -> list[Violation]:
    rules = source_rules(lang)
    if rules is None:
        return _legacy_module_violations(modules, found, lang)
    out = []
    for module in modules:
        if not module.applies_to(lang):
            continue
        for imported in found.imports:
            if module_matches(imported.text, module.name, rules):
                out.append(_violation("module", imported.text, module, imported.line))
    return out


def _legacy_module_violations(
    modules: list[RestrictedModule], found: Analysis, lang: str
) -> list[Violation]:
    """A language without source rules: a 0.3.x-style handler's own `get_import_patterns`
    regex per restricted module, over the code without its comments (as 0.3.x did)."""
    from llm_sandbox.language_handlers.factory import LanguageHandlerFactory

    handler_class = LanguageHandlerFactory.lookup(lang)
    if handler_class is None:
        return []
    handler = handler_class()
    code = handler.filter_comments(found.masked.text)
    out = []
    for module in modules:
        if not module.applies_to(lang):
            continue
        try:
            regex = re.compile(handler.get_import_patterns(module.name), re.MULTILINE)
        except (re.error, TypeError):
            continue  # a handler whose pattern does not compile finds nothing, as in 0.3.x
        for match in regex.finditer(code):
            line = code.count("\n", 0, match.start()) + 1
            out.append(_violation("module", match.group(0), module, line))
    return out


def _pattern_violations(
    patterns: list[SecurityPattern], found: Analysis, lang: str
) -> list[Violation]:
    out = []
    for pattern in patterns:
        if not pattern.applies_to(lang):
            continue
        for match in pattern.regex.finditer(found.masked.text):
            if found.masked.in_code(match.start()):
                line = found.masked.line_of(match.start())
                out.append(_violation("pattern", match.group(0), pattern, line))
        for derived in found.derived:
            if pattern.regex.search(derived.text):
                out.append(_violation("pattern", derived.text, pattern, derived.line))
    return out


def _violation(
    kind: Literal["pattern", "module"],
    matched: str,
    rule: SecurityPattern | RestrictedModule,
    line: int,
) -> Violation:
    source = rule.pattern if isinstance(rule, SecurityPattern) else rule.name
    return Violation(kind, matched, rule.description, rule.severity, line, source)


def _dedupe(violations: list[Violation]) -> list[Violation]:
    seen: set[tuple[str, str, int]] = set()
    out = []
    for violation in sorted(violations, key=lambda v: (v.line, -v.severity)):
        key = (violation.kind, violation.rule, violation.line)
        if key not in seen:
            seen.add(key)
            out.append(violation)
    return out
