"""The policy model reads like 0.3.46's pydantic models: fields, defaults, dumps, threshold.

The expected values below were produced by llm-sandbox 0.3.46 (pydantic 2.14) for the same
input; where we deliberately differ the test says so.
"""

from __future__ import annotations

import copy
import json

import pytest

from llm_sandbox.exceptions import ConfigurationError, InvalidRegexPatternError
from llm_sandbox.security import (
    RestrictedModule,
    SecurityIssueSeverity,
    SecurityPattern,
    SecurityPolicy,
    Violation,
)

SAFE, LOW, MEDIUM, HIGH = (
    SecurityIssueSeverity.SAFE,
    SecurityIssueSeverity.LOW,
    SecurityIssueSeverity.MEDIUM,
    SecurityIssueSeverity.HIGH,
)


def _sample() -> SecurityPolicy:
    return SecurityPolicy(
        severity_threshold=SecurityIssueSeverity.MEDIUM,
        patterns=[
            SecurityPattern(pattern=r"os\.system\s*\(", description="sys", severity=3),
        ],
        restricted_modules=[
            RestrictedModule(name="os", description="OS", severity=SecurityIssueSeverity.HIGH)
        ],
    )


# --- construction and defaults ----------------------------------------------------------------


def test_default_policy_is_03s() -> None:
    policy = SecurityPolicy()
    assert policy.severity_threshold is SAFE
    assert policy.patterns is None
    assert policy.restricted_modules is None
    assert policy.model_dump() == {
        "severity_threshold": SAFE,
        "patterns": None,
        "restricted_modules": None,
    }
    assert policy.model_dump_json() == (
        '{"severity_threshold":0,"patterns":null,"restricted_modules":null}'
    )


def test_add_creates_the_lists() -> None:
    policy = SecurityPolicy(severity_threshold=MEDIUM)
    pattern = SecurityPattern(pattern="x", description="x", severity=LOW)
    module = RestrictedModule(name="m", description="m", severity=LOW)
    policy.add_pattern(pattern)
    policy.add_restricted_module(module)
    assert policy.patterns == [pattern]
    assert policy.restricted_modules == [module]


def test_nested_dicts_and_tuples_are_accepted() -> None:
    policy = SecurityPolicy(
        severity_threshold=2,
        patterns=({"pattern": "x", "description": "d", "severity": 1},),
        restricted_modules=[{"name": "os", "description": "d", "severity": "3"}],
    )
    assert policy.patterns == [SecurityPattern(pattern="x", description="d", severity=LOW)]
    assert policy.restricted_modules is not None
    assert policy.restricted_modules[0].severity is HIGH
    assert policy.severity_threshold is MEDIUM


def test_the_callers_list_is_not_the_policys() -> None:
    patterns = [SecurityPattern(pattern="x", description="d", severity=LOW)]
    policy = SecurityPolicy(patterns=patterns)
    assert policy.patterns is not patterns
    assert policy.patterns is not None
    assert policy.patterns[0] is patterns[0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, HIGH), (3.0, HIGH), ("3", HIGH), (True, LOW), (MEDIUM, MEDIUM), ("high", HIGH)],
)
def test_severity_coercion(value: object, expected: SecurityIssueSeverity) -> None:
    # 0.3 took everything here but the name ("high" is ours).
    pattern = SecurityPattern(pattern="x", description="d", severity=value)  # type: ignore[arg-type]
    assert pattern.severity is expected


@pytest.mark.parametrize("value", [4, -1, None, 2.5, "urgent", [3]])
def test_bad_severities_are_value_errors(value: object) -> None:
    with pytest.raises(ValueError, match="SecurityIssueSeverity"):
        RestrictedModule(name="m", description="d", severity=value)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="severity_threshold"):
        SecurityPolicy(severity_threshold=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pattern": 1, "description": "d", "severity": 1},
        {"pattern": "x", "description": None, "severity": 1},
    ],
)
def test_wrong_field_types_are_value_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be a string"):
        SecurityPattern(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["[unclosed", "*x", "(?P<a>x)(?P<a>y)"])
def test_invalid_regex(bad: str) -> None:
    with pytest.raises(InvalidRegexPatternError) as info:
        SecurityPattern(pattern=bad, description="d", severity=HIGH)
    assert str(info.value).startswith(f"Invalid regex pattern: {bad}")


@pytest.mark.parametrize("bad", ["os", ["os"], {"name": "os"}, 3])
def test_lists_must_hold_models(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="restricted_modules"):
        SecurityPolicy(restricted_modules=bad)  # type: ignore[arg-type]


def test_positional_construction_is_ours_too() -> None:
    assert SecurityPattern("x", "d", HIGH) == SecurityPattern(
        pattern="x", description="d", severity=HIGH
    )
    assert SecurityPolicy(LOW).severity_threshold is LOW


