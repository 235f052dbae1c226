"""Per-key limits: concurrent sessions and runs, runs per minute (sliding window), the longest
timeout and the most memory. A key's limits are the server's `[limits]` with the key's own
(`llm-sandbox keys limits NAME ...`) in their place.

Everything here runs in the event loop's thread, so plain counters need no lock. Going over a
limit raises `ApiError(429)` with `Retry-After`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from llm_sandbox.service.errors import ApiError
from llm_sandbox.service.settings import KeyLimits

WINDOW = 60.0


def too_many(message: str, retry_after: float) -> ApiError:
    seconds = max(1, math.ceil(retry_after))
    return ApiError(429, "rate_limited", message, headers={"Retry-After": str(seconds)})


class Quotas:
    """The usage of every key against its `KeyLimits`."""

    def __init__(
        self,
        limits: KeyLimits,
        own: Callable[[str], Mapping[str, int | float]] = lambda key: {},
        default_timeout: float = 30.0,
    ) -> None:
        self.limits = limits
        self.default_timeout = default_timeout
        self._own = own
        self._runs: dict[str, int] = defaultdict(int)
        self._started: dict[str, deque[float]] = defaultdict(deque)

    def of(self, key: str) -> KeyLimits:
        """The limits of `key`."""
        own: Mapping[str, Any] = self._own(key)  # checked by `key_limit_overrides`
        return dataclasses.replace(self.limits, **own) if own else self.limits

    @contextmanager
    def run(self, key: str) -> Iterator[None]:
        """Count one run of `key` while the block runs; 429 when over a limit."""
        limits = self.of(key)
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
        limit = self.of(key).sessions
        if open_sessions >= limit:
            raise too_many(
                f"this key has {limit} sessions open (the limit sessions); "
                "delete one (DELETE /v1/sessions/ID) or let one expire",
                1,
            )

    def timeout(self, key: str, timeout: float | None) -> float:
        """The timeout a run of `key` gets: the one asked for (429 over the key's max_timeout),
        else the server's default_timeout, cut to the key's max_timeout."""
        limit = self.of(key).max_timeout
        if timeout is None:
            return min(self.default_timeout, limit)
        if timeout > limit:
            raise too_many(
                f"timeout {timeout} s is over this key's limit of {limit} s "
                "(max_timeout); ask for less",
                1,
            )
        return timeout

    def check_memory(self, key: str, memory: int | None) -> None:
        limit = self.of(key).max_memory
        if memory is not None and memory > limit:
            raise too_many(
                f"memory {memory} bytes is over this key's limit of {limit} "
                "(max_memory); ask for less",
                1,
            )
