"""What running in a sandbox we did not create (`container_id=`) needs, on every backend.

An existing container or pod is the user's: the session creates its directories where missing,
spares the processes that were running when it attached (the container's own: its main
process, services) in every kill, and leaves it running at close. Everything started in it
later is taken for the runs' and killed after each run, so attach one session at a time.
Limits fixed when a sandbox is created (memory, CPU, disk) are the sandbox's own: asking for
others is refused, not ignored; per-process limits are set by the agent's shell (`ulimits`).
"""

from __future__ import annotations

import shlex

from llm_sandbox.config import ResourceLimits
from llm_sandbox.exceptions import ConfigurationError
from llm_sandbox.layout import SUPPORT_DIR

FIXED_LIMITS = ("memory", "cpus", "disk")
"""Limits set when a container or pod is created, which an existing one keeps."""


def refuse_fixed_limits(limits: ResourceLimits, what: str) -> None:
    """Raise if `limits` asks for a limit the existing sandbox `what` cannot take on."""
    default = ResourceLimits()
    changed = [n for n in FIXED_LIMITS if getattr(limits, n) != getattr(default, n)]
    if changed:
        raise ConfigurationError(
            f"limits {', '.join(changed)} cannot be applied to the existing {what} (they are "
            "set when it is created); drop them from ResourceLimits, or let the session create "
            "its own sandbox (no container_id=)"
        )


def prepare_script(workdir: str) -> str:
    """sh creating the work and support directories where missing (open to every user), then
    printing the pids of the processes already running, which the session's kills spare."""
    dirs = " ".join(shlex.quote(d) for d in (workdir, SUPPORT_DIR))
    return (
        f'for d in {dirs}; do [ -d "$d" ] || {{ mkdir -p "$d" && chmod 1777 "$d"; }} '
        "|| exit 1; done; "
        'for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = $$ ] || echo "$p"; done'
    )


def spared_pids(out: bytes) -> tuple[int, ...]:
    """The pids `prepare_script` printed, but pid 1 (which no kill touches)."""
    words = out.decode(errors="replace").split()
    return tuple(sorted(int(w) for w in words if w.isdigit() and w != "1"))
