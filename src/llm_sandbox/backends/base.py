"""The backend protocol: the only thing a new backend implements.

A `Backend` opens a `Sandbox`. A sandbox runs an argv (`exec`) and moves files in and out as tar
streams; a running command is a `Process` that yields output chunks, can be killed (everything
it started, synchronously), and reports how it exited. Everything that is not I/O — choosing
commands, capping and decoding output, deadlines, policy — lives above this protocol, once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from llm_sandbox.exceptions import ControlUnavailableError, SandboxError, SandboxRuntimeError

if TYPE_CHECKING:
    from llm_sandbox.backends.wipe import WipeReport
    from llm_sandbox.config import SessionConfig
    from llm_sandbox.language_handlers.base import RuntimeNeeds

STDOUT = 1
STDERR = 2
KILL_GRACE = 1.0
"""Seconds `Process.kill` may take: a run returns within its timeout plus this."""
POLL_FOREVER = 3600.0
"""How long one read waits when a process has no deadline."""
INTERRUPT_POLL = 0.05
"""Seconds between looks at an `Interrupt` while a run waits for output."""


@dataclass(frozen=True)
class ExitStatus:
    """How a process ended: the exit code as the program returned it, and limits the kernel hit."""

    exit_code: int
    out_of_memory: bool = False


class NetworkGate(Protocol):
    """The session's egress gate for one command (see `llm_sandbox.egress`)."""

    def attach(self, pid: int) -> None:
        """Open the gate inside the network namespace of host process `pid`. A backend calls it
        once the command's namespace exists and before the command starts."""

    def serve(self, conn: socket.socket) -> None:
        """Serve one connection from inside the sandbox, relayed by the backend (sandboxes
        whose network namespace the gate cannot enter: see `egress.relay`)."""


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
    egress: NetworkGate | None = None
    """The command's only way out: a backend that cannot attach it must refuse the command
    (`ControlUnavailableError`), never run it with other network."""
    interactive: bool = False
    """Keep the command's stdin open: `exec` returns an `InteractiveProcess` whose `send`
    writes to it (`stdin` must be None). For long-lived processes such as kernels: the
    sandbox's clean-up between commands spares it and every process it starts, until it is
    killed or exits."""


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
        """Kill every process this command started; return only once they are all dead.

        Takes at most about KILL_GRACE seconds. Raises `SandboxRuntimeError` when their end
        cannot be confirmed in that time (the sandbox then finishes the kill before its next
        command), or when the sandbox itself is gone.
        """


class InteractiveProcess(Process):
    """A process started with `ExecRequest(interactive=True)`: its stdin stays open.

    `send` and `kill` may be called from another thread while one thread reads. `kill`
    kills this process and every process it started, and nothing else of the sandbox.
    """

    @abstractmethod
    def send(self, data: bytes) -> None:
        """Write `data` to the process's stdin (not an error once it is gone: `read` then
        reports the end)."""


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

    def alive(self) -> bool | None:
        """Whether the sandbox still runs, from a look that does no I/O but a non-blocking
        poll (microseconds): False once it is known dead, None when this cannot tell (then
        `check_alive` can). Pools ask it before handing out a sandbox that was idle."""
        return None

    def check_alive(self) -> None:
        """Raise SandboxRuntimeError, saying why, when the sandbox no longer runs (a full
        check: it may ask the engine or run a command)."""
        code, _, err = run_to_completion(self.exec(ExecRequest(argv=["true"])), timeout=10.0)
        if code != 0:
            raise SandboxRuntimeError(
                f"the sandbox does not run commands any more ({err.decode(errors='replace')})"
            )

    def warm_runs(self, env: Mapping[str, str]) -> str | None:
        """Make later Python runs with `env` cheap (a pooled sandbox asks): None once they
        are, else why not (they start plainly)."""
        return f"{type(self).__name__} has no fork server; each run starts its interpreter"

    def wipe(self) -> WipeReport:
        """Make the sandbox fit for another user (pools): kill every process the code
        started, delete everything it wrote anywhere writable but the libraries directory,
        and report what is left (see `llm_sandbox.backends.wipe`).

        A backend that cannot do this cannot be pooled: the default refuses.
        """
        raise ControlUnavailableError(
            f"{type(self).__name__} cannot wipe a sandbox between users, so it cannot be "
            "pooled; use SandboxSession without pool="
        )


class Backend(ABC):
    """Opens sandboxes of one kind (registered by name: `llm_sandbox.register_backend`)."""

    name: str

    @abstractmethod
    def open(self, config: SessionConfig, runtime: RuntimeNeeds) -> Sandbox:
        """Create a sandbox for one session.

        `config` holds the session's settings; `config.backend_options` is an instance of the
        options class this backend registered. `runtime` says what the language needs.
        """


class Interrupt:
    """A thread-safe request to stop a run, set from any thread (an event loop, a signal
    handler, a watchdog) while the thread that owns the run reads its output.

    The owning thread looks at it between reads (at least every INTERRUPT_POLL seconds) and
    then kills the run itself: `Process` is used by one thread only, so no backend needs
    to make its kill safe against a concurrent read. `reason` says who asked.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str = "the run was interrupted") -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


def read_to_end(
    process: Process,
    deadline: float | None,
    sink: Callable[[int, bytes], None],
    interrupt: Interrupt | None = None,
) -> bool:
    """Hand every output chunk to `sink(stream, data)` until the output ends (True), or the
    monotonic `deadline` passes or `interrupt` is set first (False; the process is left
    running)."""
    while True:
        remaining = POLL_FOREVER if deadline is None else deadline - time.monotonic()
        if remaining <= 0 or (interrupt is not None and interrupt.is_set()):
            return False
        if interrupt is not None:
            remaining = min(remaining, INTERRUPT_POLL)
        chunk = process.read(remaining)
        if chunk is None:
            continue
        stream, data = chunk
        if stream == 0:
            return True
        sink(stream, data)


class KillUnconfirmed(SandboxRuntimeError):
    """Every process was sent SIGKILL, but not all were seen to exit within KILL_GRACE."""


class InternalTimeout(SandboxRuntimeError):
    """One of our own commands in the sandbox did not finish in time."""


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
        raise InternalTimeout(f"an internal sandbox command did not finish within {timeout} s")
    return process.wait().exit_code, b"".join(out), b"".join(err)


@contextlib.contextmanager
def untranslated(action: str) -> Iterator[None]:
    """The last line of translation, where the session calls a backend.

    Backends translate their vendors' errors themselves; one they let through (an OSError
    from a socket, a websocket or SDK error) still reaches the caller as ours:
    `SandboxRuntimeError`, with the original chained. Our errors pass unchanged, and so does
    `FileNotFoundError` for a path that does not exist (a documented answer, not a fault).
    """
    try:
        yield
    except (SandboxError, FileNotFoundError):
        raise
    except Exception as exc:
        raise SandboxRuntimeError(f"{action} failed: {type(exc).__name__}: {exc}") from exc


class GuardedProcess(Process):
    """A backend's process whose untranslated errors become ours (see `untranslated`)."""

    def __init__(self, process: Process) -> None:
        self._process = process

    def read(self, timeout: float) -> tuple[int, bytes] | None:
        with untranslated("reading the command's output"):
            return self._process.read(timeout)

    def wait(self) -> ExitStatus:
        with untranslated("reading the command's exit status"):
            return self._process.wait()

    def kill(self) -> None:
        with untranslated("killing the command"):
            self._process.kill()
