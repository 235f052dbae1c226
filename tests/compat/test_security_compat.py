"""0.3.x security entry points: package-name validation, seccomp, restricted installs, and
restricted modules found by a 0.3.x-style handler's own import pattern."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from fake_backend import FakeBackend
from llm_sandbox import SandboxSession
from llm_sandbox.exceptions import SecurityViolationError, ValidationError
from llm_sandbox.language_handlers.base import AbstractLanguageHandler, LanguageConfig
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory
from llm_sandbox.security import RestrictedModule, SecurityIssueSeverity, SecurityPolicy
from llm_sandbox.security.package_validators import PACKAGE_NAME_PATTERNS, validate_package_name
from llm_sandbox.security.seccomp import (
    DEFAULT_BLOCKED_SYSCALLS,
    SeccompPolicy,
    compile_seccomp,
    seccomp_available,
)


def test_package_names() -> None:
    assert validate_package_name(" numpy ", "python") == "numpy"
    assert validate_package_name("requests>=2.0,<3.0", "python") == "requests>=2.0,<3.0"
    assert validate_package_name("lodash", "node") == "lodash"
    with pytest.raises(ValidationError, match="not"):
        validate_package_name("numpy; rm -rf /", "python")
    with pytest.raises(ValidationError, match="non-empty string"):
        validate_package_name("", "python")
    assert set(PACKAGE_NAME_PATTERNS) >= {"python", "javascript", "node", "go", "r", "java"}


def test_seccomp_module() -> None:
    assert seccomp_available()
    assert SeccompPolicy().blocked_syscalls == DEFAULT_BLOCKED_SYSCALLS
    with compile_seccomp(SeccompPolicy()) as fd:
        assert len(os.read(fd, 1 << 16)) % 8 == 0  # whole sock_filter instructions


@pytest.mark.usefixtures("fake_backend")
def test_a_restricted_module_is_not_installed() -> None:
    policy = SecurityPolicy(
        restricted_modules=[RestrictedModule(name="requests", description="network")]
    )
    with SandboxSession(backend="fake", security_policy=policy) as session:
        with pytest.raises(SecurityViolationError, match="requests"):
            session.install(["requests==2.31"])
        assert FakeBackend.opened[-1].execs == []


class _Legacy(AbstractLanguageHandler):
    """Shaped like the 0.3.x documentation's custom handler: no source rules of ours."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        super().__init__(logger)
        self.config = LanguageConfig(
            name="legacy",
            file_extension="lg",
            execution_commands=["cat {file}"],
            package_manager=None,
        )

    def get_import_patterns(self, module: str) -> str:
        return rf"^\s*use\s+{module}\b"


@pytest.fixture
def legacy() -> Iterator[None]:
    LanguageHandlerFactory.register_handler("legacy", _Legacy)
    yield
    LanguageHandlerFactory.unregister_handler("legacy")


@pytest.mark.usefixtures("legacy")
def test_restricted_modules_use_a_legacy_handlers_import_pattern() -> None:
    policy = SecurityPolicy(
        severity_threshold=SecurityIssueSeverity.MEDIUM,
        restricted_modules=[
            RestrictedModule(name="net", description="network", severity=SecurityIssueSeverity.HIGH)
        ],
    )
    safe, found = policy.is_safe("x = 1\nuse net\n", "legacy")
    assert not safe
    assert [(v.pattern, v.line) for v in found] == [("net", 2)]
    assert policy.is_safe("use network\n", "legacy")[0]
