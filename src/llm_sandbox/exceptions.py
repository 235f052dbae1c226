"""Every error LLM Sandbox raises, under one root.

```
SandboxError
├── ValidationError (ValueError)            bad input: the previous generation's name for the family
│   └── ConfigurationError                  an option is unknown, malformed or inapplicable
│       ├── ExtraArgumentsError             an option that no session or backend knows
│       ├── LanguageNotSupportedError       `lang` names no registered handler
│       ├── LanguageNotSupportPlotError     plots asked of a language without plot capture
│       ├── UnsupportedBackendError         `backend` names no registered backend
│       ├── CommandEmptyError               an empty command line
│       ├── InvalidRegexPatternError        a security pattern that is not a regular expression
│       └── InvalidPackageError             a library name that could smuggle options or shell
│           ├── PackageManagerError         the language has no package manager to install with
│           └── LibraryInstallationNotSupportedError  installs refused for this language/session
│       └── DuplicateClientError            client= given to a pooled session (the pool has one)
├── SecurityError                           a safety rule refused something
│   ├── SecurityViolationError              the code broke the session's policy; not run
│   └── UnsafeArchiveError (ValueError)     a tar stream from a sandbox tried to escape
├── ResourceError                           reserved: never raised (limits are results: `verdict`)
├── BackendUnavailableError (RuntimeError)  the backend cannot run here (tool/extra/daemon)
│   ├── MissingDependencyError (ImportError) the backend's SDK is not installed
│   └── ControlUnavailableError             a requested control cannot be applied (fail closed)
├── ImageBuildError (RuntimeError)          a default image or a dockerfile could not be built
├── ImagePullError (RuntimeError)           an image could not be pulled (image, registry, error)
│   ├── ImageNotFoundError (ConfigurationError)  the registry has no such image or tag
│   ├── RegistryUnreachableError (ConnectionError) the registry did not answer, or stalled
│   └── RegistryAuthError (PermissionError)      the registry refused the engine's credentials
├── SessionStateError (RuntimeError)        run before open, run after close, ...
│   ├── NotOpenSessionError                 the session is not open
│   ├── PoolClosedError                     the pool was closed
│   └── LanguageHandlerNotInitializedError  the session has no language handler
├── SandboxTimeoutError (TimeoutError)      a run or the session ran out of time; all killed
│   └── CellTimeoutError                    a cell of an interactive session ran out of time
├── SandboxInterruptedError                 a run was stopped from outside (interrupt(), the
│                                           async API's close); all killed
├── PoolExhaustedError                      every pooled sandbox is busy (and the wait ran out)
├── SandboxRuntimeError (RuntimeError)      the sandbox itself failed (not the user's program)
│   ├── PoolHealthCheckError                a pooled sandbox failed its wipe or health check
│   ├── ContainerError                      the container or pod failed or is gone
│   │   └── PodStartError                   a Kubernetes pod did not start (reason, events)
│   ├── KernelError                         an interactive kernel did not start or broke down
│   └── OutputDecodeError (ValueError)      encoding_errors="strict" and the output is not UTF-8
├── CommandFailedError                      one of our commands failed (command, exit code, output)
│   └── PackageInstallError                 installing libraries failed (exit code, output kept)
└── SandboxFileNotFoundError (FileNotFoundError)  a path to copy does not exist in the sandbox
```

A program that exits non-zero is *not* an error: its exit code is reported in the result.
Errors that carry output (timeouts, install failures) keep it in fields so nothing is lost.
The classes of the previous generation (0.3.x) keep their names and constructor arguments
(`LanguageNotSupportedError(lang)`, `CommandFailedError(command, exit_code, output)`, ...).
"""

from __future__ import annotations

from collections.abc import Sequence


class SandboxError(Exception):
    """Root of every error raised by llm_sandbox."""


# --- bad input ----------------------------------------------------------------------------------
class ValidationError(SandboxError, ValueError):
    """Input that cannot be accepted (an option, a name, a pattern)."""


class ConfigurationError(ValidationError):
    """An option is unknown, malformed, or does not apply to the chosen backend."""


class ExtraArgumentsError(ConfigurationError):
    """An option that neither the session nor the chosen backend understands."""


def _named(cls_message: str, name: str | None, message: str | None) -> str:
    return message if message is not None else cls_message.format(name)


