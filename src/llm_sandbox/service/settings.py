"""The service's settings: from a TOML or JSON file, then `LLM_SANDBOX_SERVICE_*` variables.

Every setting is a field below with its default; an unknown key in the file or an unknown
`LLM_SANDBOX_SERVICE_*` variable is an error naming the known ones (nothing is ignored).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_sandbox.config import parse_size
from llm_sandbox.exceptions import ConfigurationError

ENV_PREFIX = "LLM_SANDBOX_SERVICE_"
MiB = 1024 * 1024


@dataclass(frozen=True)
class KeyLimits:
    """What one API key may use (the defaults let one key run at least 32 runs at once)."""

    sessions: int = 64
    """Sessions a key holds open at once."""
    concurrent_runs: int = 64
    """Runs (REST and Piston) a key has in flight at once."""
    runs_per_minute: int = 6000
    """Runs a key may start per minute (sliding window)."""
    max_timeout: float = 300.0
    """Longest run timeout a key may ask for, in seconds."""
    max_memory: int = 2048 * MiB
    """Most memory a key may ask for a sandbox, in bytes."""


@dataclass(frozen=True)
class ServiceSettings:
    """How `llm-sandbox serve` runs (see the README's "HTTP service")."""

    backend: str | None = None
    """The backend every sandbox runs on (None: chosen as `SandboxSession` chooses)."""
    keys_file: str | None = None
    """Where API keys are stored (default: the user's config directory)."""
    body_limit: int = 1 * MiB
    """Largest request body in bytes; larger bodies get 413."""
    session_ttl: float = 600.0
    """Seconds a session may stay idle before it is closed."""
    default_timeout: float = 30.0
    """Seconds a run may take when the request does not say."""
    memory: int = 512 * MiB
    """Memory of a sandbox when the request does not say, in bytes."""
    pool_size: int = 0
    """Warm sandboxes per language for one-shot runs and Piston (0: no pool)."""
    shutdown_grace: float = 5.0
    """Seconds in-flight runs get to finish at shutdown before they are killed."""
    mcp: bool = True
    """Serve the MCP tools at /mcp (when the `mcp` extra is installed; its SDK adds ~35 MiB)."""
    limits: KeyLimits = field(default_factory=KeyLimits)
    """Limits of every key."""
    options: dict[str, Any] = field(default_factory=dict)
    """More `SandboxSession` options for every sandbox (e.g. `kube_namespace`, `image`)."""


def _coerce(name: str, value: Any, template: Any) -> Any:
    kind = type(template)
    if name in ("memory", "max_memory") and not isinstance(value, bool):
        return parse_size(value, f"service setting {name}")
    if template is None or name in ("backend", "keys_file"):
        return None if value in (None, "") else str(value)
    try:
        if kind is bool:
            return str(value).lower() in ("1", "true", "yes")
        if kind is int and not isinstance(value, bool):
            return int(value)
        if kind is float and not isinstance(value, bool):
            return float(value)
    except (TypeError, ValueError):
        pass
    raise ConfigurationError(f"service setting {name} must be a {kind.__name__}, got {value!r}")


def _build(cls: type[Any], data: Mapping[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigurationError(
            f"unknown service setting(s) {', '.join(unknown)} in {where}; "
            f"known: {', '.join(fields)}"
        )
    defaults = cls()
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name == "limits":
            if not isinstance(value, Mapping):
                raise ConfigurationError(f"limits in {where} must be a table of key limits")
            values[name] = _build(KeyLimits, value, f"{where} [limits]")
        elif name == "options":
            table = json.loads(value) if isinstance(value, str) else value
            if not isinstance(table, Mapping):
                raise ConfigurationError(f"options in {where} must be a table of session options")
            values[name] = dict(table)
            continue
        else:
            values[name] = _coerce(name, value, getattr(defaults, name))
        if isinstance(values[name], int | float) and values[name] < 0:
            raise ConfigurationError(f"service setting {name} must not be negative")
    return cls(**values)


def key_limit_overrides(data: Mapping[str, Any], where: str) -> dict[str, int | float]:
    """The limits one key has of its own (checked like the `[limits]` settings); the rest
    come from the server's settings."""
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"limits in {where} must be a table of key limits")
    built = _build(KeyLimits, data, where)
    return {name: getattr(built, name) for name in data}


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> ServiceSettings:
    """Settings from `path` (TOML or JSON, by suffix), overridden by the environment
    (`LLM_SANDBOX_SERVICE_BODY_LIMIT=2097152`, `LLM_SANDBOX_SERVICE_LIMITS_SESSIONS=8`)."""
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"cannot read the service config {file}: {exc}") from exc
        try:
            data = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"the service config {file} is not valid: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigurationError(f"the service config {file} must hold a table of settings")
    env = os.environ if environ is None else environ
    limits = dict(data.get("limits", {}))
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name.startswith("limits_"):
            limits[name[len("limits_") :]] = value
        else:
            data[name] = value
    if limits:
        data["limits"] = limits
    return _build(ServiceSettings, data, str(path) if path else "the environment")  # type: ignore[no-any-return]
