"""The embedded backend: bubblewrap namespaces, seccomp and cgroups; no daemon needed.

This package only describes the backend; `sandbox.py` runs it (imported when a session opens).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Callable

from llm_sandbox.backends.base import Backend
from llm_sandbox.backends.local.options import LocalOptions
from llm_sandbox.backends.registry import BackendCapabilities, BackendDefinition

STATE_PREFIX = "llm-sandbox-"
"""Each session's private host directory: `$TMPDIR/llm-sandbox-*`, holding the owner's pid."""


def _backend() -> Backend:
    from llm_sandbox.backends.local.sandbox import LocalBackend

    return LocalBackend()


def _gc(all_: bool, alive: Callable[[str], bool]) -> list[str]:
    """Embedded sessions leave their private directory, and the cgroups of a run in progress,
    behind when the caller dies (their processes die with it: --die-with-parent)."""
    from llm_sandbox.backends.local import cgroups

    removed: list[str] = []
    for path in cgroups.orphans(alive, all_):
        with contextlib.suppress(OSError):
            cgroups.remove_orphan(path)
            removed.append(f"local cgroup {path}")
    for state in glob.glob(os.path.join(tempfile.gettempdir(), f"{STATE_PREFIX}*")):
        if not os.path.isdir(state):
            continue
        owner = ""
        with contextlib.suppress(OSError), open(f"{state}/owner") as f:
            owner = f.read().strip()
        if alive(owner):
            continue
        shutil.rmtree(state, ignore_errors=True)
        removed.append(f"local state {state}")
    return removed


def _doctor_facts() -> dict[str, object]:
    from llm_sandbox.backends.local.sandbox import doctor_facts

    return doctor_facts()


LOCAL = BackendDefinition(
    name="local",
    factory=_backend,
    capabilities=BackendCapabilities(
        platforms=("linux",),
        pooling=True,
        filesystem_isolation=True,
        network_isolation=True,
        seccomp=True,
    ),
    builtin=True,
    options=LocalOptions,
    gc=_gc,
    doctor_facts=_doctor_facts,
)
