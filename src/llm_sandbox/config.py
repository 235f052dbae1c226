"""Session options: what the user may set, their defaults, and which backends accept them.

`SessionConfig.build(...)` is the single place where options are validated. An unknown
option, a malformed value, or an option the chosen backend does not understand raises
`ConfigurationError` naming the option and what to do instead; nothing is silently ignored.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from llm_sandbox.exceptions import ConfigurationError

MiB = 1024 * 1024
GiB = 1024 * MiB


class SandboxBackend(str, Enum):
    """Where code runs. `SandboxSession(backend=...)` accepts the member or its value."""

    LOCAL = "local"
    DOCKER = "docker"
    PODMAN = "podman"
    KUBERNETES = "kubernetes"

    def __str__(self) -> str:
        return self.value


BACKEND_ENV = "LLM_SANDBOX_BACKEND"


@dataclass(frozen=True)
class ResourceLimits:
    """Limits applied to every run. `None` switches a limit off (explicitly, never by accident)."""

    memory: int | None = 512 * MiB
    """Bytes of memory for everything a run starts (cgroup; address-space rlimit otherwise).

    Files the run writes to the work directory or /tmp live in memory and count too."""
    processes: int | None = 128
    """Processes and threads alive at once."""
    cpus: float | None = None
    """CPU cores' worth of time per wall-clock second (needs a cpu cgroup)."""
    cpu_time: int | None = None
    """CPU seconds per process (RLIMIT_CPU)."""
    file_size: int | None = 256 * MiB
    """Largest single file the code may write (RLIMIT_FSIZE)."""
    disk: int = 1 * GiB
    """Bytes for the work directory, /tmp and installed libraries together."""
    open_files: int = 1024
    """Open file descriptors per process."""
    output: int = 1 * MiB
    """Bytes kept per output stream per run; the rest is dropped and the result says so."""

    @property
    def max_files(self) -> int:
        """Files (inodes) per tmpfs: each pins ~1 KiB of kernel memory that no limit reclaims."""
        basis = self.memory if self.memory is not None else self.disk
        return max(1024, basis // 4096)

    def __post_init__(self) -> None:
        for name in (
            "memory",
            "processes",
            "cpu_time",
            "file_size",
            "disk",
            "open_files",
            "output",
        ):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ConfigurationError(
                    f"limits.{name} must be a positive integer or None, got {value!r}"
                )
        if self.cpus is not None and not (isinstance(self.cpus, int | float) and self.cpus > 0):
            raise ConfigurationError(f"limits.cpus must be a positive number, got {self.cpus!r}")


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(value: int | str, option: str) -> int:
    """`512m`, `1g`, `256MiB`, `1048576` → bytes (binary units, like Docker)."""
    if isinstance(value, bool):
        raise ConfigurationError(f"{option} must be a size such as '512m', got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ConfigurationError(f"{option} must be positive, got {value}")
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ConfigurationError(
            f"{option}={value!r} is not a size; use bytes or a number with k, m, g (e.g. '512m')"
        )
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


# Which backends understand an option, and which backend kind it implies when backend=None.
_CONTAINER = frozenset({SandboxBackend.DOCKER, SandboxBackend.PODMAN})
_KUBE = frozenset({SandboxBackend.KUBERNETES})
_ALL = frozenset(SandboxBackend)


@dataclass(frozen=True)
class _Option:
    default: Any
    backends: frozenset[SandboxBackend]
    implies: frozenset[SandboxBackend] = frozenset()


OPTIONS: dict[str, _Option] = {
    "lang": _Option("python", _ALL),
    "verbose": _Option(False, _ALL),
    "workdir": _Option("/sandbox", _ALL),
    "default_timeout": _Option(30.0, _ALL),
    "execution_timeout": _Option(None, _ALL),
    "session_timeout": _Option(None, _ALL),
    "logger": _Option(None, _ALL),
    "network": _Option(False, _ALL),
    "limits": _Option(None, _ALL),
    "security_policy": _Option(None, _ALL),
    "runtime_config": _Option(None, _ALL - _KUBE, _CONTAINER),
    "image": _Option(None, _CONTAINER | _KUBE, _CONTAINER),
    "dockerfile": _Option(None, _CONTAINER, _CONTAINER),
    "keep_template": _Option(False, _CONTAINER, _CONTAINER),
    "commit_container": _Option(False, _CONTAINER, _CONTAINER),
    "client": _Option(None, _CONTAINER | _KUBE),
    "pod_manifest": _Option(None, _KUBE, _KUBE),
    "kube_namespace": _Option(None, _KUBE, _KUBE),
}

# runtime_config keys the embedded backend understands (a subset of Docker's vocabulary).
LOCAL_RUNTIME_KEYS = (
    "cpu_count",
    "cpu_period",
    "cpu_quota",
    "environment",
    "mem_limit",
    "memory",
    "network_mode",
    "pids_limit",
)


# runtime_config keys the container engines accept (Docker SDK vocabulary).
CONTAINER_RUNTIME_KEYS = (
    "cap_add",
    "cap_drop",
    "cpu_count",
    "cpu_period",
    "cpu_quota",
    "cpu_shares",
    "dns",
    "environment",
    "mem_limit",
    "memory",
    "memswap_limit",
    "network_mode",
    "pids_limit",
    "ports",
    "privileged",
    "runtime",
    "security_opt",
    "user",
    "volumes",
    "working_dir",
)


def _check_runtime_keys(runtime_config: Mapping[str, Any], backend: SandboxBackend) -> None:
    accepted = LOCAL_RUNTIME_KEYS if backend is SandboxBackend.LOCAL else CONTAINER_RUNTIME_KEYS
    unknown = sorted(set(runtime_config) - set(accepted))
    if unknown:
        hint = (
            " Container-only keys need backend='docker' or 'podman'."
            if backend is SandboxBackend.LOCAL
            else ""
        )
        raise ConfigurationError(
            f"runtime_config key(s) {', '.join(map(repr, unknown))} are not supported by the "
            f"{backend.value} backend; it accepts: {', '.join(accepted)}.{hint}"
        )


@dataclass(frozen=True)
class SessionConfig:
    """Validated options of one session."""

    lang: str = "python"
    backend: SandboxBackend = SandboxBackend.LOCAL
    verbose: bool = False
    workdir: str = "/sandbox"
    default_timeout: float | None = 30.0
    execution_timeout: float | None = None
    session_timeout: float | None = None
    logger: logging.Logger | None = None
    network: bool = False
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    environment: Mapping[str, str] = field(default_factory=dict)
    security_policy: Any = None
    runtime_config: Mapping[str, Any] = field(default_factory=dict)
    image: str | None = None
    dockerfile: str | None = None
    keep_template: bool = False
    commit_container: bool = False
    client: Any = None
    pod_manifest: Mapping[str, Any] | None = None
    kube_namespace: str | None = None

    @property
    def run_timeout(self) -> float | None:
        """The timeout of one run: `execution_timeout`, else `default_timeout`."""
        return (
            self.execution_timeout if self.execution_timeout is not None else self.default_timeout
        )

    @classmethod
    def build(cls, options: Mapping[str, Any]) -> SessionConfig:
        _reject_unknown(options)
        values = {name: options.get(name, spec.default) for name, spec in OPTIONS.items()}
        backend = _choose_backend(options)
        _reject_inapplicable(options, backend)
        _check_timeouts(values)
        _check_workdir(values["workdir"])
        _check_policy(values["security_policy"])
        limits = values["limits"] if values["limits"] is not None else ResourceLimits()
        if not isinstance(limits, ResourceLimits):
            raise ConfigurationError("limits must be a llm_sandbox.ResourceLimits instance")
        runtime_config = dict(values["runtime_config"] or {})
        _check_runtime_keys(runtime_config, backend)
        config = cls(
            lang=str(values["lang"]),
            backend=backend,
            verbose=bool(values["verbose"]),
            workdir=values["workdir"],
            default_timeout=values["default_timeout"],
            execution_timeout=values["execution_timeout"],
            session_timeout=values["session_timeout"],
            logger=values["logger"],
            network=bool(values["network"]),
            limits=limits,
            security_policy=values["security_policy"],
            runtime_config=runtime_config,
            image=values["image"],
            dockerfile=values["dockerfile"],
            keep_template=bool(values["keep_template"]),
            commit_container=bool(values["commit_container"]),
            client=values["client"],
            pod_manifest=values["pod_manifest"],
            kube_namespace=values["kube_namespace"],
        )
        if backend is SandboxBackend.LOCAL:
            config = _apply_local_runtime_config(config)
        return config


def _check_policy(policy: Any) -> None:
    from llm_sandbox.security import SecurityPolicy

    if policy is not None and not isinstance(policy, SecurityPolicy):
        raise ConfigurationError(
            "security_policy must be a llm_sandbox.security.SecurityPolicy, e.g. "
            "get_security_policy('production')"
        )


ARTIFACT_OPTIONS = ("enable_plotting", "max_artifact_bytes")
"""Options of `ArtifactSandboxSession` only."""


def _reject_unknown(options: Mapping[str, Any]) -> None:
    for name in options:
        if name in ARTIFACT_OPTIONS:
            raise ConfigurationError(
                f"option {name!r} belongs to ArtifactSandboxSession, which captures plots and "
                "files; use it instead of SandboxSession"
            )
        if name not in OPTIONS and name != "backend":
            close = difflib.get_close_matches(name, [*OPTIONS, "backend"], n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(
                f"unknown option {name!r}.{hint} Accepted options: "
                + ", ".join(sorted([*OPTIONS, "backend"]))
            )


def _is_set(name: str, options: Mapping[str, Any]) -> bool:
    return name in options and options[name] != OPTIONS[name].default


def parse_backend(value: SandboxBackend | str) -> SandboxBackend:
    try:
        return SandboxBackend(str(value).lower())
    except ValueError:
        names = ", ".join(repr(b.value) for b in SandboxBackend)
        raise ConfigurationError(f"unknown backend {value!r}; choose one of {names}") from None


def _choose_backend(options: Mapping[str, Any]) -> SandboxBackend:
    explicit = options.get("backend")
    if explicit is not None:
        return parse_backend(explicit)
    from_env = os.environ.get(BACKEND_ENV)
    if from_env:
        return parse_backend(from_env)
    client_kind = _client_backend(options.get("client"))
    if client_kind is not None:
        return client_kind
    for name, spec in OPTIONS.items():
        if spec.implies and _is_set(name, options):
            if spec.implies == _KUBE:
                return SandboxBackend.KUBERNETES
            from llm_sandbox.backends import first_reachable_container_engine

            return first_reachable_container_engine()
    return SandboxBackend.LOCAL


def _client_backend(client: Any) -> SandboxBackend | None:
    if client is None:
        return None
    module = type(client).__module__.split(".")[0]
    kinds = {
        "docker": SandboxBackend.DOCKER,
        "podman": SandboxBackend.PODMAN,
        "kubernetes": SandboxBackend.KUBERNETES,
    }
    if module not in kinds:
        raise ConfigurationError(
            f"client of type {type(client).__name__} is not a docker, podman or kubernetes "
            "client; pass backend= explicitly"
        )
    return kinds[module]


def _reject_inapplicable(options: Mapping[str, Any], backend: SandboxBackend) -> None:
    for name, spec in OPTIONS.items():
        if backend in spec.backends or not _is_set(name, options):
            continue
        where = ", ".join(sorted(b.value for b in spec.backends))
        hint = ""
        if name == "runtime_config" and backend is SandboxBackend.KUBERNETES:
            hint = " Describe resources and security settings in pod_manifest instead."
        raise ConfigurationError(
            f"option {name!r} does not apply to the {backend.value} backend (only to: {where})."
            f"{hint} Remove it or choose a backend that supports it."
        )


def _check_timeouts(values: dict[str, Any]) -> None:
    for name in ("default_timeout", "execution_timeout", "session_timeout"):
        check_timeout(values[name], name)


def check_timeout(value: Any, name: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds or None")
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be finite; use None for no limit")


def _check_workdir(workdir: Any) -> None:
    system_trees = ("/proc", "/dev", "/sys", "/usr", "/etc", "/opt/llm-sandbox")
    if not isinstance(workdir, str) or not workdir.startswith("/") or ".." in workdir.split("/"):
        raise ConfigurationError(f"workdir must be an absolute path without '..', got {workdir!r}")
    normal = os.path.normpath(workdir)
    if normal in ("/", "/tmp") or any(
        normal == tree or normal.startswith(tree + "/") for tree in system_trees
    ):
        raise ConfigurationError(f"workdir {workdir!r} is a system path; use e.g. '/sandbox'")


def _apply_local_runtime_config(config: SessionConfig) -> SessionConfig:
    """Map the Docker-style runtime_config keys the embedded backend supports onto limits."""
    rc = dict(config.runtime_config)
    limits = config.limits
    memory = rc.get("mem_limit", rc.get("memory"))
    if memory is not None:
        limits = replace(limits, memory=parse_size(memory, "runtime_config['memory']"))
    if "pids_limit" in rc:
        limits = replace(limits, processes=_positive_int(rc["pids_limit"], "pids_limit"))
    if "cpu_count" in rc:
        limits = replace(limits, cpus=float(_positive_int(rc["cpu_count"], "cpu_count")))
    if "cpu_quota" in rc:
        period = _positive_int(rc.get("cpu_period", 100_000), "cpu_period")
        limits = replace(limits, cpus=_positive_int(rc["cpu_quota"], "cpu_quota") / period)
    network = config.network
    if "network_mode" in rc:
        mode = rc["network_mode"]
        if mode not in ("none", "host"):
            raise ConfigurationError(
                f"runtime_config['network_mode']={mode!r} is not supported by the local backend;"
                " use 'none' or 'host' (or network=True)"
            )
        network = mode == "host"
    environment = rc.get("environment", {})
    if not isinstance(environment, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in environment.items()
    ):
        raise ConfigurationError("runtime_config['environment'] must map strings to strings")
    return replace(config, limits=limits, network=network, environment=dict(environment))


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"runtime_config[{name!r}] must be a positive integer")
    return value
