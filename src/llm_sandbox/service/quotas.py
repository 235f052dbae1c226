"""Per-key limits: concurrent sessions and runs, runs per minute (sliding window).

Everything here runs in the event loop's thread, so plain counters need no lock. Going over a
limit raises `ApiError(429)` with `Retry-After`.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager

from llm_sandbox.service.errors import ApiError
from llm_sandbox.service.settings import KeyLimits

WINDOW = 60.0


def too_many(message: str, retry_after: float) -> ApiError:
    seconds = max(1, math.ceil(retry_after))
    return ApiError(429, "rate_limited", message, headers={"Retry-After": str(seconds)})


class Quotas:
    """The usage of every key against its `KeyLimits`."""

    def __init__(self, limits: KeyLimits) -> None:
        self.limits = limits
        self._runs: dict[str, int] = defaultdict(int)
        self._started: dict[str, deque[float]] = defaultdict(deque)

    @contextmanager
    def run(self, key: str) -> Iterator[None]:
        """Count one run of `key` while the block runs; 429 when over a limit."""
        limits = self.limits
        if self._runs[key] >= limits.concurrent_runs:
            raise too_many(
                f"this key already has {limits.concurrent_runs} runs in flight (the limit "
                "concurrent_runs); wait for one to finish",
                1,
            )
        now = time.monotonic()
        started = self._started[key]
        while started and started[0] <= now - WINDOW:
            started.popleft()
        if len(started) >= limits.runs_per_minute:
            raise too_many(
                f"this key started {limits.runs_per_minute} runs in the last minute (the limit "
                "runs_per_minute); retry after the time in Retry-After",
                started[0] + WINDOW - now,
            )
        started.append(now)
        self._runs[key] += 1
        try:
            yield
        finally:
            self._runs[key] -= 1

    def check_session(self, key: str, open_sessions: int) -> None:
        if open_sessions >= self.limits.sessions:
            raise too_many(
                f"this key has {self.limits.sessions} sessions open (the limit sessions); "
                "delete one (DELETE /v1/sessions/ID) or let one expire",
                1,
            )

    def check_timeout(self, timeout: float | None) -> None:
        if timeout is not None and timeout > self.limits.max_timeout:
            raise too_many(
                f"timeout {timeout} s is over this key's limit of {self.limits.max_timeout} s "
                "(max_timeout); ask for less",
                1,
            )

    def check_memory(self, memory: int | None) -> None:
        if memory is not None and memory > self.limits.max_memory:
            raise too_many(
                f"memory {memory} bytes is over this key's limit of {self.limits.max_memory} "
                "(max_memory); ask for less",
                1,
            )
