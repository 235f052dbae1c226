"""Errors as JSON: `{"error": {"code": "...", "message": "..."}}` with a stable code.

`ApiError` is raised by handlers; `from_sandbox_error` maps our library's exceptions to a status
and code once, here, so every endpoint answers the same way.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

from llm_sandbox import exceptions as exc


class ApiError(Exception):
    """An error answered as JSON with `status`, a stable `code`, and a message naming the fix."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": self.code, "message": self.message}},
            status_code=self.status,
            headers=self.headers,
        )


_MAPPING: list[tuple[type[BaseException], int, str]] = [
    (exc.LanguageNotSupportedError, 400, "unknown_language"),
    (exc.SecurityViolationError, 400, "security_violation"),
    (exc.InvalidPackageError, 400, "invalid_package"),
    (exc.ValidationError, 400, "invalid_option"),
    (exc.SandboxFileNotFoundError, 404, "file_not_found"),
    (exc.UnsafeArchiveError, 400, "unsafe_archive"),
    (exc.SandboxTimeoutError, 408, "timeout"),
    (exc.SandboxInterruptedError, 409, "interrupted"),
    (exc.BackendUnavailableError, 503, "backend_unavailable"),
    (exc.PackageInstallError, 422, "install_failed"),
    (exc.SessionStateError, 409, "session_closed"),
    (exc.ContainerError, 502, "sandbox_failed"),
    (exc.SandboxRuntimeError, 502, "sandbox_failed"),
    (exc.SandboxError, 500, "sandbox_error"),
]


def from_sandbox_error(error: exc.SandboxError) -> ApiError:
    """The HTTP answer for one of the library's errors."""
    for cls, status, code in _MAPPING:
        if isinstance(error, cls):
            message = str(error)
            if status == 503:
                message = f"the sandbox backend is unavailable: {message}"
            return ApiError(status, code, message)
    return ApiError(500, "sandbox_error", str(error))  # pragma: no cover - SandboxError is last
