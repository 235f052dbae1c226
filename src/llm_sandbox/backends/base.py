"""The backend protocol: the only thing a new backend implements.

A `Backend` opens a `Sandbox`. A sandbox runs an argv (`exec`) and moves files in and out as tar
streams; a running command is a `Process` that yields output chunks, can be killed (everything
it started, synchronously), and reports how it exited. Everything that is not I/O — choosing
commands, capping and decoding output, deadlines, policy — lives above this protocol, once.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from llm_sandbox.exceptions import SandboxRuntimeError

if TYPE_CHECKING:
    from llm_sandbox.config import SessionConfig
    from llm_sandbox.language_handlers.base import RuntimeNeeds

STDOUT = 1
STDERR = 2
POLL_FOREVER = 3600.0
"""How long one read waits when a process has no deadline."""


@dataclass(frozen=True)
class ExitStatus:
    """How a process ended: the exit code as the program returned it, and limits the kernel hit."""

    exit_code: int
    out_of_memory: bool = False


@dataclass(frozen=True)
class ExecRequest:
    """One command to run in a sandbox."""

    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    stdin: bytes | None = None
    files: Mapping[str, bytes] = field(default_factory=dict)
    """Files (absolute path → content) placed read-only before the command starts."""
    network: bool = False
    """Give this command network access (e.g. a package install) whatever the session default."""
    writable_libs: bool = False
    """Let this command write the libraries directory (only installs need it)."""


class Process(ABC):
    """A running command. Not thread-safe; one reader at a time."""

    @abstractmethod
    def read(self, timeout: float) -> tuple[int, bytes] | None:
        """Next output chunk as `(STDOUT|STDERR, data)`.

        Returns `(0, b"")` once all output has ended, and `None` when nothing arrived within
        `timeout` seconds.
        """

    @abstractmethod
    def wait(self) -> ExitStatus:
        """Wait for the command to finish (call after output ended) and report how it exited."""

    @abstractmethod
    def kill(self) -> None:
        """Kill every process this command started; return only once they are all dead."""


class Sandbox(ABC):
    """An open sandbox. `close()` must be safe to call more than once."""

    committed_image: str | None = None
    """The image a container sandbox was saved as when it closed (commit_container=True)."""

    def handle(self) -> object | None:
        """The backend's own object for this sandbox (e.g. the SDK's container), if any."""
        return None

    @abstractmethod
    def exec(self, request: ExecRequest) -> Process:
        """Start `request.argv` inside the sandbox."""

    @abstractmethod
    def put_archive(self, dest_dir: str, data: bytes) -> None:
        """Unpack a tar stream into the existing sandbox directory `dest_dir`."""

    @abstractmethod
    def get_archive(self, path: str) -> bytes:
        """A tar stream of `path` (file or directory) whose single top-level entry is its name."""

    @abstractmethod
    def close(self) -> None:
        """Tear the sandbox down, killing everything in it and deleting its files."""


class Backend(ABC):
    """Opens sandboxes of one kind (registered by name: `llm_sandbox.register_backend`)."""

    name: str

    @abstractmethod
    def open(self, config: SessionConfig, runtime: RuntimeNeeds) -> Sandbox:
        """Create a sandbox for one session.

        `config` holds the session's settings; `config.backend_options` is an instance of the
        options class this backend registered. `runtime` says what the language needs.
        """


def read_to_end(
    process: Process, deadline: float | None, sink: Callable[[int, bytes], None]
) -> bool:
    """Hand every output chunk to `sink(stream, data)` until the output ends (True) or the
    monotonic `deadline` passes first (False; the process is left running)."""
    while True:
        remaining = POLL_FOREVER if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            return False
        chunk = process.read(remaining)
        if chunk is None:
            continue
        stream, data = chunk
        if stream == 0:
            return True
        sink(stream, data)


def run_to_completion(process: Process, timeout: float = 60.0) -> tuple[int, bytes, bytes]:
    """Drain a process used internally (tar, mkdir); returns exit code, stdout, stderr."""
    out: list[bytes] = []
    err: list[bytes] = []
    if not read_to_end(
        process,
        time.monotonic() + timeout,
        lambda stream, data: (out if stream == STDOUT else err).append(data),
    ):
        process.kill()
        raise SandboxRuntimeError(f"an internal sandbox command did not finish within {timeout} s")
    return process.wait().exit_code, b"".join(out), b"".join(err)
