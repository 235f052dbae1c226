"""The embedded backend's options: a subset of Docker's `runtime_config` vocabulary."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from llm_sandbox.config import BackendOptions, SessionConfig, check_type, parse_size
from llm_sandbox.exceptions import ConfigurationError

RUNTIME_KEYS = (
    "cpu_count",
    "cpu_period",
    "cpu_quota",
    "environment",
    "mem_limit",
    "memory",
    "network_mode",
    "pids_limit",
)
"""runtime_config keys the embedded backend understands (Docker's names and meanings)."""


@dataclass(frozen=True)
class LocalOptions(BackendOptions):
    runtime_config: Mapping[str, object] = field(default_factory=dict)
    """Docker-style settings mapped onto the session's limits: `memory`/`mem_limit`,
    `pids_limit`, `cpu_count`, `cpu_quota`/`cpu_period`, `network_mode` ('none' or 'host')
    and `environment`. Other keys need a container engine."""

    def __post_init__(self) -> None:
        rc = self.runtime_config
        if rc is None:
            object.__setattr__(self, "runtime_config", {})
            rc = {}
        check_type(rc, Mapping, "runtime_config", "a dict of Docker-style settings")
        unknown = sorted(set(rc) - set(RUNTIME_KEYS))
        if unknown:
            raise ConfigurationError(
                f"runtime_config key(s) {', '.join(map(repr, unknown))} are not supported by the "
                f"local backend; it accepts: {', '.join(RUNTIME_KEYS)}. Container-only keys need "
                "backend='docker' or 'podman'."
            )
        environment = rc.get("environment", {})
        if not isinstance(environment, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in environment.items()
        ):
            raise ConfigurationError("runtime_config['environment'] must map strings to strings")
        mode = rc.get("network_mode", "none")
        if mode not in ("none", "host"):
            raise ConfigurationError(
                f"runtime_config['network_mode']={mode!r} is not supported by the local backend;"
                " use 'none' or 'host' (or network=True)"
            )

    @property
    def environment(self) -> Mapping[str, str]:
        environment: Mapping[str, str] = self.runtime_config.get("environment", {})  # type: ignore[assignment]
        return dict(environment)

    def apply(self, config: SessionConfig) -> SessionConfig:
        """The Docker-style keys as the session's limits and network."""
        rc = self.runtime_config
        limits = config.limits
        memory = rc.get("mem_limit", rc.get("memory"))
        if memory is not None:
            limits = dataclasses.replace(
                limits, memory=parse_size(memory, "runtime_config['memory']")
            )
        if "pids_limit" in rc:
            limits = dataclasses.replace(limits, processes=_positive_int(rc, "pids_limit"))
        if "cpu_count" in rc:
            limits = dataclasses.replace(limits, cpus=float(_positive_int(rc, "cpu_count")))
        if "cpu_quota" in rc:
            period = _positive_int(rc, "cpu_period") if "cpu_period" in rc else 100_000
            limits = dataclasses.replace(limits, cpus=_positive_int(rc, "cpu_quota") / period)
        network = config.network
        if "network_mode" in rc:
            network = rc["network_mode"] == "host"
        return dataclasses.replace(config, limits=limits, network=network)


def _positive_int(rc: Mapping[str, object], name: str) -> int:
    value = rc[name]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"runtime_config[{name!r}] must be a positive integer")
    return value