class LanguageNotSupportedError(ConfigurationError):
    """`lang` names no registered language handler."""

    def __init__(self, lang: str, message: str | None = None) -> None:
        super().__init__(_named("Language {} is not supported", lang, message))
        self.lang = lang


class LanguageNotSupportPlotError(ConfigurationError):
    """Plot capture was asked of a language that has none."""

    def __init__(self, lang: str, message: str | None = None) -> None:
        super().__init__(_named("Language {} does not support plot detection", lang, message))
        self.lang = lang


class UnsupportedBackendError(ConfigurationError):
    """`backend` names no registered backend."""

    def __init__(self, backend: str, message: str | None = None) -> None:
        super().__init__(_named("Unsupported backend: {}", backend, message))
        self.backend = backend


class CommandEmptyError(ConfigurationError):
    """An empty command line was given to `execute_command`."""

    def __init__(self, message: str = "Command cannot be empty") -> None:
        super().__init__(message)


class InvalidRegexPatternError(ConfigurationError):
    """A security pattern is not a valid regular expression."""

    def __init__(self, pattern: str, detail: str | None = None) -> None:
        message = f"Invalid regex pattern: {pattern}"
        super().__init__(f"{message} ({detail})" if detail else message)
        self.pattern = pattern


class InvalidPackageError(ConfigurationError):
    """A library name was rejected before anything ran."""


class PackageManagerError(InvalidPackageError):
    """The language has no package manager to install libraries with."""

    def __init__(self, package_manager: str, message: str | None = None) -> None:
        super().__init__(_named("Package manager {} not found", package_manager, message))
        self.package_manager = package_manager


class LibraryInstallationNotSupportedError(InvalidPackageError):
    """Libraries cannot be installed for this language or in this session."""

    def __init__(self, lang: str, message: str | None = None) -> None:
        super().__init__(_named("Library installation is not supported for {}", lang, message))
        self.lang = lang


# --- safety ---------------------------------------------------------------------------------------
class SecurityError(SandboxError):
    """A safety rule refused something (the code, a path, an archive)."""


