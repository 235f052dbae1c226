"""Backends by name, imported lazily so a missing optional SDK only matters when it is used."""

from __future__ import annotations

import importlib

from llm_sandbox.backends.base import Backend
from llm_sandbox.config import SandboxBackend
from llm_sandbox.exceptions import BackendUnavailableError

_MODULES = {
    SandboxBackend.LOCAL: "llm_sandbox.backends.local",
    SandboxBackend.DOCKER: "llm_sandbox.backends.docker",
    SandboxBackend.PODMAN: "llm_sandbox.backends.podman",
    SandboxBackend.KUBERNETES: "llm_sandbox.backends.kubernetes",
}

_EXTRAS = {
    SandboxBackend.DOCKER: "docker",
    SandboxBackend.PODMAN: "podman",
    SandboxBackend.KUBERNETES: "kubernetes",
}


def load_backend(kind: SandboxBackend) -> Backend:
    """Import and instantiate the backend `kind`, or explain what is missing."""
    try:
        module = importlib.import_module(_MODULES[kind])
    except ModuleNotFoundError as exc:
        if exc.name == _MODULES[kind]:
            raise BackendUnavailableError(
                f"the {kind.value} backend is not part of this version of llm-sandbox; "
                "use backend='local'"
            ) from exc
        if kind in _EXTRAS:
            raise BackendUnavailableError(
                f"the {kind.value} backend needs the {exc.name!r} package; "
                f"install it with: pip install 'llm-sandbox[{_EXTRAS[kind]}]'"
            ) from exc
        raise
    backend: Backend = module.create_backend()
    return backend


def first_reachable_container_engine() -> SandboxBackend:
    """Docker if its daemon answers, else Podman; the choice for container-only options."""
    for kind in (SandboxBackend.DOCKER, SandboxBackend.PODMAN):
        try:
            module = importlib.import_module(_MODULES[kind])
        except ModuleNotFoundError:
            continue
        if module.engine_reachable():
            return kind
    raise BackendUnavailableError(
        "these options need a container engine (Docker or Podman) but none is reachable; "
        "start dockerd or the podman service, or drop image/dockerfile/runtime_config to use "
        "the embedded backend"
    )
