"""The previous generation's spellings of options, translated to ours before routing.

* `runtime_configs=` is `runtime_config=` (giving both is an error);
* `environment=` a mapping is `env_vars=` (in 0.3.x a string named a micromamba environment:
  this version has no micromamba backend, so a string is an error saying so);
* `mounts=` (Docker/Podman mount specs) joins `runtime_config["mounts"]`.
"""

from __future__ import annotations

from collections.abc import Mapping

from llm_sandbox.exceptions import ConfigurationError

SPELLINGS = ("runtime_configs", "environment", "mounts")
"""The previous generation's option names this module translates."""


def translate(options: Mapping[str, object]) -> dict[str, object]:
    """`options` with the previous generation's spellings replaced by ours."""
    result = dict(options)
    if "runtime_configs" in result:
        given = result.pop("runtime_configs")
        if result.get("runtime_config") is not None and given is not None:
            raise ConfigurationError(
                "runtime_config and runtime_configs are the same option (the second is the "
                "previous generation's spelling); give only one"
            )
        if given is not None:
            result["runtime_config"] = given
    if "environment" in result:
        environment = result.pop("environment")
        if isinstance(environment, str):
            raise ConfigurationError(
                f"environment={environment!r} names a micromamba environment, and this version "
                "has no micromamba backend; to set environment variables pass a mapping "
                "(environment={'NAME': 'value'} or env_vars=...)"
            )
        if environment is not None:
            if result.get("env_vars"):
                raise ConfigurationError(
                    "environment= and env_vars= both set environment variables; give only one"
                )
            result["env_vars"] = environment
    if "mounts" in result:
        mounts = result.pop("mounts")
        if mounts is not None:
            runtime = dict(result.get("runtime_config") or {})  # type: ignore[call-overload]
            existing = list(runtime.get("mounts") or [])
            runtime["mounts"] = [*existing, *(mounts if isinstance(mounts, list) else [mounts])]
            result["runtime_config"] = runtime
    return result
