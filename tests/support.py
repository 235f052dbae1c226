"""Helpers the test modules share (importable as `support`: pytest puts tests/ on the path)."""

from __future__ import annotations

import os
from typing import TypeVar

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.exceptions import BackendUnavailableError

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
"""Under CI the test command must have set every engine up: unavailable is a failure there."""

Session = TypeVar("Session", bound=SandboxSession)


def open_or_skip(session: Session, what: str) -> Session:
    """`session`, opened; skipped where `what` cannot start here, a failure under CI."""
    try:
        session.open()
    except (BackendUnavailableError, ImportError) as exc:
        if IN_CI:
            pytest.fail(f"{what} cannot start under CI: {exc}")
        pytest.skip(f"{what} unavailable here: {exc}")
    return session
