"""Counters and timings of a pool, for `get_stats()` (thread-safe, bounded memory)."""

from __future__ import annotations

import collections
import threading
from typing import Any

SAMPLES = 1000
"""How many recent waits and wipes the percentiles are computed over."""


def _summary(samples: collections.deque[float]) -> dict[str, float | None]:
    ordered = sorted(samples)
    if not ordered:
        return {"p50": None, "p99": None, "max": None}

    def pick(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    return {"p50": pick(0.5), "p99": pick(0.99), "max": ordered[-1]}


class PoolStats:
    """What a pool did: acquisitions and their waits, wipes and their times, sandboxes made
    and destroyed, failures."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waits: collections.deque[float] = collections.deque(maxlen=SAMPLES)
        self._resets: collections.deque[float] = collections.deque(maxlen=SAMPLES)
        self.acquisitions = 0
        self.exhausted = 0
        self.created = 0
        self.destroyed = 0
        self.create_failures = 0
        self.reset_failures = 0
        self.found_dead = 0
        """Idle sandboxes found ended at acquire (destroyed and replaced)."""

    def count(self, name: str) -> None:
        """One more of counter `name` (exhausted, created, destroyed, create_failures)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def acquired(self, waited: float) -> None:
        with self._lock:
            self.acquisitions += 1
            self._waits.append(waited)

    def reset(self, took: float, *, failed: bool) -> None:
        with self._lock:
            self._resets.append(took)
            if failed:
                self.reset_failures += 1

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "acquisitions": self.acquisitions,
                "exhausted": self.exhausted,
                "created": self.created,
                "destroyed": self.destroyed,
                "create_failures": self.create_failures,
                "reset_failures": self.reset_failures,
                "found_dead": self.found_dead,
                "wait_time": _summary(self._waits),
                "reset_time": _summary(self._resets),
            }
