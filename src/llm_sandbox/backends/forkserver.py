"""Warm Python runs: a fork server per pooled sandbox, on every backend.

A plain run starts an interpreter (about 100 ms on the embedded backend, where it also starts
bwrap and fresh namespaces; an exec and a start-up in a container). A pooled sandbox instead
keeps one interpreter that has done its start-up (`zygote`), started like a run of that sandbox
(same mounts, seccomp filter, limits, environment, no network), and forks a child per run: the
child gets its own session, the run's argv, working directory and a fresh `__main__`, and
follows CPython's exit rules. When it exits, everything it started is killed before the run is
reported ended; a kill kills the same way; a server that does not answer in time is killed
whole, and one that the code killed gets everything it left killed by the sandbox: either way
a new server starts for the next run.

Only what a plain start would run the same is forked: `python3 <code file> [args]` with the
server's environment, no stdin, no network, no egress gate, no library install. Anything else
starts plainly. Differences a program can see: modules the interpreter imported at start-up
(and ctypes, json, typing, importlib.machinery) are already loaded, the string hash seed is the
server's (a new server starts after every wipe, so users never share one), and the memory limit
also holds the server's own ~10 MiB.
"""

from __future__ import annotations

import contextlib
import json
import logging
import posixpath
import struct
import threading
import time
from collections.abc import Callable, Mapping
from importlib import resources

from llm_sandbox.backends.base import (
    KILL_GRACE,
    STDERR,
    STDOUT,
    ExecRequest,
    ExitStatus,
    InteractiveProcess,
    Process,
)
from llm_sandbox.exceptions import SandboxError, SandboxRuntimeError
from llm_sandbox.language_handlers.base import CODE_DIR

logger = logging.getLogger("llm_sandbox")

START_TIMEOUT = 30.0
ANSWER_TIMEOUT = 0.5
"""How long a kill waits for the server's end frame before the server is killed whole."""
PYTHONS = ("python3", "python")
ZYGOTE = resources.files("llm_sandbox.backends").joinpath("zygote.py").read_text()
_HEADER = struct.Struct(">cI")

Starter = Callable[[ExecRequest], InteractiveProcess]
"""Starts the server (a kernel-like process: stdin open, killed whole by `kill`)."""


