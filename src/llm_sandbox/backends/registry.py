"""The backend registry: the only place that knows which backends exist.

Each backend is a package exporting a `BackendDefinition`: its name, pip extra, options class,
capabilities, and the functions that open sandboxes, clean up after crashed callers and report
what the backend enforces. The built-in packages are imported when first needed and import
their SDKs only when a sandbox opens, so naming a backend whose extra is missing fails at
`open()` with the `pip install` line that fixes it. A third-party backend registers with
`register_backend(name, factory)` without touching this package.

The registry also owns the automatic choice (`backend=None`): `LLM_SANDBOX_BACKEND` wins; else a
`client=` selects the backend whose SDK made it; else options only some backends understand
select those (`image=` → a container engine, `pod_manifest=` → Kubernetes); else the embedded
backend. Between several engines that could serve (Docker, Podman), the first reachable one is
chosen at `open()`; nothing here does I/O before that.

`configure(options)` is the one adapter from `SandboxSession`'s flat keyword arguments to a
`SessionConfig`: the common options, and the chosen backend's options object.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from llm_sandbox import compat_options
from llm_sandbox.config import BackendOptions, SessionConfig
from llm_sandbox.const import SandboxBackend
from llm_sandbox.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    ExtraArgumentsError,
    MissingDependencyError,
    UnsupportedBackendError,
)

if TYPE_CHECKING:
    from llm_sandbox.backends.base import Backend

BACKEND_ENV = "LLM_SANDBOX_BACKEND"

Cleaner = Callable[[bool, Callable[[str], bool]], list[str]]
"""`gc(all_, alive)`: remove what crashed callers left behind (all of ours if `all_`); `alive`
tells whether a creator's pid is still running here. Returns a line per thing removed."""


@dataclass(frozen=True)
class BackendCapabilities:
    """What a backend can do, as declared by it (not what this machine allows: see `doctor`).

    `platforms` lists `sys.platform` names (empty: unspecified). `network_isolation` and
    `seccomp` mean the backend can apply those controls; `daemon_required` that it needs an
    engine, service or cluster API to talk to.
    """

    platforms: tuple[str, ...] = ()
    container_images: bool = False
    interactive: bool = False
    pooling: bool = False
    filesystem_isolation: bool = False
    network_isolation: bool = False
    seccomp: bool = False
    daemon_required: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "platforms", tuple(self.platforms))


@dataclass(frozen=True)
class BackendDefinition:
    """One backend, as the registry knows it."""

    name: str
    factory: Callable[[], Backend]
    """Returns the object that opens sandboxes; imports the backend's SDK."""
    capabilities: BackendCapabilities = field(default_factory=BackendCapabilities)
    builtin: bool = False
    options: type[BackendOptions] = BackendOptions
    """The options only this backend understands (unknown ones are rejected)."""
    extra: str | None = None
    """The pip extra that installs its SDK (`pip install 'llm-sandbox[extra]'`)."""
    sdk: str | None = None
    """The top-level module of its SDK: a `client=` made by it selects this backend."""
    implied_by: frozenset[str] = frozenset()
    """Options that select this backend when `backend=None`."""
    reachable: Callable[[], bool] | None = None
    """Whether its engine answers (for the choice between engines at `open()`)."""
    gc: Cleaner | None = None
    doctor_variants: tuple[tuple[str, Mapping[str, object]], ...] = (("", {}),)
    """(suffix, extra session options) to probe in `llm-sandbox doctor` (e.g. "+runsc")."""
    doctor_facts: Callable[[], dict[str, object]] | None = None
    """Backend-specific facts for `llm-sandbox doctor` (cgroups, API server, ...)."""


# --- the table ---------------------------------------------------------------------------------
_BUILTIN: dict[str, str] = {
    "local": "llm_sandbox.backends.local:LOCAL",
    "docker": "llm_sandbox.backends.container:DOCKER",
    "podman": "llm_sandbox.backends.container:PODMAN",
    "kubernetes": "llm_sandbox.backends.kubernetes:KUBERNETES",
}
_ALIASES: dict[str, str] = {"bubblewrap": "local", "k8s": "kubernetes"}
"""Other names users know our backends by (the previous generation's among them)."""
_RETIRED: dict[str, str] = {
    "micromamba": (
        "run a conda environment in a container instead: backend='docker' with "
        "image= set to an image whose PATH has the environment's interpreter"
    ),
    "nsjail": "use backend='local' (bubblewrap, the same kind of isolation, no daemon)",
    "windows-mxc": "run llm-sandbox on Linux (or in WSL2 with backend='local')",
    "wsl2-bubblewrap": "run llm-sandbox inside the WSL2 distribution with backend='local'",
}
"""The previous generation's backends that this version does not have, and what to use."""

