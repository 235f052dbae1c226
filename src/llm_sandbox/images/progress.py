"""How a long step of opening a session (pulling an image, building a default one) is told.

Through the session's logger, never silent for minutes: with ``verbose=True`` every step at INFO
and a status line at most every :data:`STATUS_EVERY` seconds; otherwise steps at DEBUG and, once
the step has taken :data:`QUIET_FOR` seconds, a WARNING status line every :data:`HEARTBEAT`
seconds (Python shows warnings even when the application configured no logging).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Final

STATUS_EVERY: Final = 2.0
QUIET_FOR: Final = 10.0
HEARTBEAT: Final = 30.0


class ProgressLog:
    """Progress of one long step, for the session's logger (see the module docstring)."""

    def __init__(
        self,
        logger: logging.Logger,
        verbose: bool,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.verbose = verbose
        self._clock = clock
        self._started = clock()
        self._last_status = -math.inf

    @property
    def elapsed(self) -> float:
        return self._clock() - self._started

    def step(self, message: str) -> None:
        """A step worth following: INFO when verbose, else DEBUG."""
        self.logger.log(logging.INFO if self.verbose else logging.DEBUG, "%s", message)

    def detail(self, message: str) -> None:
        """Tool output and the like: DEBUG only."""
        self.logger.debug("%s", message)

    def announce(self, message: str) -> None:
        """Something the caller must hear about even without verbose (a build of minutes)."""
        self.logger.warning("%s", message)

    def status(self, message: str) -> None:
        """Where the step stands now; logged only when due (see the module docstring)."""
        now = self._clock()
        if self.verbose:
            if now - self._last_status >= STATUS_EVERY:
                self._last_status = now
                self.logger.info("%s", message)
            return
        elapsed = now - self._started
        if elapsed >= QUIET_FOR and now - self._last_status >= HEARTBEAT:
            self._last_status = now
            self.logger.warning(
                "%s (%.0f s so far; verbose=True follows every step)", message, elapsed
            )
