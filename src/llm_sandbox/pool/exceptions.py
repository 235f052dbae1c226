"""The pool's errors (0.3.x: `llm_sandbox.pool.exceptions`), from our one exception tree."""

from llm_sandbox.exceptions import (
    DuplicateClientError,
    NotOpenSessionError,
    PoolClosedError,
    PoolExhaustedError,
    PoolHealthCheckError,
)

SessionNotOpenError = NotOpenSessionError
"""0.3.x raised this from a pooled session used before `open()`."""

__all__ = [
    "DuplicateClientError",
    "PoolClosedError",
    "PoolExhaustedError",
    "PoolHealthCheckError",
    "SessionNotOpenError",
]
