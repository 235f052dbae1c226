"""`llm-sandbox gc`: remove what sessions of crashed callers left behind, on every backend.

Everything we create carries the label `io.llm-sandbox` and its creator's pid (and, for pods,
host). Each backend's `gc` removes its own whose creator is no longer alive on this machine
(`all_=True`: every one); see the backend packages for what each leaves behind.
"""

from __future__ import annotations

import os

from llm_sandbox.backends.registry import list_backends


def alive(pid: str) -> bool:
    """Whether process `pid` (a label value) is running on this machine."""
    return pid.isdigit() and os.path.exists(f"/proc/{pid}")


def collect(all_: bool = False) -> list[str]:
    """Remove orphaned sandboxes of every backend; returns a line per thing removed."""
    removed: list[str] = []
    for definition in list_backends():
        if definition.gc is not None:
            removed += definition.gc(all_, alive)
    return removed
