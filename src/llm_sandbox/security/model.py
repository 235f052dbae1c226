"""The policy model: severities, patterns, restricted modules, violations and the policy itself.

A policy is a value. Checking code reads it and never changes it; `add_pattern` and
`add_restricted_module` are the only mutators, and presets hand out fresh copies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

from llm_sandbox.exceptions import ConfigurationError
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


def _languages(languages: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if languages is None:
        return None
    return tuple(canonical_language(lang) for lang in languages)


@dataclass(frozen=True, init=False)
class SecurityPattern:
    """A regex that must not match the program's code (strings and comments excluded).

    `languages` limits the pattern to some languages; `None` applies it to every language.
    """

    pattern: str
    description: str
    severity: SecurityIssueSeverity
    languages: tuple[str, ...] | None
    regex: re.Pattern[str] = field(compare=False, repr=False)

    def __init__(
        self,
        pattern: str,
        description: str,
        severity: SecurityIssueSeverity = SecurityIssueSeverity.MEDIUM,
        languages: tuple[str, ...] | None = None,
    ) -> None:
        try:
            regex = re.compile(pattern, re.MULTILINE)
        except (re.error, TypeError) as exc:
            raise ConfigurationError(
                f"security pattern {pattern!r} is not a valid regular expression: {exc}"
            ) from exc
        object.__setattr__(self, "pattern", pattern)
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "severity", SecurityIssueSeverity(severity))
        object.__setattr__(self, "languages", _languages(languages))
        object.__setattr__(self, "regex", regex)

    def applies_to(self, lang: str) -> bool:
        return self.languages is None or lang in self.languages


@dataclass(frozen=True)
class RestrictedModule:
    """A module (package, header, library) the program must not import.

    A name also covers its submodules: `os` matches `os.path`, `child_process` matches
    `node:child_process`. `languages` limits it to some languages; `None` means all.
    """

    name: str
    description: str
    severity: SecurityIssueSeverity = SecurityIssueSeverity.MEDIUM
    languages: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigurationError(f"restricted module name {self.name!r} must be non-empty")
        object.__setattr__(self, "severity", SecurityIssueSeverity(self.severity))
        object.__setattr__(self, "languages", _languages(self.languages))

    def applies_to(self, lang: str) -> bool:
        return self.languages is None or lang in self.languages


@dataclass(frozen=True)
class Violation:
    """One finding: `kind` is "pattern" or "module"; `matched` is what was found in the code."""

    kind: Literal["pattern", "module"]
    matched: str
    description: str
    severity: SecurityIssueSeverity
    line: int
    rule: str = ""
    """The pattern source or the restricted module's name that produced the finding."""

    def __str__(self) -> str:
        return (
            f"line {self.line}: {self.severity.name} {self.kind} {self.matched!r}"
            f" ({self.description})"
        )


@dataclass
class SecurityPolicy:
    """Which findings exist (patterns, restricted modules) and which ones block (the threshold)."""

    severity_threshold: SecurityIssueSeverity = SecurityIssueSeverity.MEDIUM
    patterns: list[SecurityPattern] = field(default_factory=list)
    restricted_modules: list[RestrictedModule] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.severity_threshold = SecurityIssueSeverity(self.severity_threshold)
        self.patterns = list(self.patterns)
        self.restricted_modules = list(self.restricted_modules)
        for pattern in self.patterns:
            _require(pattern, SecurityPattern, "patterns")
        for module in self.restricted_modules:
            _require(module, RestrictedModule, "restricted_modules")

    def add_pattern(self, pattern: SecurityPattern) -> None:
        _require(pattern, SecurityPattern, "add_pattern")
        self.patterns.append(pattern)

    def add_restricted_module(self, module: RestrictedModule) -> None:
        _require(module, RestrictedModule, "add_restricted_module")
        self.restricted_modules.append(module)

    def copy(self) -> SecurityPolicy:
        return SecurityPolicy(self.severity_threshold, self.patterns, self.restricted_modules)

    def check(self, code: str, lang: str) -> list[Violation]:
        """Every finding in `code`, whatever its severity, ordered by line."""
        language = canonical_language(lang)
        found = analyse(code, language)
        violations = self._module_violations(found, language) + self._pattern_violations(
            found, language
        )
        return _dedupe(violations)

    def is_safe(self, code: str, lang: str) -> tuple[bool, list[Violation]]:
        """(no finding at or above the threshold, all findings)."""
        violations = self.check(code, lang)
        return not self.blocking(violations), violations

    def blocking(self, violations: list[Violation]) -> list[Violation]:
        """The findings at or above this policy's threshold."""
        return [v for v in violations if v.severity >= self.severity_threshold]

    def _module_violations(self, found: Analysis, lang: str) -> list[Violation]:
        rules = source_rules(lang)
        if rules is None:
            return []  # a language without source rules has no imports to find
        out = []
        for module in self.restricted_modules:
            if not module.applies_to(lang):
                continue
            for imported in found.imports:
                if module_matches(imported.text, module.name, rules):
                    out.append(_violation("module", imported.text, module, imported.line))
        return out

    def _pattern_violations(self, found: Analysis, lang: str) -> list[Violation]:
        out = []
        for pattern in self.patterns:
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


def _require(item: object, kind: type, where: str) -> None:
    if not isinstance(item, kind):
        raise ConfigurationError(f"{where} expects {kind.__name__} objects, got {item!r}")