class SecurityViolationError(SecurityError):
    """The code violates the session's security policy at or above its threshold; it did not run.

    `violations` lists every blocking finding (what matched, where, how severe).
    """

    def __init__(self, message: str, *, violations: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.violations = list(violations)


class UnsafeArchiveError(SecurityError, ValueError):
    """A tar stream coming out of a sandbox tried to write outside its destination."""


class ResourceError(SandboxError):
    """Reserved (the previous generation never raised it): a run that hits a limit is a result
    with a `verdict`, not an error."""


# --- the machine ----------------------------------------------------------------------------------
class BackendUnavailableError(SandboxError, RuntimeError):
    """The backend cannot run on this machine (missing tool, missing extra, unreachable daemon)."""


class MissingDependencyError(BackendUnavailableError, ImportError):
    """The backend needs a Python package that is not installed (the message names the extra)."""


class ControlUnavailableError(BackendUnavailableError):
    """A requested isolation control cannot be applied, so the sandbox refuses to open."""


class ImageBuildError(SandboxError, RuntimeError):
    """An image (a default image, or the session's dockerfile) could not be built."""


class ImagePullError(SandboxError, RuntimeError):
    """An image is not available locally and pulling it from its registry failed.

    `image` is the name as given, `registry` the registry it was pulled from (Docker's rule:
    the first part of the name when it looks like a host, else docker.io), `error` what the
    engine answered. The subclasses say why, when the answer shows it.
    """

    hint = (
        "check the name and the registry, or build or load the image locally "
        "(docker build / docker load, or pass dockerfile=)"
    )

    def __init__(self, image: str, error: str = "", *, registry: str | None = None) -> None:
        if registry is None:
            from llm_sandbox.images.naming import registry_of

            registry = registry_of(image)
        self.image = image
        self.error = error
        self.registry = registry
        super().__init__(self._message())

    def _message(self) -> str:
        why = f": {self.error}" if self.error else ""
        image, registry = self.image, self.registry
        return f"could not pull image {image!r} from registry {registry}{why}; {self.hint}"


class ImageNotFoundError(ImagePullError, ConfigurationError):
    """The registry has no such image, or no such tag of it."""

    def _message(self) -> str:
        why = f" ({self.error})" if self.error else ""
        return (
            f"image {self.image!r} was not found on registry {self.registry}{why}; check the "
            "repository name and tag, or build the image locally (docker build, or dockerfile=)"
        )


class RegistryUnreachableError(ImagePullError, ConnectionError):
    """The registry could not be reached, or stopped answering during the pull."""

    def _message(self) -> str:
        why = f" ({self.error})" if self.error else ""
        return (
            f"cannot pull {self.image!r}: registry {self.registry} is not reachable{why}; check "
            "its address, its TLS (the engine must list a registry without TLS as insecure), "
            "the engine's network and proxy settings, or load the image locally (docker load / "
            "podman load)"
        )


class RegistryAuthError(ImagePullError, PermissionError):
    """The registry refused access: no credentials, wrong ones, or no right to the image."""

    def _message(self) -> str:
        why = f" ({self.error})" if self.error else ""
        return (
            f"registry {self.registry} refused to let us pull {self.image!r}{why}; log in with "
            f"`docker login {self.registry}` (Docker: ~/.docker/config.json) or `podman login "
            f"{self.registry}` (the Podman service's auth file), and check that the account may "
            "read this repository"
        )


# --- lifecycle ------------------------------------------------------------------------------------
class SessionStateError(SandboxError, RuntimeError):
    """The session was used in a state that does not allow it (not open, already closed)."""


class NotOpenSessionError(SessionStateError):
    """The session is not open: call `open()` or use `with`."""

    def __init__(self, message: str = "the session is not open; call open() or use `with`") -> None:
        super().__init__(message)


class LanguageHandlerNotInitializedError(SessionStateError):
    """The session has no language handler."""

    def __init__(self, language: str, message: str | None = None) -> None:
        super().__init__(_named("Language handler for {} is not initialized.", language, message))
        self.language = language


class SandboxTimeoutError(SandboxError, TimeoutError):
    """A run exceeded its timeout, or the session outlived `session_timeout`.

    By the time this is raised every process the run started has been killed
    (`processes_killed`); in the rare case where their end could not be confirmed in time
    (a process stuck in the kernel, a sandbox that stopped answering), `processes_killed` is
    False, the message says why, and the next command waits for them first. Output produced
    before the deadline is kept in `stdout` and `stderr`. `timeout_duration` is the previous
    generation's name for `timeout`.
    """

    def __init__(
        self,
        message: str,
        timeout_duration: float | None = None,
        *,
        timeout: float | None = None,
        stdout: str = "",
        stderr: str = "",
        session_expired: bool = False,
        processes_killed: bool = True,
    ) -> None:
        super().__init__(message)
        self.timeout = timeout if timeout is not None else timeout_duration
        self.timeout_duration = self.timeout
        self.stdout = stdout
        self.stderr = stderr
        self.session_expired = session_expired
        self.processes_killed = processes_killed


class CellTimeoutError(SandboxTimeoutError):
    """A cell of an interactive session ran past its timeout.

    The cell was interrupted the language's own way (KeyboardInterrupt in Python). When it
    stopped within the grace period the kernel kept its state (`kernel_restarted` False);
    otherwise every process of the kernel was killed and a fresh kernel started
    (`kernel_restarted` True: variables, imports and functions are gone). What the cell
    produced before is kept: `stdout`, `stderr`, `results` (MIME bundles), `execution_count`.
    """

    def __init__(
        self,
        message: str,
        *,
        timeout: float | None,
        kernel_restarted: bool,
        stdout: str = "",
        stderr: str = "",
        results: Sequence[dict[str, object]] = (),
        execution_count: int | None = None,
    ) -> None:
        super().__init__(message, timeout=timeout, stdout=stdout, stderr=stderr)
        self.kernel_restarted = kernel_restarted
        self.results = list(results)
        self.execution_count = execution_count


class SandboxInterruptedError(SandboxError):
    """A command was stopped from outside before it finished: `SandboxSession.interrupt()`
    from another thread, or an async session closed while the command ran.

    Every process the command started has been killed (`processes_killed`; when that could
    not be confirmed, the message says why and the next command waits for them). The session
    stays usable. Output produced before the interrupt is kept in `stdout` and `stderr`.
    (Cancelling the task that awaits an async run raises the event loop's own cancellation
    instead, after the same kill.)
    """

    def __init__(
        self,
        message: str,
        *,
        stdout: str = "",
        stderr: str = "",
        processes_killed: bool = True,
    ) -> None:
        super().__init__(message)
        self.stdout = stdout
        self.stderr = stderr
        self.processes_killed = processes_killed


class SandboxRuntimeError(SandboxError, RuntimeError):
    """The sandbox machinery failed; the user's program may not have run at all."""


class ContainerError(SandboxRuntimeError):
    """The session's container or pod failed, stopped or cannot be reached."""


class PodStartError(ContainerError):
    """A session pod did not start: image pull, scheduling, quota, deadline. Deleted since."""

    def __init__(self, message: str, *, pod: str, reason: str, events: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.pod = pod
        self.reason = reason
        self.events = list(events)


class KernelError(SandboxRuntimeError):
    """An interactive kernel could not start, or its runner broke the protocol.

    `language` is the kernel's language; `package` names what to install when a missing
    package is the cause (e.g. "ipython"); `output` is what the runner printed (its tail).
    """

    def __init__(
        self, message: str, *, language: str = "", package: str | None = None, output: str = ""
    ) -> None:
        super().__init__(message)
        self.language = language
        self.package = package
        self.output = output


class OutputDecodeError(SandboxRuntimeError, ValueError):
    """With `encoding_errors="strict"`, the program's output was not valid UTF-8.

    The run itself finished: `exit_code` is its exit code, `raw_stdout`/`raw_stderr` the bytes
    as produced, and `stdout`/`stderr` the same decoded with replacement characters.
    """

    def __init__(
        self,
        message: str,
        *,
        exit_code: int,
        raw_stdout: bytes,
        raw_stderr: bytes,
        stdout: str,
        stderr: str,
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.raw_stdout = raw_stdout
        self.raw_stderr = raw_stderr
        self.stdout = stdout
        self.stderr = stderr


class CommandFailedError(SandboxError):
    """A command we ran for the user (an install, a set-up step) failed.

    `command`, `exit_code` and `output` (stderr, else stdout) as in the previous generation;
    `stdout` and `stderr` keep both streams.
    """

    def __init__(
        self,
        command: str,
        exit_code: int,
        output: str,
        *,
        message: str | None = None,
        stdout: str = "",
        stderr: str = "",
    ) -> None:
        super().__init__(
            message or f"Command {command} failed with exit code {exit_code}:\n{output}"
        )
        self.command = command
        self.exit_code = exit_code
        self.output = output
        self.stdout = stdout
        self.stderr = stderr


class PackageInstallError(CommandFailedError):
    """Installing libraries into the sandbox failed."""

    def __init__(
        self, message: str, *, exit_code: int, stdout: str = "", stderr: str = "", command: str = ""
    ) -> None:
        super().__init__(
            command, exit_code, stderr or stdout, message=message, stdout=stdout, stderr=stderr
        )


class SandboxFileNotFoundError(SandboxError, FileNotFoundError):
    """A path given to a copy does not exist in the sandbox (or on the host)."""


# --- pools --------------------------------------------------------------------------------------
class PoolExhaustedError(SandboxError):
    """Every sandbox of the pool is busy and no more may be created (FAIL_FAST), or the wait
    for one ran out (`acquisition_timeout`)."""

    def __init__(self, pool_size: int, timeout: float | None = None) -> None:
        message = f"All {pool_size} containers in pool are busy"
        if timeout is not None:
            message += f" and timeout of {timeout}s exceeded"
        super().__init__(
            f"{message}; raise PoolConfig(max_pool_size=...) or acquisition_timeout, or use "
            "exhaustion_strategy=ExhaustionStrategy.TEMPORARY"
        )
        self.pool_size = pool_size
        self.timeout = timeout


class PoolClosedError(SessionStateError):
    """The pool has been closed: it hands out nothing more."""

    def __init__(self, message: str = "Container pool has been closed") -> None:
        super().__init__(message)


class PoolHealthCheckError(SandboxRuntimeError):
    """A pooled sandbox failed its wipe or health check (it is destroyed, never handed out),
    or a sandbox of this kind cannot be made fit for pooling."""

    def __init__(self, container_id: str, reason: str) -> None:
        super().__init__(f"Health check failed for container {container_id}: {reason}")
        self.container_id = container_id
        self.reason = reason


class DuplicateClientError(ConfigurationError):
    """`client=` given to a pooled session: the pool's own client is used."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "Cannot specify 'client' parameter when using pooling mode: the pool's sandboxes "
            "were made with the pool's client; pass client= to create_pool_manager instead"
        )
