"""`create_pool_manager` and the previous generation's per-backend manager names."""

from __future__ import annotations

from typing import Any

from llm_sandbox.const import SandboxBackend
from llm_sandbox.pool.config import PoolConfig
from llm_sandbox.pool.manager import ContainerPoolManager


def create_pool_manager(
    client: Any | None = None,
    backend: SandboxBackend | str | None = SandboxBackend.DOCKER,
    config: PoolConfig | None = None,
    lang: str = "python",
    **kwargs: Any,
) -> ContainerPoolManager:
    """A pool of sandboxes of `lang` on `backend` (Docker by default, as in 0.3.x; any
    backend that can be pooled: local, docker, podman, kubernetes, or None to choose as
    `SandboxSession` does). `kwargs` are the sandboxes' session options (`image`,
    `runtime_config`, `limits`, `libraries` installed once per sandbox, ...); 0.3.x's
    `namespace` means `kube_namespace`."""
    if "namespace" in kwargs:
        kwargs["kube_namespace"] = kwargs.pop("namespace")
    return ContainerPoolManager(
        client, config, str(getattr(lang, "value", lang)), backend=backend, **kwargs
    )


class _FixedBackend(ContainerPoolManager):
    BACKEND = ""

    def __init__(
        self,
        config: PoolConfig | None = None,
        lang: str = "python",
        image: str | None = None,
        client: Any | None = None,
        **session_kwargs: Any,
    ) -> None:
        if "namespace" in session_kwargs:
            session_kwargs["kube_namespace"] = session_kwargs.pop("namespace")
        super().__init__(client, config, lang, image, backend=self.BACKEND, **session_kwargs)


class DockerPoolManager(_FixedBackend):
    """A pool on Docker (0.3.x: `llm_sandbox.pool.docker_pool.DockerPoolManager`)."""

    BACKEND = "docker"


class PodmanPoolManager(_FixedBackend):
    """A pool on Podman (0.3.x: `llm_sandbox.pool.podman_pool.PodmanPoolManager`)."""

    BACKEND = "podman"


class KubernetesPoolManager(_FixedBackend):
    """A pool of pods (0.3.x: `llm_sandbox.pool.kubernetes_pool.KubernetesPoolManager`)."""

    BACKEND = "kubernetes"
