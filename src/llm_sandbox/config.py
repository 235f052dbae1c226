"""A session's settings: the common ones, the chosen backend's, and the limits. Pure, no I/O.

Every option is declared once, as a field with its type, default and documentation: the
options every backend understands are the fields of `SessionConfig`; the options only some
backends understand are the fields of that backend's `BackendOptions` subclass (for example
`llm_sandbox.backends.container.options.ContainerOptions`). `llm_sandbox.backends.registry`
routes the flat keyword arguments of `SandboxSession(...)` to the two. A value that does not
fit its field raises `ConfigurationError` naming the option and what to do instead; nothing is
silently ignored.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, TypeVar

from llm_sandbox.const import EncodingErrorsType, SandboxBackend
from llm_sandbox.egress.policy import EgressPolicy
from llm_sandbox.exceptions import ConfigurationError

if TYPE_CHECKING:
    from llm_sandbox.security import SecurityPolicy

_Options = TypeVar("_Options", bound="BackendOptions")

MiB = 1024 * 1024
GiB = 1024 * MiB


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
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name == "cpus":
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
                ):
                    raise ConfigurationError(
                        f"limits.cpus must be a positive number, got {value!r}"
                    )
            elif value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value <= 0
            ):
                raise ConfigurationError(
                    f"limits.{item.name} must be a positive integer or None, got {value!r}"
                )


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(value: object, option: str) -> int:
    """`512m`, `1g`, `256MiB`, `1048576` → bytes (binary units, like Docker)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigurationError(f"{option} must be a size such as '512m', got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ConfigurationError(f"{option} must be positive, got {value}")
        return value
    match = _SIZE.match(value)
    if not match:
        raise ConfigurationError(
            f"{option}={value!r} is not a size; use bytes or a number with k, m, g (e.g. '512m')"
        )
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


def check_timeout(value: object, name: str) -> None:
    """A timeout is a positive, finite number of seconds, or None for no limit."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds or None")
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be finite; use None for no limit")


def check_type(value: object, kind: type | tuple[type, ...], name: str, example: str) -> None:
    """`value` is an instance of `kind` (booleans never pass for numbers)."""
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _types(kind)):
        raise ConfigurationError(f"{name} must be {example}, got {value!r}")


def field_default(cls: type, name: str) -> object:
    """The default of dataclass `cls`'s field `name`."""
    for item in dataclasses.fields(cls):
        if item.name == name:
            if item.default_factory is not dataclasses.MISSING:
                return item.default_factory()
            return item.default
    raise KeyError(name)


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


@dataclass(frozen=True)
class BackendOptions:
    """Options only some backends understand. Each backend subclasses this with its fields.

    The base class has no fields: it is the options of a backend that takes none.
    """

    accepted_by_hint: ClassVar[Mapping[str, str]] = {}
    """Per option name: a sentence added when the option is given to another backend."""

    def apply(self, config: SessionConfig) -> SessionConfig:
        """The session's settings adjusted for these options (e.g. limits they imply)."""
        return config

    @property
    def environment(self) -> Mapping[str, str]:
        """Environment variables the user asked for, set in every command."""
        return {}

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(item.name for item in dataclasses.fields(cls) if item.init)

    @classmethod
    def default(cls, name: str) -> object:
        """The default of option `name` (which must be one of this class's)."""
        return field_default(cls, name)

    @classmethod
    def parse(
        cls, values: Mapping[str, object], *, backend: str, accepted_by: Mapping[str, str]
    ) -> BackendOptions:
        """These options from the keyword arguments that are not common options.

        An option this backend does not understand raises `ConfigurationError` saying which
        backends do (`accepted_by`: option name → their names).
        """
        mine = cls.option_names()
        for name in values:
            if name not in mine:
                where = accepted_by.get(name, "")
                hint = cls.accepted_by_hint.get(name, "")
                raise ConfigurationError(
                    f"option {name!r} does not apply to the {backend} backend (only to: "
                    f"{where}).{' ' + hint if hint else ''} Remove it or choose a backend that "
                    "supports it."
                )
        return cls(**values)


WORKDIR_SYSTEM_TREES = ("/proc", "/dev", "/sys", "/usr", "/etc", "/opt/llm-sandbox")


@dataclass(frozen=True)
class SessionConfig:
    """The validated settings of one session.

    The fields up to `security_policy` are the options every backend understands, with their
    defaults. `backend` is the backend that runs the session; it is None until `open()` when
    the choice depends on what is reachable (`candidates` lists the backends that could run
    it, in order of preference). `backend_options` holds the options only that backend
    understands.
    """

    lang: str = "python"
    """The language of the code (a registered language handler)."""
    verbose: bool = False
    """Log each step at INFO (and make sure it is shown)."""
    workdir: str = "/sandbox"
    """The working directory inside the sandbox (writable, private, size-capped)."""
    default_timeout: float | None = 30.0
    """Seconds for each operation unless a more specific timeout says otherwise."""
    execution_timeout: float | None = None
    """Seconds for each run; None uses `default_timeout`."""
    session_timeout: float | None = None
    """Seconds the session may live; then the sandbox is torn down."""
    logger: logging.Logger | None = None
    """Where to log; the `llm_sandbox` logger by default."""
    network: bool | EgressPolicy = False
    """False: no network. True: the whole network. An `EgressPolicy`: only what it allows,
    through the egress gate (moved to `egress`; `network` then reads False). Installs reach their
    package index through the gate either way."""
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    """Memory, processes, CPU, disk and output limits of every run."""
    security_policy: SecurityPolicy | None = None
    """Static checks the code must pass before it runs (`llm_sandbox.security`)."""
    libraries: Sequence[str] = ()
    """Libraries installed when the session opens (as `install()` would)."""
    env_vars: Mapping[str, str] = field(default_factory=dict)
    """Environment variables for every command. Your value wins over ours; for path lists
    (`PYTHONPATH`, `PATH`, ...) ours are appended after yours."""
    encoding_errors: EncodingErrorsType = "replace"
    """How output that is not valid UTF-8 is decoded (Python's error handlers); "strict"
    raises `OutputDecodeError` (the raw bytes are kept on it)."""
    skip_environment_setup: bool = False
    """The previous generation's switch for its per-session set-up (a venv); ours has none, so
    with it `libraries` and `install()` are refused, as there."""
    stream: bool = False
    """Accepted for the previous generation's code: output is always streamed (callbacks get it
    live) and exit codes are always exact, so it changes nothing."""
    backend: SandboxBackend | str | None = SandboxBackend.LOCAL
    candidates: tuple[str, ...] = (SandboxBackend.LOCAL.value,)
    backend_options: BackendOptions = field(default_factory=BackendOptions)
    egress: EgressPolicy | None = None
    """The session's egress policy (given as `network=EgressPolicy(...)`), or None."""

    COMMON: ClassVar[tuple[str, ...]] = (
        "lang",
        "verbose",
        "workdir",
        "default_timeout",
        "execution_timeout",
        "session_timeout",
        "logger",
        "network",
        "limits",
        "security_policy",
        "libraries",
        "env_vars",
        "encoding_errors",
        "skip_environment_setup",
        "stream",
    )
    """The fields a user sets directly (the rest are filled in by the registry)."""

    def __post_init__(self) -> None:
        if self.limits is None:  # `limits=None` means the default limits
            object.__setattr__(self, "limits", ResourceLimits())
        check_type(self.lang, str, "lang", "a language name such as 'python'")
        check_type(self.verbose, bool, "verbose", "True or False")
        if isinstance(self.network, EgressPolicy):
            object.__setattr__(self, "egress", self.network)
            object.__setattr__(self, "network", False)
        check_type(self.network, bool, "network", "True, False or an llm_sandbox.EgressPolicy")
        if self.egress is not None and not isinstance(self.egress, EgressPolicy):
            raise ConfigurationError("egress must be an llm_sandbox.EgressPolicy or None")
        if self.egress is not None and self.network:
            raise ConfigurationError(
                "an egress policy and the whole network exclude each other (network_mode='host' "
                "or network=True); drop one of them"
            )
        if self.egress is not None and getattr(self.backend_options, "container_id", None):
            raise ConfigurationError(
                "an egress policy needs a sandbox the session creates: an existing container "
                "(container_id=) keeps its own network; drop one of them"
            )
        for name in ("default_timeout", "execution_timeout", "session_timeout"):
            check_timeout(getattr(self, name), name)
        _check_workdir(self.workdir)
        if not isinstance(self.limits, ResourceLimits):
            raise ConfigurationError("limits must be a llm_sandbox.ResourceLimits instance")
        if self.logger is not None and not isinstance(self.logger, logging.Logger):
            raise ConfigurationError("logger must be a logging.Logger or None")
        object.__setattr__(self, "security_policy", _policy(self.security_policy))
        _check_libraries(self)
        check_environment(self.env_vars, "env_vars")
        check_type(self.skip_environment_setup, bool, "skip_environment_setup", "True or False")
        check_type(self.stream, bool, "stream", "True or False")
        if self.encoding_errors not in DECODING_ERRORS:
            raise ConfigurationError(
                f"encoding_errors={self.encoding_errors!r} is not a decoding mode; use one of "
                + ", ".join(DECODING_ERRORS)
            )

    @property
    def full_network(self) -> bool:
        """Whether the session has the whole network: `network=True`, a backend's
        `runtime_config` network mode other than "none", or an existing container's own
        network (`container_id=`); a policy is not that."""
        runtime_config = getattr(self.backend_options, "runtime_config", None) or {}
        mode = runtime_config.get("network_mode") if isinstance(runtime_config, Mapping) else None
        attached = getattr(self.backend_options, "container_id", None) is not None
        return self.network is True or mode not in (None, "none") or attached

    @classmethod
    def default(cls, name: str) -> object:
        """The default of the common option `name`."""
        return field_default(cls, name)

    @property
    def run_timeout(self) -> float | None:
        """The timeout of one run: `execution_timeout`, else `default_timeout`."""
        return (
            self.execution_timeout if self.execution_timeout is not None else self.default_timeout
        )

    @property
    def environment(self) -> Mapping[str, str]:
        """Environment variables the user asked for: `env_vars`, and the backend's own
        (e.g. `runtime_config["environment"]`), which wins where both name a variable."""
        return {**self.env_vars, **self.backend_options.environment}

    def options(self, kind: type[_Options]) -> _Options:
        """The backend options, as the class the backend reading them declared."""
        if not isinstance(self.backend_options, kind):
            raise ConfigurationError(
                f"the {self.backend_name} backend got {type(self.backend_options).__name__}, "
                f"not {kind.__name__}"
            )
        return self.backend_options

    @property
    def backend_name(self) -> str:
        """The backend's name, or the candidates' while the choice waits for `open()`."""
        return str(self.backend) if self.backend is not None else " or ".join(self.candidates)


DECODING_ERRORS = ("strict", "replace", "ignore", "surrogateescape", "backslashreplace")
"""Python's error handlers that can decode (xmlcharrefreplace only encodes)."""


def check_environment(value: object, name: str) -> None:
    """`value` maps variable names to string values."""
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k and "=" not in k and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigurationError(f"{name} must map variable names to strings, got {value!r}")


def _check_libraries(config: SessionConfig) -> None:
    libraries = config.libraries
    if libraries is None or isinstance(libraries, str):
        object.__setattr__(config, "libraries", () if libraries is None else (libraries,))
    elif not isinstance(libraries, tuple):
        if not isinstance(libraries, list) or not all(isinstance(x, str) for x in libraries):
            raise ConfigurationError(f"libraries must be a list of names, got {libraries!r}")
        object.__setattr__(config, "libraries", tuple(libraries))
    if config.libraries and config.skip_environment_setup:
        raise ConfigurationError(
            "libraries= cannot be installed with skip_environment_setup=True (nothing is set up); "
            "drop one of them, or use an image with the libraries in it"
        )


def _policy(policy: object) -> SecurityPolicy | None:
    """The policy itself, or one made from a dict of its fields (as 0.3 accepted)."""
    from llm_sandbox.security import SecurityPolicy

    if policy is None or isinstance(policy, SecurityPolicy):
        return policy
    if isinstance(policy, Mapping):
        return SecurityPolicy.model_validate(policy)
    raise ConfigurationError(
        "security_policy must be a llm_sandbox.security.SecurityPolicy (or a dict of its "
        "fields), e.g. get_security_policy('production')"
    )


def _check_workdir(workdir: object) -> None:
    if not isinstance(workdir, str) or not workdir.startswith("/") or ".." in workdir.split("/"):
        raise ConfigurationError(f"workdir must be an absolute path without '..', got {workdir!r}")
    normal = os.path.normpath(workdir)
    if normal in ("/", "/tmp") or any(
        normal == tree or normal.startswith(tree + "/") for tree in WORKDIR_SYSTEM_TREES
    ):
        raise ConfigurationError(f"workdir {workdir!r} is a system path; use e.g. '/sandbox'")
