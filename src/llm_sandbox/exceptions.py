"""Every error LLM Sandbox raises, under one root.

```
SandboxError
├── ConfigurationError (ValueError)        an option is unknown, malformed or inapplicable
│   ├── LanguageNotSupportedError          `lang` names no registered handler
│   ├── UnsupportedBackendError            `backend` names no registered backend
│   └── InvalidPackageError                a library name that could smuggle options or shell
├── UnsafeArchiveError (ValueError)        a tar stream from a sandbox tried to escape
├── BackendUnavailableError (RuntimeError) the backend cannot run here (tool/extra/daemon)
│   └── ControlUnavailableError            a requested control cannot be applied (fail closed)
├── ImageBuildError (RuntimeError)         a default image or a dockerfile could not be built
├── ImagePullError (RuntimeError)          an image could not be pulled (image, registry, error)
│   ├── ImageNotFoundError (ConfigurationError)  the registry has no such image or tag
│   ├── RegistryUnreachableError (ConnectionError) the registry did not answer, or stalled
│   └── RegistryAuthError (PermissionError)      the registry refused the engine's credentials
├── SessionStateError (RuntimeError)       run before open, run after close, ...
├── SecurityViolationError                 the code broke the session's security policy; not run
├── SandboxTimeoutError (TimeoutError)     a run or the session ran out of time; all killed
├── SandboxRuntimeError (RuntimeError)     the sandbox itself failed (not the user's program)
│   └── PodStartError                      a Kubernetes pod did not start (reason, events)
└── PackageInstallError                    installing libraries failed (exit code, output kept)
```

A program that exits non-zero is *not* an error: its exit code is reported in the result.
Errors that carry output (timeouts, install failures) keep it in fields so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Sequence


class SandboxError(Exception):
    """Root of every error raised by llm_sandbox."""


class ConfigurationError(SandboxError, ValueError):
    """An option is unknown, malformed, or does not apply to the chosen backend."""


class LanguageNotSupportedError(ConfigurationError):
    """`lang` names no registered language handler."""


class UnsupportedBackendError(ConfigurationError):
    """`backend` names no registered backend."""


class InvalidPackageError(ConfigurationError):
    """A library name was rejected before anything ran."""


class UnsafeArchiveError(SandboxError, ValueError):
    """A tar stream coming out of a sandbox tried to write outside its destination."""


class BackendUnavailableError(SandboxError, RuntimeError):
    """The backend cannot run on this machine (missing tool, missing extra, unreachable daemon)."""


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


class SessionStateError(SandboxError, RuntimeError):
    """The session was used in a state that does not allow it (not open, already closed)."""


class SandboxRuntimeError(SandboxError, RuntimeError):
    """The sandbox machinery failed; the user's program may not have run at all."""


class SandboxTimeoutError(SandboxError, TimeoutError):
    """A run exceeded its timeout, or the session outlived `session_timeout`.

    By the time this is raised every process the run started has been killed. Output produced
    before the deadline is kept in `stdout` and `stderr`.
    """

    def __init__(
        self,
        message: str,
        *,
        timeout: float | None = None,
        stdout: str = "",
        stderr: str = "",
        session_expired: bool = False,
    ) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.stdout = stdout
        self.stderr = stderr
        self.session_expired = session_expired


class SecurityViolationError(SandboxError):
    """The code violates the session's security policy at or above its threshold; it did not run.

    `violations` lists every blocking finding (what matched, where, how severe).
    """

    def __init__(self, message: str, *, violations: Sequence[object]) -> None:
        super().__init__(message)
        self.violations = list(violations)


class PackageInstallError(SandboxError):
    """Installing libraries into the sandbox failed."""

    def __init__(self, message: str, *, exit_code: int, stdout: str = "", stderr: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr


class PodStartError(SandboxRuntimeError):
    """A session pod did not start: image pull, scheduling, quota, deadline. Deleted since."""

    def __init__(self, message: str, *, pod: str, reason: str, events: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.pod = pod
        self.reason = reason
        self.events = list(events)
