"""The session enforces its security policy before anything runs."""

from __future__ import annotations

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.exceptions import ConfigurationError, SecurityViolationError
from llm_sandbox.security import get_security_policy


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
