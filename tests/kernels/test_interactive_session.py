"""InteractiveSandboxSession's constructor: the previous generation's names and signature,
and clear errors. (Cells on real backends: tests/backends/test_interactive.py.)"""

from __future__ import annotations

import pytest

import llm_sandbox
from llm_sandbox import (
    InteractiveSandboxSession,
    InteractiveSettings,
    KernelType,
    ResourceLimits,
    SandboxBackend,
    SupportedLanguage,
)
from llm_sandbox.exceptions import ConfigurationError, LanguageNotSupportedError


def test_importable_from_every_old_path() -> None:
    from llm_sandbox import interactive, session

    assert interactive.InteractiveSandboxSession is InteractiveSandboxSession
    assert session.InteractiveSandboxSession is InteractiveSandboxSession
    assert interactive.KernelType is KernelType
    assert interactive.InteractiveSettings is InteractiveSettings
    assert interactive.RUNTIME_START_TIMEOUT == 30.0
    assert "InteractiveSandboxSession" in llm_sandbox.__all__


def test_old_keyword_call_maps_onto_settings_and_limits() -> None:
    session = InteractiveSandboxSession(
        backend=SandboxBackend.DOCKER,
        lang=SupportedLanguage.PYTHON,
        kernel_type=KernelType.IPYTHON,
        max_memory="1GB",
        history_size=10,
        timeout=60,
    )
    assert session.settings.history_size == 10
    assert session.settings.timeout == 60
    assert session.config.limits.memory == 1024**3
    assert not session.is_open


def test_interactive_settings_win_and_explicit_limits_win_over_max_memory() -> None:
    settings = InteractiveSettings(max_memory="768MB", timeout=30, history_size=5)
    session = InteractiveSandboxSession(interactive_settings=settings)
    assert session.settings is settings
    assert session.config.limits.memory == 768 * 1024**2
    limits = ResourceLimits(memory=256 * 1024**2)
    assert InteractiveSandboxSession(limits=limits).config.limits.memory == 256 * 1024**2


def test_bad_options_are_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match="KernelType"):
        InteractiveSandboxSession(kernel_type="jupyter")
    with pytest.raises(ValueError, match="history_size"):
        InteractiveSandboxSession(history_size=-1)
    with pytest.raises(LanguageNotSupportedError, match="interactive kernels exist for"):
        InteractiveSandboxSession(lang="go")
    with pytest.raises(ConfigurationError):
        InteractiveSandboxSession(no_such_option=1)  # type: ignore[call-arg]


def test_run_before_open_says_so() -> None:
    from llm_sandbox.exceptions import NotOpenSessionError

    with pytest.raises(NotOpenSessionError):
        InteractiveSandboxSession().run("1")