_registered: dict[str, BackendDefinition] = {}
_lock = threading.RLock()
_NAME = re.compile(r"[a-z][a-z0-9_-]*")


def _canonical(name: SandboxBackend | str) -> str:
    text = name.value if isinstance(name, SandboxBackend) else name
    if not isinstance(text, str):
        raise UnsupportedBackendError(repr(name), f"a backend name must be a string, got {name!r}")
    key = text.strip().lower()
    return _ALIASES.get(key, key)


def _load_builtin(name: str) -> BackendDefinition:
    module, _, attr = _BUILTIN[name].partition(":")
    definition: BackendDefinition = getattr(importlib.import_module(module), attr)
    return definition


def list_backends() -> tuple[BackendDefinition, ...]:
    """Every backend: the built-in ones, then those registered, in registration order."""
    with _lock:
        for name in _BUILTIN:
            if name not in _registered:
                _registered[name] = _load_builtin(name)
        builtins = [_registered[name] for name in _BUILTIN]
        return (*builtins, *(d for n, d in _registered.items() if n not in _BUILTIN))


def get_backend(name: SandboxBackend | str) -> BackendDefinition:
    """The backend called `name` (or one of its aliases); nothing is imported but its package."""
    key = _canonical(name)
    with _lock:
        if key in _registered:
            return _registered[key]
        if key in _BUILTIN:
            _registered[key] = _load_builtin(key)
            return _registered[key]
    if key in _RETIRED:
        raise UnsupportedBackendError(
            key,
            f"the {key} backend of llm-sandbox 0.3 is not part of this version; {_RETIRED[key]}",
        )
    names = ", ".join(repr(d.name) for d in list_backends())
    raise UnsupportedBackendError(str(name), f"unknown backend {name!r}; choose one of {names}")


def is_backend_name(name: str) -> bool:
    """Whether `name` names a backend (registered, built in, an alias or a retired one)."""
    key = name.strip().lower()
    with _lock:
        return key in _registered or key in _BUILTIN or key in _ALIASES or key in _RETIRED


def register_backend(
    name: str,
    factory: Callable[[], Backend],
    *,
    capabilities: BackendCapabilities | None = None,
    options: type[BackendOptions] = BackendOptions,
    gc: Cleaner | None = None,
) -> BackendDefinition:
    """Register a third-party backend under `name`; it cannot replace an existing one.

    `factory()` returns a `llm_sandbox.backends.base.Backend` (whose `open(config, runtime)`
    returns a `Sandbox`); it is called when a session opens. `options` is a `BackendOptions`
    subclass declaring the options only this backend understands.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name.lower()):
        raise ConfigurationError(
            f"backend name {name!r} must start with a letter and hold only letters, digits, "
            "'_' and '-'"
        )
    if not callable(factory):
        raise ConfigurationError("the backend factory must be callable (e.g. a Backend subclass)")
    if capabilities is not None and not isinstance(capabilities, BackendCapabilities):
        raise ConfigurationError("capabilities must be a BackendCapabilities instance")
    if not (isinstance(options, type) and issubclass(options, BackendOptions)):
        raise ConfigurationError("options must be a BackendOptions subclass")
    key = name.lower()
    with _lock:
        if key in _registered or key in _BUILTIN or key in _ALIASES or key in _RETIRED:
            raise ConfigurationError(
                f"backend {key!r} is already registered and cannot be replaced"
            )
        definition = BackendDefinition(
            key, factory, capabilities or BackendCapabilities(), options=options, gc=gc
        )
        _registered[key] = definition
        return definition


def unregister_backend(name: str) -> None:
    """Remove a third-party backend (built-in ones stay)."""
    key = _canonical(name)
    with _lock:
        if key in _BUILTIN:
            raise ConfigurationError(f"the built-in backend {key!r} cannot be removed")
        _registered.pop(key, None)


def load(definition: BackendDefinition) -> Backend:
    """The backend's sandbox opener; a missing SDK is an error naming the extra to install."""
    from llm_sandbox.backends.base import Backend

    try:
        backend = definition.factory()
    except ModuleNotFoundError as exc:
        if definition.extra is None:
            raise
        raise MissingDependencyError(
            f"the {definition.name} backend needs the {exc.name!r} package; install it with: "
            f"pip install 'llm-sandbox[{definition.extra}]'"
        ) from exc
    if not isinstance(backend, Backend):
        raise ConfigurationError(
            f"the factory of backend {definition.name!r} returned {type(backend).__name__}, "
            "not a llm_sandbox.backends.base.Backend"
        )
    return backend


