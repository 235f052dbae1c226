"""`PooledContainer`: one sandbox of a pool, and the states it goes through.

```
INITIALIZING ──ready──► IDLE ──acquire──► BUSY ──release──► RESETTING ──wiped, verified──► IDLE
                         │  ▲                                  │
                         └──┴─ health check (RESETTING) ───────┴─ failed, expired ─► REMOVING
```

A sandbox is handed out only from IDLE, and reaches IDLE only after a wipe whose report
matched the one it gave when it was new (see `llm_sandbox.backends.wipe`).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llm_sandbox.pool.provision import PreparedSandbox


class ContainerState(enum.StrEnum):
    INITIALIZING = "initializing"
    IDLE = "idle"
    BUSY = "busy"
    RESETTING = "resetting"
    UNHEALTHY = "unhealthy"
    REMOVING = "removing"


@dataclass(eq=False)
class PooledContainer:
    """A pooled sandbox as the pool tracks it.

    `container` is the backend's own handle (the SDK's container for Docker and Podman, the
    pod's name for Kubernetes, None for the embedded backend), as in the previous generation.
    """

    container_id: str
    container: Any = None
    state: ContainerState = ContainerState.INITIALIZING
    created_at: float = field(default_factory=time.time)
    last_used_at: float = field(default_factory=time.time)
    use_count: int = 0
    temporary: bool = False
    """Made by ExhaustionStrategy.TEMPORARY: destroyed when released, never pooled."""
    prepared: PreparedSandbox | None = field(default=None, repr=False)
    """The open sandbox and what it looked like when new (None in tests of the state)."""
    dirty: bool = False
    """Set by a lease that must not be reused (e.g. its session expired mid-run)."""

    def mark_busy(self) -> None:
        self.state = ContainerState.BUSY
        self.last_used_at = time.time()
        self.use_count += 1

    def mark_idle(self) -> None:
        self.state = ContainerState.IDLE
        self.last_used_at = time.time()

    def mark_resetting(self) -> None:
        self.state = ContainerState.RESETTING

    def mark_unhealthy(self) -> None:
        self.state = ContainerState.UNHEALTHY

    def mark_removing(self) -> None:
        self.state = ContainerState.REMOVING

    def is_available(self) -> bool:
        return self.state is ContainerState.IDLE

    def is_expired(self, max_lifetime: float | None, max_uses: int | None) -> bool:
        """Older than `max_lifetime` seconds, or handed out `max_uses` times."""
        too_old = max_lifetime is not None and time.time() - self.created_at > max_lifetime
        return too_old or (max_uses is not None and self.use_count >= max_uses)

    def get_idle_time(self) -> float:
        return time.time() - self.last_used_at
