"""`PoolConfig` and `ExhaustionStrategy`: how big a pool is and what it does when all are busy.

Pure validation, no I/O. Names, defaults and accepted values are the previous generation's.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from llm_sandbox.exceptions import ConfigurationError


class ExhaustionStrategy(enum.StrEnum):
    """What `acquire()` does when every sandbox is in use and the pool is at `max_pool_size`."""

    WAIT = "wait"
    """Queue (first come, first served) for up to `acquisition_timeout` seconds."""
    FAIL_FAST = "fail_fast"
    """Raise `PoolExhaustedError` at once."""
    TEMPORARY = "temporary"
    """Open an extra sandbox outside the pool; it is destroyed when released."""


def _positive(name: str, value: object, *, allow_none: bool, integer: bool = False) -> None:
    if value is None and allow_none:
        return
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:  # type: ignore[operator]
        kind = "an integer" if integer else "a number"
        none = " or None" if allow_none else ""
        raise ConfigurationError(f"PoolConfig {name} must be {kind} > 0{none}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class PoolConfig:
    """A pool's size, timeouts and exhaustion strategy (times in seconds)."""

    max_pool_size: int = 10
    """Most sandboxes the pool holds (TEMPORARY ones come on top)."""
    min_pool_size: int = 0
    """Sandboxes kept ready even when idle (prewarmed at creation)."""
    idle_timeout: float | None = 300.0
    """An idle sandbox beyond `min_pool_size` is destroyed after this long unused."""
    acquisition_timeout: float | None = 30.0
    """WAIT: how long `acquire()` waits before `PoolExhaustedError` (None: for ever)."""
    health_check_interval: float = 60.0
    """How often idle sandboxes are checked (wiped and verified again)."""
    max_container_lifetime: float | None = 3600.0
    """A sandbox older than this is destroyed when next released or found idle."""
    max_container_uses: int | None = None
    """A sandbox handed out this many times is destroyed when released."""
    exhaustion_strategy: ExhaustionStrategy = ExhaustionStrategy.WAIT
    enable_prewarming: bool = True
    """Open `min_pool_size` sandboxes at once, and top up to it in the background."""

    def __post_init__(self) -> None:
        _positive("max_pool_size", self.max_pool_size, allow_none=False, integer=True)
        if (
            isinstance(self.min_pool_size, bool)
            or not isinstance(self.min_pool_size, int)
            or self.min_pool_size < 0
        ):
            raise ConfigurationError(
                f"PoolConfig min_pool_size must be an integer >= 0, got {self.min_pool_size!r}"
            )
        if self.min_pool_size > self.max_pool_size:
            raise ConfigurationError(
                f"min_pool_size ({self.min_pool_size}) cannot be greater than max_pool_size "
                f"({self.max_pool_size})"
            )
        _positive("idle_timeout", self.idle_timeout, allow_none=True)
        _positive("acquisition_timeout", self.acquisition_timeout, allow_none=True)
        _positive("health_check_interval", self.health_check_interval, allow_none=False)
        _positive("max_container_lifetime", self.max_container_lifetime, allow_none=True)
        _positive("max_container_uses", self.max_container_uses, allow_none=True, integer=True)
        try:
            strategy = ExhaustionStrategy(self.exhaustion_strategy)
        except ValueError:
            choices = ", ".join(repr(s.value) for s in ExhaustionStrategy)
            raise ConfigurationError(
                f"PoolConfig exhaustion_strategy must be one of {choices}, got "
                f"{self.exhaustion_strategy!r}"
            ) from None
        object.__setattr__(self, "exhaustion_strategy", strategy)
        if not isinstance(self.enable_prewarming, bool):
            raise ConfigurationError(
                f"PoolConfig enable_prewarming must be True or False, got "
                f"{self.enable_prewarming!r}"
            )
