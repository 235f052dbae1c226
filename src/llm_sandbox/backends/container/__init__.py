"""Container engines: Docker and Podman (with runc or gVisor), one container per session.

This package only describes the two backends; `sandbox.py` runs a session's container through
the small `Engine` interface (`engine.py`), which `docker.py` and `podman.py` adapt their SDKs
to. Those import the SDKs, so they are imported only when a session opens.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from typing import Any

from llm_sandbox.backends.base import Backend
from llm_sandbox.backends.container.options import ContainerOptions
from llm_sandbox.backends.registry import BackendCapabilities, BackendDefinition, Cleaner
from llm_sandbox.layout import LABEL, PID_LABEL

CAPABILITIES = BackendCapabilities(
    container_images=True,
    pooling=True,
    filesystem_isolation=True,
    network_isolation=True,
    seccomp=True,
    daemon_required=True,
)
IMPLIED_BY = frozenset(
    {"image", "dockerfile", "keep_template", "commit_container", "runtime_config"}
)
"""Options that mean "a container engine" when no backend is named."""


def _engine_module(engine: str) -> Any:
    """`docker.py` or `podman.py`, which import their SDK."""
    return importlib.import_module(f"llm_sandbox.backends.container.{engine}")


def _reachable(engine: str) -> Callable[[], bool]:
    def reachable() -> bool:
        try:
            module = _engine_module(engine)
        except ImportError:
            return False
        return bool(module.engine_reachable())

    return reachable


def _client(engine: str) -> Any:
    """A client of `engine`'s SDK when its daemon answers, else None."""
    with contextlib.suppress(Exception):
        module = _engine_module(engine)
        return module.default_client() if module.engine_reachable() else None
    return None


STOPPED = ("exited", "dead")
"""Container states a session never comes back from (we never restart its container)."""
VOLUME_GRACE = 10.0
"""Seconds an unused library volume of a live process is left alone (its session may be
opening: the volume is created just before the container)."""


def _cleaner(engine: str) -> Cleaner:
    def gc(all_: bool, alive: Callable[[str], bool]) -> list[str]:
        """Remove our containers whose creating process is gone or that have stopped (an
        engine restart stops them, and their session can only be closed), and our library
        volumes whose creating process is gone or that no container uses any more."""
        client = _client(engine)
        if client is None:
            return []
        removed: list[str] = []
        for container in client.containers.list(all=True, filters={"label": LABEL}):
            owner = (container.labels or {}).get(PID_LABEL, "")
            if all_ or not alive(owner) or _status(container) in STOPPED:
                with contextlib.suppress(Exception):
                    container.kill()
                container.remove(force=True)
                removed.append(f"{engine} container {container.id[:12]}")
        for volume in client.volumes.list(filters={"label": LABEL}):
            owner = (volume.attrs.get("Labels") or {}).get(PID_LABEL, "")
            orphan = all_ or not alive(owner)
            if not orphan and _age(volume.attrs.get("CreatedAt", "")) < VOLUME_GRACE:
                continue
            with contextlib.suppress(Exception):  # one still in use is refused: kept
                volume.remove(force=orphan)
                removed.append(f"{engine} volume {volume.name}")
        return removed

    return gc


def _status(container: Any) -> str:
    """A listed container's state: Docker lists it as a dict, Podman's list as the bare word
    (where the SDK's `status` property fails)."""
    state = container.attrs.get("State")
    if isinstance(state, dict):
        state = state.get("Status")
    return str(state or "").lower()


def _age(created: str) -> float:
    """Seconds since an engine's RFC 3339 `CreatedAt` (0 when it cannot be read)."""
    import datetime

    try:
        when = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (datetime.datetime.now(datetime.UTC) - when).total_seconds()


def _definition(engine: str, **more: Any) -> BackendDefinition:
    def factory() -> Backend:
        backend: Backend = _engine_module(engine).create_backend()
        return backend

    return BackendDefinition(
        name=engine,
        factory=factory,
        capabilities=CAPABILITIES,
        builtin=True,
        options=ContainerOptions,
        extra=engine,
        sdk=engine,
        implied_by=IMPLIED_BY,
        reachable=_reachable(engine),
        gc=_cleaner(engine),
        **more,
    )


DOCKER = _definition(
    "docker", doctor_variants=(("", {}), ("+runsc", {"runtime_config": {"runtime": "runsc"}}))
)
PODMAN = _definition("podman")