def test_misspelt_fields_are_refused() -> None:
    # 0.3 silently ignored unknown fields; a misspelt threshold must not fall back to SAFE.
    with pytest.raises(TypeError):
        SecurityPolicy(severity_treshold=HIGH)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="'severity_treshold'"):
        SecurityPolicy.model_validate({"severity_treshold": 3})


# --- assignment -------------------------------------------------------------------------------


def test_assignment_is_validated() -> None:
    policy = SecurityPolicy()
    policy.severity_threshold = 3  # type: ignore[assignment]
    assert policy.severity_threshold is HIGH
    pattern = SecurityPattern(pattern="x", description="d", severity=LOW)
    with pytest.raises(InvalidRegexPatternError):
        pattern.pattern = "("
    pattern.pattern = "y+"
    assert pattern.regex.pattern == "y+"
    with pytest.raises(AttributeError, match="no field 'threshold'"):
        policy.threshold = 3


def test_models_compare_by_value_and_are_unhashable() -> None:
    assert _sample() == _sample()
    assert _sample() != SecurityPolicy()
    with pytest.raises(TypeError):
        hash(_sample())


# --- dumps, validation, copies ------------------------------------------------------------------


SAMPLE_DUMP = {
    "severity_threshold": MEDIUM,
    "patterns": [{"pattern": r"os\.system\s*\(", "description": "sys", "severity": HIGH}],
    "restricted_modules": [{"name": "os", "description": "OS", "severity": HIGH}],
}
SAMPLE_JSON = (
    r'{"severity_threshold":2,"patterns":[{"pattern":"os\\.system\\s*\\(","description":"sys",'
    r'"severity":3}],"restricted_modules":[{"name":"os","description":"OS","severity":3}]}'
)


def test_model_dump_matches_03() -> None:
    policy = _sample()
    dumped = policy.model_dump()
    assert dumped == SAMPLE_DUMP
    assert type(dumped["severity_threshold"]) is SecurityIssueSeverity
    assert policy.model_dump(mode="json") == json.loads(SAMPLE_JSON)
    assert policy.model_dump_json() == SAMPLE_JSON
    assert policy.model_dump_json(indent=2) == json.dumps(json.loads(SAMPLE_JSON), indent=2)


def test_repr_matches_03() -> None:
    assert repr(_sample()) == (
        "SecurityPolicy(severity_threshold=<SecurityIssueSeverity.MEDIUM: 2>, "
        r"patterns=[SecurityPattern(pattern='os\\.system\\s*\\(', description='sys', "
        "severity=<SecurityIssueSeverity.HIGH: 3>)], restricted_modules=[RestrictedModule("
        "name='os', description='OS', severity=<SecurityIssueSeverity.HIGH: 3>)])"
    )


def test_dump_options() -> None:
    policy = SecurityPolicy(severity_threshold=HIGH, patterns=[SecurityPattern("x", "d", LOW)])
    assert policy.model_dump(exclude_none=True) == {
        "severity_threshold": HIGH,
        "patterns": [{"pattern": "x", "description": "d", "severity": LOW}],
    }
    assert SecurityPolicy().model_dump(exclude_none=True) == {"severity_threshold": SAFE}
    assert SecurityPolicy().model_dump(exclude_defaults=True) == {}
    assert policy.model_dump(include={"severity_threshold"}) == {"severity_threshold": HIGH}
    assert policy.model_dump(exclude={"patterns"}) == {
        "severity_threshold": HIGH,
        "restricted_modules": None,
    }
    assert SecurityPattern("é", "ü", LOW).model_dump_json() == (
        '{"pattern":"é","description":"ü","severity":1}'
    )


def test_languages_are_dumped_only_when_set() -> None:
    plain = SecurityPattern("x", "d", LOW)
    scoped = SecurityPattern("x", "d", LOW, languages=["py"])
    assert "languages" not in plain.model_dump()
    assert scoped.model_dump()["languages"] == ("python",)
    assert json.loads(scoped.model_dump_json())["languages"] == ["python"]
    assert SecurityPattern.model_validate(scoped.model_dump()) == scoped
    assert "languages" in repr(scoped)
    assert "languages" not in repr(plain)


def test_model_validate_round_trips() -> None:
    policy = _sample()
    assert SecurityPolicy.model_validate(policy.model_dump()) == policy
    assert SecurityPolicy.model_validate(policy.model_dump(mode="json")) == policy
    assert SecurityPolicy.model_validate_json(policy.model_dump_json()) == policy
    assert SecurityPolicy.model_validate(policy) is policy
    with pytest.raises(ConfigurationError):
        SecurityPolicy.model_validate("production")
    with pytest.raises(ConfigurationError, match="invalid JSON"):
        SecurityPolicy.model_validate_json("{")