class _Frames:
    """Frames from the server's stdout, whatever the chunking."""

    def __init__(self, process: InteractiveProcess) -> None:
        self._process = process
        self._buffer = b""
        self.ended = False

    def next(self, timeout: float) -> tuple[bytes, bytes] | None:
        """The next frame; None on timeout; (b"", b"") once the server's output ended."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self._buffer) >= _HEADER.size:
                kind, size = _HEADER.unpack_from(self._buffer)
                end = _HEADER.size + size
                if len(self._buffer) > end:  # and the frame's closing newline
                    data = self._buffer[_HEADER.size : end]
                    self._buffer = self._buffer[end + 1 :]
                    return kind, data
            if self.ended:
                return b"", b""
            try:
                chunk = self._process.read(max(0.0, deadline - time.monotonic()))
            except SandboxError as exc:
                logger.debug("the fork server's connection ended: %s", exc)
                chunk = (0, b"")
            if chunk is None:
                return None
            stream, data = chunk
            if stream == 0 and not data:
                self.ended = True
            elif stream == STDERR:
                logger.warning("fork server: %s", data.decode(errors="replace").rstrip())
            else:
                self._buffer += data


class ForkServer:
    """One warm interpreter of a sandbox; `run` forks it, or says None (start plainly).

    `mode` and `clean` are the zygote's (see `zygote`); `on_lost` kills whatever a run left
    when the server died under it (the code killed it)."""

    def __init__(
        self,
        start: Starter,
        env: Mapping[str, str],
        workdir: str,
        *,
        mode: str,
        clean: str = "-",
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self._start = start
        self.env = dict(env)
        self._workdir = workdir
        self._argv = ["python3", "-c", ZYGOTE, mode, clean]
        self._on_lost = on_lost
        self._process: InteractiveProcess | None = None
        self._frames: _Frames | None = None
        self._busy = False
        self._closed = False
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        """Closed with its sandbox: it never starts again."""
        return self._closed

    @property
    def process(self) -> InteractiveProcess | None:
        return self._process

    def eligible(self, request: ExecRequest) -> bool:
        argv = list(request.argv)
        return (
            len(argv) >= 2
            and posixpath.basename(argv[0]) in PYTHONS
            and argv[1].startswith(f"{CODE_DIR}/")
            and argv[1].endswith(".py")
            and set(request.files) == {argv[1]}
            and request.stdin is None
            and not (request.network or request.writable_libs or request.interactive)
            and request.egress is None
            and dict(request.env) == self.env
        )

    def warm(self) -> None:
        """Start the server now (it also starts on the first run that needs it)."""
        with self._lock:
            self._ensure()

    def _ensure(self) -> InteractiveProcess:
        if self._closed:
            raise SandboxRuntimeError("the fork server's sandbox is closed")
        if self._process is not None and self._frames is not None and not self._frames.ended:
            return self._process
        self._stop()
        request = ExecRequest(argv=self._argv, env=self.env, interactive=True)
        process = self._start(request)
        frames = _Frames(process)
        frame = frames.next(START_TIMEOUT)
        if frame is None or frame[0] != b"r":
            with contextlib.suppress(SandboxError):
                process.kill()
            raise SandboxRuntimeError(f"the fork server did not start (it said {frame!r})")
        self._process, self._frames = process, frames
        return process

    def run(self, request: ExecRequest, check_oom: Callable[[], bool]) -> Process | None:
        """Fork `request` if it is eligible and the server is free, else None.
        `check_oom()` says whether the sandbox's OOM kills grew since it was last asked (as
        for a plain run, asked only when the run was SIGKILLed)."""
        if not self.eligible(request):
            return None
        with self._lock:
            if self._busy:
                return None
            try:
                process = self._ensure()
            except SandboxError as exc:
                logger.warning("%s; this run starts plainly", exc)
                return None
            argv = list(request.argv)
            body = json.dumps(
                {
                    "argv": argv,
                    "path": argv[1],
                    "source": request.files[argv[1]].decode("utf-8", "surrogateescape"),
                    "cwd": request.cwd or self._workdir,
                }
            ).encode()
            self._busy = True
            process.send(b"R %d\n" % len(body) + body)
            assert self._frames is not None
            return _ForkedRun(self, self._frames, check_oom)

    def _done(self) -> None:
        self._busy = False

    def _lost(self) -> None:
        """The server died during a run: kill what the run left, drop the server."""
        try:
            self._on_lost()
        finally:
            with self._lock:
                self._stop()

    def send(self, data: bytes) -> None:
        if self._process is not None:
            self._process.send(data)

    def stop(self) -> None:
        """Stop the server; the next run that needs it starts a new one."""
        with self._lock:
            self._stop()

    def close(self) -> None:
        """Stop the server for good (its sandbox is closing)."""
        with self._lock:
            self._closed = True
            self._stop()

    def _stop(self) -> None:
        process, self._process, self._frames = self._process, None, None
        self._busy = False
        if process is not None:
            try:
                process.kill()
            finally:
                with contextlib.suppress(SandboxError):
                    process.wait()


class _ForkedRun(Process):
    def __init__(self, server: ForkServer, frames: _Frames, check_oom: Callable[[], bool]) -> None:
        self._server = server
        self._frames = frames
        self._check_oom = check_oom
        self._exit_code: int | None = None
        self._finished: ExitStatus | None = None

    def read(self, timeout: float) -> tuple[int, bytes] | None:
        if self._exit_code is not None:
            return 0, b""
        frame = self._frames.next(timeout)
        if frame is None:
            return None
        kind, data = frame
        if kind == b"o":
            return STDOUT, data
        if kind == b"e":
            return STDERR, data
        if kind == b"x":
            self._exit_code = int(data)
            return 0, b""
        self._end_without_answer(data.decode(errors="replace") if kind == b"f" else "")
        return 0, b""

    def _end_without_answer(self, failure: str) -> None:
        """The server failed or died during the run (the code killed it, or the OOM killer
        chose it): whatever the run left is killed; an OOM kill is the run's result, anything
        else an error (the run's exit status is unknown)."""
        self._exit_code = 128 + 9
        self._server._lost()
        if self._check_oom():
            self._finished = ExitStatus(exit_code=self._exit_code, out_of_memory=True)
            return
        self._finished = ExitStatus(exit_code=self._exit_code)
        raise SandboxRuntimeError(
            "the run ended the fork server that started it"
            + (f" ({failure})" if failure else " (it killed its parent process)")
            + ", so its exit status is unknown; every process it left was killed and the next "
            "run starts a new server"
        )

    def wait(self) -> ExitStatus:
        if self._finished is None:
            deadline = time.monotonic() + KILL_GRACE
            while self._exit_code is None and time.monotonic() < deadline:
                self.read(max(0.0, deadline - time.monotonic()))
            if self._finished is None:
                code = self._exit_code if self._exit_code is not None else 128 + 9
                oom = code == 128 + 9 and self._check_oom()
                self._finished = ExitStatus(exit_code=code, out_of_memory=oom)
            self._server._done()
        return self._finished

    def kill(self) -> None:
        if self._exit_code is None:
            self._server.send(b"K\n")
            deadline = time.monotonic() + ANSWER_TIMEOUT
            with contextlib.suppress(SandboxError):
                while self._exit_code is None and time.monotonic() < deadline:
                    self.read(max(0.0, deadline - time.monotonic()))
        if self._exit_code is None:
            # No answer: the server is stuck or gone. Kill it whole (everything it started
            # with it); a new one starts for the next run.
            self._exit_code = 128 + 9
            self._server.stop()
        if self._finished is None:
            self._finished = ExitStatus(exit_code=-9)
            self._server._done()
