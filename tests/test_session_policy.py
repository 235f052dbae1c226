"""The session enforces its security policy before anything runs."""

from __future__ import annotations

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.exceptions import ConfigurationError, SecurityViolationError
from llm_sandbox.security import (
    SecurityIssueSeverity,
    SecurityPattern,
    SecurityPolicy,
    Violation,
    get_security_policy,
)


def test_run_refuses_code_that_breaks_the_policy() -> None:
    policy = get_security_policy("production")
    with SandboxSession(lang="python", security_policy=policy) as session:
        with pytest.raises(SecurityViolationError) as info:
            session.run("import subprocess\nsubprocess.run(['id'])")
        assert info.value.violations
        assert "subprocess" in str(info.value)
        assert session.run("print(sum(range(4)))").stdout == "6\n"


def test_bypass_through_getattr_and_concatenation_is_caught() -> None:
    policy = get_security_policy("production")
    with SandboxSession(lang="python", security_policy=policy) as session:
        safe, violations = session.is_safe("getattr(__builtins__, 'ev' + 'al')('1+1')")
        assert not safe
        assert violations
        safe, _ = session.is_safe("x = 'import os  # just text'\nprint(x)")
        assert safe


def test_is_safe_without_policy_is_true() -> None:
    session = SandboxSession(lang="python")
    assert session.is_safe("import os") == (True, [])


def test_policy_of_the_wrong_type_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="SecurityPolicy"):
        SandboxSession(lang="python", security_policy="production")  # type: ignore[arg-type]


def _print_policy(threshold: SecurityIssueSeverity) -> SecurityPolicy:
    pattern = SecurityPattern(
        pattern=r"print\(", description="printing", severity=SecurityIssueSeverity.HIGH
    )
    return SecurityPolicy(severity_threshold=threshold, patterns=[pattern])


def test_a_safe_threshold_reports_but_blocks_nothing() -> None:
    """As in 0.3: the default threshold (SAFE) makes the policy advisory."""
    policy = _print_policy(SecurityPolicy().severity_threshold)
    with SandboxSession(lang="python", security_policy=policy) as session:
        safe, violations = session.is_safe("print(6)")
        assert safe
        assert [(v.pattern, v.description, v.line) for v in violations] == [
            (r"print\(", "printing", 1)
        ]
        assert session.run("print(6)").stdout == "6\n"


def test_a_threshold_above_safe_blocks_the_run() -> None:
    policy = _print_policy(SecurityIssueSeverity.HIGH)
    with SandboxSession(lang="python", security_policy=policy) as session:
        assert session.is_safe("print(6)")[0] is False
        with pytest.raises(SecurityViolationError) as info:
            session.run("print(6)")
        blocking = info.value.violations
        assert [v.pattern for v in blocking if isinstance(v, Violation)] == [r"print\("]


def test_a_dict_of_fields_is_a_policy() -> None:
    """0.3 validated a dict into a SecurityPolicy; so do we."""
    fields = {
        "severity_threshold": 2,
        "patterns": [{"pattern": r"print\(", "description": "printing", "severity": 3}],
    }
    session = SandboxSession(lang="python", security_policy=fields)  # type: ignore[arg-type]
    assert isinstance(session.config.security_policy, SecurityPolicy)
    safe, violations = session.is_safe("print(1)")
    assert not safe
    assert [v.description for v in violations] == ["printing"]
    with pytest.raises(ConfigurationError, match="'treshold'"):
        SandboxSession(lang="python", security_policy={"treshold": 2})  # type: ignore[arg-type]
