"""The MCP server's settings: the service settings (file and `LLM_SANDBOX_SERVICE_*`), then the
previous generation's variables (`BACKEND`, `COMMIT_CONTAINER`, `KEEP_TEMPLATE`, `NAMESPACE`,
`SANDBOX_*`) on top. A malformed value is a `ConfigurationError` naming the variable."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from llm_sandbox.exceptions import ConfigurationError
from llm_sandbox.service.settings import ServiceSettings, load_settings

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_CONTAINER_BACKENDS = ("docker", "podman")
_CPU_PERIOD = 100_000


def _flag(name: str, value: str) -> bool:
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigurationError(
        f"{name}={value!r} is not a boolean; use one of {', '.join(_TRUE + _FALSE)}"
    )


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _cpu_quota(env: Mapping[str, str]) -> int | None:
    count = env.get("SANDBOX_CPU_COUNT", "").strip()
    if count:
        if not count.isdigit() or int(count) <= 0:
            raise ConfigurationError(
                f"SANDBOX_CPU_COUNT={count!r} must be a whole number of CPUs above 0 "
                "(use SANDBOX_CPUS for fractions, e.g. 0.5)"
            )
        return int(count) * _CPU_PERIOD
    cpus = env.get("SANDBOX_CPUS", "").strip()
    if not cpus:
        return None
    try:
        value = float(cpus)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigurationError(f"SANDBOX_CPUS={cpus!r} must be a positive number, e.g. 0.5")
    return int(value * _CPU_PERIOD)


def runtime_config(env: Mapping[str, str]) -> dict[str, Any]:
    """The container `runtime_config` the `SANDBOX_*` variables ask for (empty: none set)."""
    config: dict[str, Any] = {}
    network = env.get("SANDBOX_NETWORK_MODE", "").strip()
    if network:
        config["network_mode"] = network
    memory = env.get("SANDBOX_MEM_LIMIT", "").strip() or env.get("SANDBOX_MEMORY", "").strip()
    if memory:
        config["mem_limit"] = memory
    quota = _cpu_quota(env)
    if quota is not None:
        config["cpu_period"] = _CPU_PERIOD
        config["cpu_quota"] = quota
    for name, key in (("SANDBOX_READ_ONLY", "read_only"), ("SANDBOX_PRIVILEGED", "privileged")):
        if env.get(name, "").strip():
            config[key] = _flag(name, env[name])
    for name, key in (("SANDBOX_CAP_DROP", "cap_drop"), ("SANDBOX_SECURITY_OPT", "security_opt")):
        if env.get(name, "").strip():
            config[key] = _items(env[name])
    return config


def mcp_settings(
    config: str | None = None, environ: Mapping[str, str] | None = None
) -> ServiceSettings:
    """The settings of a stdio MCP server started with environment `environ`."""
    env = os.environ if environ is None else environ
    settings = load_settings(config, env)
    backend = env.get("BACKEND", "").strip().lower() or settings.backend
    options = dict(settings.options)
    if env.get("COMMIT_CONTAINER", "").strip():
        options["commit_container"] = env["COMMIT_CONTAINER"].strip().lower() in _TRUE
    if env.get("KEEP_TEMPLATE", "").strip():
        options["keep_template"] = env["KEEP_TEMPLATE"].strip().lower() in _TRUE
    if env.get("NAMESPACE", "").strip():
        if backend != "kubernetes":
            raise ConfigurationError(
                "NAMESPACE is the Kubernetes namespace; set BACKEND=kubernetes too, or unset it"
            )
        options["kube_namespace"] = env["NAMESPACE"].strip()
    runtime = runtime_config(env)
    if runtime:
        if backend not in _CONTAINER_BACKENDS:
            raise ConfigurationError(
                f"SANDBOX_* variables set container options ({', '.join(runtime)}), which only "
                f"the docker and podman backends take (BACKEND is {backend or 'unset'}); set "
                "BACKEND=docker or BACKEND=podman, or unset them (limits of the default backend "
                "come from the LLM_SANDBOX_SERVICE_* settings)"
            )
        options["runtime_config"] = {**options.get("runtime_config", {}), **runtime}
    return dataclasses.replace(settings, backend=backend, options=options)
