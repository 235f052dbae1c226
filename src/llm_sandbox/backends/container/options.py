"""The options Docker and Podman understand (beyond the common ones)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from llm_sandbox.config import BackendOptions, check_type
from llm_sandbox.exceptions import ConfigurationError

RUNTIME_KEYS = (
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
    "mounts",
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
"""runtime_config keys the container engines accept (the Docker SDK's `containers.create`)."""


@dataclass(frozen=True)
class ContainerOptions(BackendOptions):
    image: str | None = None
    """The image to run; None: the language's default image (built on first use)."""
    dockerfile: str | None = None
    """A Dockerfile to build the image from (removed at close unless `keep_template`)."""
    keep_template: bool = False
    """Keep the image built from `dockerfile` after the session."""
    commit_container: bool = False
    """Save the container (installed libraries included) as a new image at close."""
    client: object | None = None
    """Your own `docker.DockerClient` or `podman.PodmanClient`."""
    runtime_config: Mapping[str, object] = field(default_factory=dict)
    """Docker SDK settings for the container (see `RUNTIME_KEYS`); explicit opt-outs win."""
    commit_image_tag: str | None = None
    """With `commit_container`: the `repository[:tag]` to save the container as (default: the
    image's repository with a fresh `session-…` tag)."""
    container_id: str | None = None
    """Run in this existing container (id or name) instead of creating one: a stopped one is
    started, and it keeps running after the session (see `agent/attached.py`)."""

    def __post_init__(self) -> None:
        if self.runtime_config is None:
            object.__setattr__(self, "runtime_config", {})
        check_type(self.runtime_config, Mapping, "runtime_config", "a dict of Docker settings")
        for name in ("image", "dockerfile", "commit_image_tag", "container_id"):
            value = getattr(self, name)
            if value is not None:
                check_type(value, str, name, "a string")
        for name in ("keep_template", "commit_container"):
            check_type(getattr(self, name), bool, name, "True or False")
        if self.image is not None and self.dockerfile is not None:
            raise ConfigurationError(
                "pass image= or dockerfile=, not both: the dockerfile builds the image to run"
            )
        if self.container_id is not None and (self.dockerfile or self.runtime_config):
            given = "dockerfile=" if self.dockerfile else "runtime_config="
            raise ConfigurationError(
                f"{given} sets up a new container, and container_id= runs in an existing one; "
                "pass only one of them"
            )
        unknown = sorted(set(self.runtime_config) - set(RUNTIME_KEYS))
        if unknown:
            raise ConfigurationError(
                f"runtime_config key(s) {', '.join(map(repr, unknown))} are not supported by the "
                f"docker and podman backends, which accept: {', '.join(RUNTIME_KEYS)}"
            )
        _environment(self.runtime_config.get("environment"))

    @property
    def environment(self) -> Mapping[str, str]:
        return _environment(self.runtime_config.get("environment"))


def _environment(value: object) -> dict[str, str]:
    """Docker's `environment`: a mapping, or a list of "NAME=value" strings."""
    if value is None:
        return {}
    if isinstance(value, list | tuple) and all(isinstance(v, str) and "=" in v for v in value):
        return dict(item.split("=", 1) for item in value)
    if isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return dict(value)
    raise ConfigurationError(
        "runtime_config['environment'] must map names to strings (or list 'NAME=value' strings)"
    )