def test_model_copy() -> None:
    policy = _sample()
    shallow = policy.model_copy()
    assert shallow == policy
    assert shallow is not policy
    assert shallow.patterns is not None
    assert policy.patterns is not None
    assert shallow.patterns[0] is policy.patterns[0]
    deep = policy.model_copy(deep=True)
    assert deep.patterns is not None
    assert deep.patterns[0] is not policy.patterns[0]
    assert deep == policy
    raised = policy.model_copy(update={"severity_threshold": 3})
    assert raised.severity_threshold is HIGH
    assert policy.severity_threshold is MEDIUM
    with pytest.raises(ConfigurationError, match="'bogus'"):
        policy.model_copy(update={"bogus": 1})
    assert copy.deepcopy(policy) == policy


def test_the_03_module_path() -> None:
    from llm_sandbox.security import policy as legacy

    assert legacy.SecurityPolicy is SecurityPolicy
    assert legacy.SecurityPattern is SecurityPattern
    assert legacy.RestrictedModule is RestrictedModule
    assert legacy.SecurityIssueSeverity is SecurityIssueSeverity


# --- the threshold ------------------------------------------------------------------------------

# 0.3's table: patterns LOW `print\(`, MEDIUM `open\(`, HIGH `os\.system\(`, all matching.
THREE = "print(1)\nopen('f')\nos.system('id')\n"


def _three(threshold: SecurityIssueSeverity) -> SecurityPolicy:
    return SecurityPolicy(
        severity_threshold=threshold,
        patterns=[
            SecurityPattern(pattern=r"print\(", description="print", severity=LOW),
            SecurityPattern(pattern=r"open\(", description="open", severity=MEDIUM),
            SecurityPattern(pattern=r"os\.system\(", description="system", severity=HIGH),
        ],
    )


@pytest.mark.parametrize(
    ("threshold", "safe", "blocking"),
    [
        (SAFE, True, []),
        (LOW, False, ["print", "open", "system"]),
        (MEDIUM, False, ["open", "system"]),
        (HIGH, False, ["system"]),
    ],
)
def test_threshold_semantics_match_03(
    threshold: SecurityIssueSeverity, safe: bool, blocking: list[str]
) -> None:
    policy = _three(threshold)
    verdict, violations = policy.is_safe(THREE, "python")
    assert verdict is safe
    # Every finding is reported (0.3 stopped at the first blocking one).
    assert [v.description for v in violations] == ["print", "open", "system"]
    assert [v.description for v in policy.blocking(violations)] == blocking


def test_high_threshold_lets_lower_findings_pass() -> None:
    verdict, violations = _three(HIGH).is_safe("print(1)\nopen('f')\n", "python")
    assert verdict is True
    assert [v.severity for v in violations] == [LOW, MEDIUM]


def test_safe_findings_never_block() -> None:
    policy = SecurityPolicy(
        severity_threshold=LOW, patterns=[SecurityPattern("print", "note", SAFE)]
    )
    assert policy.is_safe("print(1)", "python") == (
        True,
        [Violation("pattern", "print", "note", SAFE, 1, "print")],
    )
    assert not policy.blocks(SAFE)
    assert policy.blocks(LOW)
    assert not SecurityPolicy().blocks(HIGH)


# --- violations read like 0.3's matched patterns -----------------------------------------------


def test_violations_read_like_patterns() -> None:
    _, violations = _sample().is_safe("import os\nos.system('id')", "python")
    assert [(v.pattern, v.description, v.severity) for v in violations] == [
        ("os", "OS", HIGH),
        (r"os\.system\s*\(", "sys", HIGH),
    ]
    for v in violations:
        assert v.severity.name == "HIGH"
    dumped = violations[1].model_dump()
    assert list(dumped)[:3] == ["pattern", "description", "severity"]
    assert dumped == {
        "pattern": r"os\.system\s*\(",
        "description": "sys",
        "severity": HIGH,
        "kind": "pattern",
        "matched": "os.system(",
        "line": 2,
    }
    assert Violation.model_validate(dumped) == violations[1]
    assert json.loads(violations[1].model_dump_json())["severity"] == 3
    keep = {"pattern", "description", "severity"}
    assert SecurityPattern.model_validate(violations[1].model_dump(include=keep)) == (
        SecurityPattern(pattern=r"os\.system\s*\(", description="sys", severity=HIGH)
    )


def test_checks_leave_the_policy_alone() -> None:
    # 0.3's is_safe appended one import pattern per restricted module on every call.
    policy = _sample()
    for _ in range(3):
        policy.is_safe("import os", "python")
    assert policy == _sample()


def test_items_appended_behind_the_policys_back_are_checked() -> None:
    policy = SecurityPolicy(patterns=[])
    assert policy.patterns is not None
    policy.patterns.append("os.system")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="SecurityPattern"):
        policy.check("x", "python")
