"""`llm-sandbox gc`: remove sandboxes orphaned by a caller that crashed.

Containers and their library volumes carry the label `io.llm-sandbox` and the creating
process's pid. One whose creator is no longer alive on this machine is an orphan (pass
`all_=True` to remove every one). Kubernetes pods carry the creator's host too: a pod is an
orphan when its creator was a process of this host that is gone, when its session's expiry
(annotation `io.llm-sandbox/expires`) has passed, or when it is no longer running.
Embedded sessions leave at most an empty private directory behind, which is removed too.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from llm_sandbox.backends.container import LABEL


def _alive(pid: str) -> bool:
    return pid.isdigit() and os.path.exists(f"/proc/{pid}")


def _clients() -> Iterator[tuple[str, Any]]:
    with contextlib.suppress(Exception):
        from llm_sandbox.backends import docker as docker_backend

        if docker_backend.engine_reachable():
            yield "docker", docker_backend.default_client()
    with contextlib.suppress(Exception):
        from llm_sandbox.backends import podman as podman_backend

        if podman_backend.engine_reachable():
            yield "podman", podman_backend.default_client()


def collect(all_: bool = False) -> list[str]:
    """Remove orphaned sandboxes; returns a line per thing removed."""
    removed: list[str] = []
    for engine, client in _clients():
        for container in client.containers.list(all=True, filters={"label": LABEL}):
            owner = (container.labels or {}).get(f"{LABEL}.pid", "")
            if all_ or not _alive(owner):
                with contextlib.suppress(Exception):
                    container.kill()
                container.remove(force=True)
                removed.append(f"{engine} container {container.id[:12]}")
        for volume in client.volumes.list(filters={"label": LABEL}):
            owner = (volume.attrs.get("Labels") or {}).get(f"{LABEL}.pid", "")
            if all_ or not _alive(owner):
                with contextlib.suppress(Exception):
                    volume.remove(force=True)
                    removed.append(f"{engine} volume {volume.name}")
    removed += _collect_pods(all_)
    for state in glob.glob(os.path.join(tempfile.gettempdir(), "llm-sandbox-*")):
        owner = ""
        with contextlib.suppress(OSError), open(f"{state}/owner") as f:
            owner = f.read().strip()
        if _alive(owner):
            continue
        shutil.rmtree(state, ignore_errors=True)
        removed.append(f"local state {state}")
    return removed


def _collect_pods(all_: bool) -> list[str]:
    """Orphaned session pods in the kubeconfig's cluster (nothing when none is configured)."""
    try:
        from llm_sandbox.backends.kubernetes import gc_pods
    except ImportError:  # the kubernetes extra is not installed
        return []
    return gc_pods(all_, _alive)
