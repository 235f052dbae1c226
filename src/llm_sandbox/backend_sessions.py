"""The previous generation's per-backend session classes, as thin `SandboxSession`s.

0.3.x code constructs `SandboxDockerSession(client, image, ...)` and friends (also positionally,
in their order) or calls `create_session(backend, pool, *args, **kwargs)`. Each class here
fixes its backend, names its positional arguments the way 0.3.x did, and hands everything to
`SandboxSession`, which validates it: nothing is silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from llm_sandbox.const import SandboxBackend
from llm_sandbox.exceptions import ConfigurationError, UnsupportedBackendError
from llm_sandbox.session import SandboxSession

_CONTAINER = (
    "client",
    "image",
    "dockerfile",
    "lang",
    "keep_template",
    "commit_container",
)
_COMMON_TAIL = (
    "runtime_configs",
    "workdir",
    "security_policy",
    "default_timeout",
    "execution_timeout",
    "session_timeout",
    "container_id",
    "skip_environment_setup",
    "encoding_errors",
)


def name_positionals(
    cls_name: str, order: tuple[str, ...], args: tuple[object, ...], options: Mapping[str, Any]
) -> dict[str, Any]:
    """`options` with `args` named by `order`; a name given both ways is an error."""
    if len(args) > len(order):
        raise ConfigurationError(
            f"{cls_name} takes at most {len(order)} positional arguments ({', '.join(order)}); "
            f"got {len(args)}"
        )
    named = dict(options)
    for name, value in zip(order, args, strict=False):
        if name in named:
            raise ConfigurationError(f"{cls_name} got {name!r} both by position and by name")
        named[name] = value
    if named.get("workdir", "") is None:  # 0.3.x's Podman mapped None to its default
        del named["workdir"]
    return named


class _BackendSession(SandboxSession):
    BACKEND: ClassVar[str]
    POSITIONAL: ClassVar[tuple[str, ...]]

    def __init__(self, *args: Any, **options: Any) -> None:
        named = name_positionals(type(self).__name__, self.POSITIONAL, args, options)
        if named.pop("backend", self.BACKEND) not in (self.BACKEND, None):
            raise ConfigurationError(f"{type(self).__name__} always uses backend={self.BACKEND!r}")
        super().__init__(backend=self.BACKEND, **named)


class SandboxDockerSession(_BackendSession):
    """A session on Docker (0.3.x: `llm_sandbox.docker.SandboxDockerSession`)."""

    BACKEND = "docker"
    POSITIONAL = (*_CONTAINER, "commit_image_tag", "verbose", "stream", *_COMMON_TAIL)


class SandboxPodmanSession(_BackendSession):
    """A session on Podman (0.3.x: `llm_sandbox.podman.SandboxPodmanSession`)."""

    BACKEND = "podman"
    POSITIONAL = (*_CONTAINER, "verbose", "mounts", "stream", *_COMMON_TAIL)


class SandboxKubernetesSession(_BackendSession):
    """A session in a Kubernetes pod (0.3.x: `llm_sandbox.kubernetes.SandboxKubernetesSession`)."""

    BACKEND = "kubernetes"
    POSITIONAL = (
        "client",
        "image",
        "lang",
        "verbose",
        "kube_namespace",
        "env_vars",
        "pod_manifest",
        "workdir",
        "security_policy",
        "default_timeout",
        "execution_timeout",
        "session_timeout",
        "container_id",
        "skip_environment_setup",
        "encoding_errors",
    )


class BubblewrapSession(_BackendSession):
    """The embedded backend (0.3.x: `llm_sandbox.bubblewrap.BubblewrapSession`)."""

    BACKEND = "local"
    POSITIONAL = ()

    def __init__(self, *args: Any, **options: Any) -> None:
        options.pop("bwrap_path", None)  # we find bubblewrap on PATH (see `doctor`)
        config = options.pop("sandbox_config", None)
        if config is not None:
            from llm_sandbox.local.config import LocalSandboxConfig

            if not isinstance(config, LocalSandboxConfig):
                raise ConfigurationError("sandbox_config must be a LocalSandboxConfig")
            options = {**config.session_options(), **options}
        super().__init__(*args, **options)


class _Retired(SandboxSession):
    BACKEND: ClassVar[str]

    def __init__(self, *args: Any, **options: Any) -> None:
        from llm_sandbox.backends.registry import get_backend

        get_backend(self.BACKEND)  # raises, saying what to use instead
        raise UnsupportedBackendError(self.BACKEND)  # pragma: no cover - get_backend raised


class MicromambaSession(_Retired):
    """0.3.x's Docker-with-micromamba backend, which this version does not have."""

    BACKEND = "micromamba"


class NsjailSession(_Retired):
    """0.3.x's NsJail backend, which this version does not have."""

    BACKEND = "nsjail"


SESSION_CLASSES: dict[str, type[SandboxSession]] = {
    "docker": SandboxDockerSession,
    "podman": SandboxPodmanSession,
    "kubernetes": SandboxKubernetesSession,
    "local": BubblewrapSession,
    "micromamba": MicromambaSession,
    "nsjail": NsjailSession,
}


def create_session(
    backend: SandboxBackend | str = SandboxBackend.DOCKER,
    pool: object | None = None,
    *args: Any,
    **kwargs: Any,
) -> SandboxSession:
    """The previous generation's factory: a session on `backend` (Docker by default), with
    further positional arguments in that backend class's order."""
    from llm_sandbox.backends.registry import get_backend

    definition = get_backend(backend)
    if pool is not None:
        from llm_sandbox.pool.session import PooledSandboxSession

        if not definition.capabilities.pooling:
            raise ConfigurationError(
                f"Backend '{definition.name}' does not support container pooling"
            )
        return PooledSandboxSession(pool, *args, **kwargs)  # type: ignore[arg-type]
    cls = SESSION_CLASSES.get(definition.name)
    if cls is None:  # a registered third-party backend
        if args:
            raise ConfigurationError(f"backend {definition.name!r} takes keyword arguments only")
        return SandboxSession(backend=definition.name, **kwargs)
    return cls(*args, **kwargs)
