"""How a long pull or build is told: followed with verbose=True, never silent for long without."""

from __future__ import annotations

import logging

import pytest

from llm_sandbox.images.progress import HEARTBEAT, QUIET_FOR, STATUS_EVERY, ProgressLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(record.levelname, record.getMessage()) for record in caplog.records]


def test_verbose_follows_every_step_and_a_status_every_few_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="test-progress")
    clock = Clock()
    log = ProgressLog(logging.getLogger("test-progress"), True, clock=clock)
    log.step("pulling x")
    log.status("1/3 layers")
    clock.now += STATUS_EVERY / 2
    log.status("2/3 layers")  # too soon: not logged
    clock.now += STATUS_EVERY
    log.status("3/3 layers")
    log.detail("tool output")
    assert _records(caplog) == [
        ("INFO", "pulling x"),
        ("INFO", "1/3 layers"),
        ("INFO", "3/3 layers"),
        ("DEBUG", "tool output"),
    ]


def test_without_verbose_a_long_step_still_says_where_it_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="test-progress")
    clock = Clock()
    log = ProgressLog(logging.getLogger("test-progress"), False, clock=clock)
    log.step("pulling x")
    log.status("starting")  # quick steps stay quiet
    clock.now += QUIET_FOR
    log.status("1/3 layers")
    clock.now += HEARTBEAT / 2
    log.status("2/3 layers")
    clock.now += HEARTBEAT
    log.status("3/3 layers")
    warnings = [message for level, message in _records(caplog) if level == "WARNING"]
    assert warnings == [
        "1/3 layers (10 s so far; verbose=True follows every step)",
        "3/3 layers (55 s so far; verbose=True follows every step)",
    ]
    assert ("DEBUG", "pulling x") in _records(caplog)