# --- from keyword arguments to a SessionConfig -------------------------------------------------
def configure(options: Mapping[str, object]) -> SessionConfig:
    """Validate `SandboxSession`'s keyword arguments and route them; no I/O.

    `backend` chooses the backend (None: automatically); the common options become the
    `SessionConfig` fields; the rest go to the backend's options class, which rejects what it
    does not understand.
    """
    options = compat_options.translate(options)
    explicit = options.pop("backend", None)
    backends = list_backends()
    _reject_unknown(options, backends)
    common = {k: v for k, v in options.items() if k in SessionConfig.COMMON}
    specific = {k: v for k, v in options.items() if k not in SessionConfig.COMMON}
    candidates = _choose(explicit, specific, backends)
    definition = candidates[0]
    given = {k: v for k, v in specific.items() if _is_set(k, v, backends)}
    unset = {k: v for k, v in specific.items() if k in definition.options.option_names()}
    backend_options = definition.options.parse(
        {**unset, **given},
        backend=" or ".join(d.name for d in candidates),
        accepted_by=_accepted_by(backends),
    )
    chosen = _builtin_enum(definition.name) if len(candidates) == 1 else None
    config = SessionConfig(
        **common,  # type: ignore[arg-type]  # each field checks its value's type itself
        backend=chosen,
        candidates=tuple(d.name for d in candidates),
        backend_options=backend_options,
    )
    return backend_options.apply(config)


def resolve(config: SessionConfig) -> tuple[BackendDefinition, SessionConfig]:
    """The backend that runs `config` now; between candidate engines the first reachable one.

    This is where the automatic choice may do I/O (a ping per engine), at `open()`.
    """
    definitions = [get_backend(name) for name in config.candidates]
    if len(definitions) == 1:
        chosen = definitions[0]
    else:
        reachable = [d for d in definitions if d.reachable is None or d.reachable()]
        if not reachable:
            names = " or ".join(d.name for d in definitions)
            raise BackendUnavailableError(
                f"these options need a container engine ({names}) but none is reachable; start "
                "dockerd or the podman service, or drop image/dockerfile/runtime_config to use "
                "the embedded backend"
            )
        chosen = reachable[0]
    return chosen, dataclasses.replace(config, backend=_builtin_enum(chosen.name))


def _builtin_enum(name: str) -> SandboxBackend | str:
    try:
        return SandboxBackend(name)
    except ValueError:
        return name


def _accepted_by(backends: Sequence[BackendDefinition]) -> dict[str, str]:
    found: dict[str, list[str]] = {}
    for definition in backends:
        for name in definition.options.option_names():
            found.setdefault(name, []).append(definition.name)
    return {name: ", ".join(sorted(where)) for name, where in found.items()}


def _reject_unknown(options: Mapping[str, object], backends: Sequence[BackendDefinition]) -> None:
    known = {*SessionConfig.COMMON, *_accepted_by(backends), "backend"}
    for name in options:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ExtraArgumentsError(
                f"unknown option {name!r}.{hint} Accepted options: " + ", ".join(sorted(known))
            )


def _is_set(name: str, value: object, backends: Sequence[BackendDefinition]) -> bool:
    """Whether a backend-specific option was given a value other than its default."""
    for definition in backends:
        if name in definition.options.option_names():
            return bool(value != definition.options.default(name))
    return True


def _choose(
    explicit: object, specific: Mapping[str, object], backends: Sequence[BackendDefinition]
) -> list[BackendDefinition]:
    """The backends that could run a session with these options, in order of preference."""
    if explicit is not None:
        return [_named(explicit)]
    from_env = os.environ.get(BACKEND_ENV)
    if from_env:
        return [_named(from_env)]
    client = specific.get("client")
    if client is not None:
        return [_by_client(client, backends)]
    given = {name for name, value in specific.items() if _is_set(name, value, backends)}
    implied = [d for d in backends if d.implied_by & given]
    if not implied:
        return [get_backend(SandboxBackend.LOCAL)]
    fitting = [d for d in implied if given <= set(d.options.option_names())]
    chosen = fitting or implied
    # Engines sharing an options class are alternatives chosen at open(); others are not.
    return [d for d in chosen if d.options is chosen[0].options]


def _named(value: object) -> BackendDefinition:
    if not isinstance(value, SandboxBackend | str):
        raise UnsupportedBackendError(
            repr(value),
            f"backend must be a name such as 'docker' or a SandboxBackend, got {value!r}",
        )
    return get_backend(value)


def _by_client(client: object, backends: Sequence[BackendDefinition]) -> BackendDefinition:
    module = type(client).__module__.split(".")[0]
    for definition in backends:
        if definition.sdk == module:
            return definition
    raise ConfigurationError(
        f"client of type {type(client).__name__} is not a docker, podman or kubernetes client; "
        "pass backend= explicitly"
    )
