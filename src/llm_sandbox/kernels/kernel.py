"""The host side of a kernel: drives one runner over a `KernelChannel`.

A `Kernel` starts its runner with the launcher it was given, sends cells, and turns what comes
back into `CellResult`s. It owns the rules that do not depend on the sandbox: one cell at a
time, timeouts (interrupt, a grace period, then kill and a fresh kernel), a runner that died,
output caps, history, and `%pip install` requests handed to the session.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final, NoReturn

from llm_sandbox.backends.base import INTERRUPT_POLL, Interrupt
from llm_sandbox.exceptions import (
    CellTimeoutError,
    KernelError,
    SandboxError,
    SandboxInterruptedError,
    SessionStateError,
)
from llm_sandbox.kernels.channel import STDERR, STDOUT, ChannelExit, KernelChannel, Launcher
from llm_sandbox.kernels.protocol import (
    PROTOCOL_VERSION,
    Event,
    Garbled,
    Message,
    Output,
    OutputParser,
    new_nonce,
    request,
    start_request,
)
from llm_sandbox.output import CappedStream, OutputCallback
from llm_sandbox.results import CellError, CellResult

logger = logging.getLogger("llm_sandbox")

INTERRUPT_GRACE: Final = 2.0
"""Seconds a timed-out cell has to stop after its interrupt before the kernel is killed."""
MiB: Final = 1024 * 1024

ResultCallback = Callable[[dict[str, object]], None]
"""Receives each MIME bundle of a cell as it arrives."""


@dataclass(frozen=True)
class InstallRequest:
    """`%pip install ...` in a cell: what to install (the session decides whether and how)."""

    manager: str
    packages: list[str]
    options: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class InstallReply:
    """What the install did; the cell prints `stdout` and `stderr`. `sys_path` lists
    directories the kernel should add to its import path."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    sys_path: list[str] = field(default_factory=list)


Installer = Callable[[InstallRequest], InstallReply]


@dataclass(frozen=True)
class KernelInfo:
    """What the runner said about itself when it started."""

    language: str
    implementation: str
    language_version: str
    pid: int | None


@dataclass(frozen=True)
class HistoryEntry:
    """One executed cell: its counter, its code, how it ended ("ok", "error", "timeout",
    "interrupted", "kernel_died")."""

    execution_count: int | None
    code: str
    status: str


class _Connection:
    """One runner process and the parsers of its two streams."""

    def __init__(self, channel: KernelChannel, nonce: str, max_message: int) -> None:
        self.channel = channel
        self.parsers = {
            STDOUT: OutputParser(nonce, max_message=max_message),
            STDERR: OutputParser(nonce, max_message=max_message),
        }
        self.info: KernelInfo | None = None
        self.exit: ChannelExit | None = None

    def read(self, timeout: float) -> list[tuple[int, Event]] | ChannelExit | None:
        """Events from one read of the channel; the exit once the runner is gone."""
        if self.exit is not None:
            return self.exit
        got = self.channel.read(timeout)
        if got is None:
            return None
        if isinstance(got, ChannelExit):
            self.exit = got
            tail = [(stream, e) for stream, p in self.parsers.items() for e in p.finish()]
            return tail or got
        stream, data = got
        return [(stream, event) for event in self.parsers[stream].feed(data)]


class _Cell:
    """What one cell produced so far."""

    def __init__(
        self,
        cell_id: str,
        *,
        max_output: int,
        max_results: int,
        on_stdout: OutputCallback | None,
        on_stderr: OutputCallback | None,
        on_result: ResultCallback | None,
    ) -> None:
        self.id = cell_id
        self.max_output = max_output
        self.max_results = max_results
        self.on_stdout = on_stdout
        self.on_stderr = on_stderr
        self.on_result = on_result
        self.stdout = CappedStream("on_stdout", max_output, on_stdout)
        self.stderr = CappedStream("on_stderr", max_output, on_stderr)
        self.stdout_truncated = False
        self.stderr_truncated = False
        self.results: list[dict[str, object]] = []
        self.display_ids: dict[str, int] = {}
        self.result_bytes = 0
        self.error: CellError | None = None
        self.execution_count: int | None = None
        self.reply: dict[str, Any] | None = None
        self.synced = False
        self.warnings: list[str] = []

    @property
    def done(self) -> bool:
        return self.reply is not None and self.synced

    def output(self, stream: int, data: bytes) -> None:
        (self.stdout if stream == STDOUT else self.stderr).feed(data)

    def message(self, body: dict[str, Any]) -> None:
        kind = body.get("type")
        if kind in ("display_data", "update_display_data", "execute_result"):
            self._bundle(body)
        elif kind == "error":
            traceback = body.get("traceback")
            self.error = CellError(
                name=str(body.get("ename", "Error")),
                value=str(body.get("evalue", "")),
                traceback=[str(line) for line in traceback] if isinstance(traceback, list) else [],
            )
        elif kind == "clear_output":
            self._clear()
        elif kind == "execute_reply" and body.get("id") == self.id:
            self.reply = body
            count = body.get("execution_count")
            self.execution_count = count if isinstance(count, int) else self.execution_count
        elif kind == "sync" and body.get("id") == self.id:
            self.synced = True
        elif kind in ("log", "fatal"):
            self.warnings.append(f"kernel: {body.get('message', '')}")

    def _bundle(self, body: dict[str, Any]) -> None:
        data = body.get("data")
        if not isinstance(data, dict) or not data:
            return
        bundle: dict[str, object] = {str(k): v for k, v in data.items()}
        if body["type"] == "execute_result" and isinstance(body.get("execution_count"), int):
            self.execution_count = body["execution_count"]
        size = len(json.dumps(bundle))
        if self.result_bytes + size > self.max_results:
            self.warnings.append(
                f"a result of {size} bytes was dropped: the cell's results exceeded "
                f"{self.max_results} bytes"
            )
            return
        self.result_bytes += size
        transient = body.get("transient")
        display_id = transient.get("display_id") if isinstance(transient, dict) else None
        if body["type"] == "update_display_data" and display_id in self.display_ids:
            self.results[self.display_ids[str(display_id)]] = bundle
        else:
            if display_id is not None:
                self.display_ids[str(display_id)] = len(self.results)
            self.results.append(bundle)
        if self.on_result is not None:
            try:
                self.on_result(bundle)
            except Exception:
                logger.exception("on_result callback raised; no more results are sent to it")
                self.on_result = None

    def _clear(self) -> None:
        """clear_output(): what the cell displayed and printed so far is dropped."""
        self.stdout_truncated |= self.stdout.truncated
        self.stderr_truncated |= self.stderr.truncated
        self.stdout = CappedStream("on_stdout", self.max_output, self.on_stdout)
        self.stderr = CappedStream("on_stderr", self.max_output, self.on_stderr)
        self.results.clear()
        self.display_ids.clear()

    def result(
        self, *, wall_time: float, restarted: bool = False, out_of_memory: bool = False
    ) -> CellResult:
        self.stdout.finish()
        self.stderr.finish()
        return CellResult(
            exit_code=0 if self.error is None else 1,
            stdout=self.stdout.replaced(),
            stderr=self.stderr.replaced(),
            wall_time=wall_time,
            stdout_truncated=self.stdout_truncated or self.stdout.truncated,
            stderr_truncated=self.stderr_truncated or self.stderr.truncated,
            out_of_memory=out_of_memory,
            execution_count=self.execution_count,
            results=list(self.results),
            error=self.error,
            kernel_restarted=restarted,
            warnings=list(self.warnings),
        )


class Kernel:
    """A stateful interpreter of one language, running `argv` through `launch`.

    `execute()` runs one cell and returns its `CellResult`; state (variables, imports,
    functions, open files) persists between cells. Cells from several threads run one at a
    time, in the order they acquire the kernel (never interleaved). `interrupt()` may be called
    from any thread. `max_output` caps each stream of a cell, `max_results` the bytes of its
    rich results; `on_install` receives `%pip install` requests (None: they fail with a
    message). Use as a context manager, or call `close()`.
    """

    def __init__(
        self,
        launch: Launcher,
        argv: Sequence[str],
        *,
        language: str,
        start_timeout: float = 60.0,
        history_size: int = 1000,
        max_output: int = MiB,
        max_results: int = 32 * MiB,
        on_install: Installer | None = None,
        interrupt_grace: float = INTERRUPT_GRACE,
    ) -> None:
        self.language = language
        self._launch = launch
        self._argv = list(argv)
        self._start_timeout = start_timeout
        self._history_size = history_size
        self._max_output = max_output
        self._max_results = max_results
        self._on_install = on_install
        self._grace = interrupt_grace
        self._lock = threading.Lock()  # one cell (or start/restart) at a time
        self._send_lock = threading.Lock()
        self._conn: _Connection | None = None
        self._closed = False
        self._cells = 0
        self._running: str | None = None  # id of the cell in flight
        self._restart_requested = False
        self._history: list[HistoryEntry] = []
        self._idle: list[tuple[int, Event]] = []  # what arrived between cells

    def rebind(
        self,
        launch: Launcher,
        *,
        history_size: int,
        max_output: int,
        on_install: Installer | None,
    ) -> None:
        """Hand a started kernel to a new owner (a pool's warm kernel to the session that
        borrows its sandbox): later restarts, limits and installs are the owner's."""
        with self._lock:
            self._launch = launch
            self._history_size = history_size
            self._max_output = max_output
            self._on_install = on_install

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> KernelInfo:
        """Start the runner if it is not running; what it reported about itself."""
        with self._lock:
            return self._ensure().info or KernelInfo(self.language, "", "", None)

    @property
    def info(self) -> KernelInfo | None:
        conn = self._conn
        return conn.info if conn is not None else None

    def restart(self) -> KernelInfo:
        """Kill the kernel (a running cell ends with error `KernelRestarted`) and start a fresh
        one."""
        self._restart_requested = True
        conn = self._conn
        if conn is not None:
            conn.channel.kill()
        with self._lock:
            self._restart_requested = False
            self._disconnect()
            info = self._ensure().info
        assert info is not None
        return info

    def close(self) -> None:
        """Stop the kernel (politely, then by force). Idempotent."""
        if self._closed:
            return
        self._restart_requested = True
        busy = self._conn
        if busy is not None and self._running is not None:
            busy.channel.kill()  # a running cell ends now rather than at its timeout
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                self._send(conn, request("shutdown"))
                deadline = time.monotonic() + 1.0
                while conn.exit is None and time.monotonic() < deadline:
                    conn.read(max(0.0, deadline - time.monotonic()))
                conn.channel.kill()
                _close_channel(conn.channel)

    def __enter__(self) -> Kernel:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def history(self) -> list[HistoryEntry]:
        """The last `history_size` cells executed, oldest first (kept across restarts)."""
        return list(self._history)

    # --- cells ------------------------------------------------------------------------------------
    def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        silent: bool = False,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        on_result: ResultCallback | None = None,
        interrupt: Interrupt | None = None,
    ) -> CellResult:
        """Run one cell. A cell that raises returns a result with `error`; the kernel lives on.

        When `interrupt` is set (from another thread: a cancelled async call, a closing
        session) the cell is stopped as on a timeout and `SandboxInterruptedError` raised.

        Past `timeout` seconds the cell is interrupted; `CellTimeoutError` is raised once it
        stopped, or once the kernel was killed and restarted because it did not stop within
        the grace period (`kernel_restarted`). A kernel that died is restarted and the result
        says so (`kernel_restarted`, error `KernelDied`).
        """
        with self._lock:
            started = time.monotonic()
            conn = self._ensure()
            restarted = False
            notes: list[str] = []
            exited = self._drain_idle(conn)
            if exited is not None:
                notes.append(
                    f"the kernel had stopped since the last cell ({exited.describe()}); a fresh "
                    "kernel was started: earlier state is gone"
                )
                self._disconnect()
                conn = self._ensure()
                restarted = True
            self._cells += 1
            cell = _Cell(
                str(self._cells),
                max_output=self._max_output,
                max_results=self._max_results,
                on_stdout=on_stdout,
                on_stderr=on_stderr,
                on_result=on_result,
            )
            cell.warnings += notes
            for stream, event in self._idle:
                self._handle(conn, cell, stream, event)
            self._idle.clear()
            self._running = cell.id
            try:
                self._send(conn, request("execute", {"id": cell.id, "silent": silent}, code))
                return self._wait(
                    conn,
                    cell=cell,
                    code=code,
                    timeout=timeout,
                    started=started,
                    restarted=restarted,
                    silent=silent,
                    interrupt=interrupt,
                )
            finally:
                self._running = None

    def interrupt(self) -> bool:
        """Interrupt the running cell the language's own way; whether one was running."""
        conn, running = self._conn, self._running
        if conn is not None and running is not None:
            self._send(conn, request("interrupt", {"id": running}))
            return True
        return False

    def _wait(
        self,
        conn: _Connection,
        *,
        cell: _Cell,
        code: str,
        timeout: float | None,
        started: float,
        restarted: bool,
        silent: bool,
        interrupt: Interrupt | None,
    ) -> CellResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        slice_ = 1.0 if interrupt is None else INTERRUPT_POLL
        while not cell.done:
            if interrupt is not None and interrupt.is_set():
                self._interrupted(conn, cell, code, interrupt.reason, silent)
            wait = slice_ if deadline is None else max(0.0, deadline - time.monotonic())
            got = conn.read(min(wait, slice_))
            if isinstance(got, ChannelExit):
                return self._died(
                    conn, cell=cell, code=code, exited=got, started=started, silent=silent
                )
            if got is None:
                if deadline is not None and time.monotonic() >= deadline:
                    assert timeout is not None
                    self._timed_out(conn, cell, code, timeout, silent)
                continue
            for stream, event in got:
                paused = self._handle(conn, cell, stream, event)
                if deadline is not None:
                    deadline += paused
        exiting = bool(cell.reply and cell.reply.get("exiting"))
        if exiting:
            cell.warnings.append(
                "the cell ended the kernel (exit()); a fresh kernel was started: state is gone"
            )
            self._disconnect()
            self._ensure()
        self._record(cell, code, "ok" if cell.error is None else "error", silent)
        return cell.result(wall_time=time.monotonic() - started, restarted=restarted or exiting)

    def _handle(self, conn: _Connection, cell: _Cell, stream: int, event: Event) -> float:
        """Apply one event to the cell; seconds spent on an install (not the cell's time)."""
        if isinstance(event, Output):
            cell.output(stream, event.data)
        elif isinstance(event, Message):
            if event.type == "install_request":
                return self._install(conn, event.body)
            cell.message(event.body)
        elif isinstance(event, Garbled):
            logger.warning("%s kernel: %s", self.language, event.reason)
            cell.warnings.append(f"kernel protocol: {event.reason}")
        return 0.0

    def _interrupted(
        self, conn: _Connection, cell: _Cell, code: str, reason: str, silent: bool
    ) -> None:
        """Stop the cell for `reason` (see `_stop`); raises SandboxInterruptedError."""
        stopped, how = self._stop(conn, cell, code, "interrupted", silent)
        result = cell.result(wall_time=0.0)
        error = SandboxInterruptedError(
            f"{reason}; {how}", stdout=result.stdout, stderr=result.stderr
        )
        self._raise_after_stop(error, stopped)

    def _timed_out(
        self, conn: _Connection, cell: _Cell, code: str, timeout: float, silent: bool
    ) -> None:
        """Stop the cell (see `_stop`); raises CellTimeoutError."""
        stopped, how = self._stop(conn, cell, code, "timeout", silent)
        result = cell.result(wall_time=0.0)
        error = CellTimeoutError(
            f"the cell timed out after {timeout:g} s; {how}. Pass timeout= to allow longer",
            timeout=timeout,
            kernel_restarted=not stopped,
            stdout=result.stdout,
            stderr=result.stderr,
            results=result.results,
            execution_count=result.execution_count,
        )
        self._raise_after_stop(error, stopped)

    def _raise_after_stop(self, error: SandboxError, stopped: bool) -> NoReturn:
        """Raise `error`, once a kernel killed for not stopping was replaced (a replacement
        that does not start is the error's cause)."""
        if not stopped:
            try:
                self._ensure()
            except KernelError as exc:
                raise error from exc
        raise error

    def _stop(
        self, conn: _Connection, cell: _Cell, code: str, status: str, silent: bool
    ) -> tuple[bool, str]:
        """Interrupt the cell; wait the grace period; kill the kernel if it did not stop (the
        caller starts a fresh one). Records the cell; (whether it stopped, what happened)."""
        self._send(conn, request("interrupt", {"id": cell.id}))
        grace_end = time.monotonic() + self._grace
        while not cell.done and time.monotonic() < grace_end:
            got = conn.read(max(0.0, grace_end - time.monotonic()))
            if got is None or isinstance(got, ChannelExit):
                if isinstance(got, ChannelExit):
                    break
                continue
            for stream, event in got:
                self._handle(conn, cell, stream, event)
        stopped = cell.done
        how = "it was interrupted and the kernel kept its state"
        if not stopped:
            how = (
                f"it did not stop within {self._grace:g} s of the interrupt, so every process "
                "of the kernel was killed and a fresh kernel started: its state is gone"
            )
            conn.channel.kill()
            self._disconnect()
        self._record(cell, code, status, silent)
        return stopped, how

    def _died(
        self,
        conn: _Connection,
        *,
        cell: _Cell,
        code: str,
        exited: ChannelExit,
        started: float,
        silent: bool,
    ) -> CellResult:
        """The runner exited during the cell: restart (unless restart() did it) and say so."""
        conn.channel.kill()
        self._disconnect()
        if self._restart_requested:
            cell.error = CellError(
                "KernelRestarted", "the kernel was restarted while this cell ran", []
            )
            self._record(cell, code, "kernel_died", silent)
            return cell.result(wall_time=time.monotonic() - started, restarted=True)
        why = exited.describe()
        hint = " (raise the memory limit, or use less memory)" if exited.out_of_memory else ""
        cell.error = CellError(
            "KernelDied",
            f"the {self.language} kernel died while running this cell: {why}{hint}. A fresh "
            "kernel was started: variables, imports and functions are gone",
            [],
        )
        self._record(cell, code, "kernel_died", silent)
        try:
            self._ensure()
        except KernelError as exc:
            cell.warnings.append(f"the fresh kernel did not start: {exc}")
        return cell.result(
            wall_time=time.monotonic() - started,
            restarted=True,
            out_of_memory=exited.out_of_memory,
        )

    def _install(self, conn: _Connection, body: dict[str, Any]) -> float:
        started = time.monotonic()
        request_id = str(body.get("request", ""))
        packages = [str(p) for p in body.get("packages", []) if isinstance(p, str)]
        options = [str(o) for o in body.get("options", []) if isinstance(o, str)]
        install = InstallRequest(str(body.get("manager", "")), packages, options)
        if self._on_install is None:
            reply = InstallReply(
                exit_code=1, stderr="this kernel has no session to install packages through\n"
            )
        else:
            try:
                reply = self._on_install(install)
            except Exception as exc:
                reply = InstallReply(exit_code=1, stderr=f"installing failed: {exc}\n")
        try:
            line = request("install_reply", {"id": request_id}, json.dumps(asdict(reply)))
        except ValueError:
            logger.warning("%s kernel: install request with a bad id", self.language)
        else:
            self._send(conn, line)
        return time.monotonic() - started

    def _record(self, cell: _Cell, code: str, status: str, silent: bool) -> None:
        if silent or self._history_size == 0:
            return
        self._history.append(HistoryEntry(cell.execution_count, code, status))
        del self._history[: -self._history_size]

    # --- the runner process -------------------------------------------------------------------
    def _send(self, conn: _Connection, data: bytes) -> None:
        with self._send_lock:
            conn.channel.send(data)

    def _ensure(self) -> _Connection:
        """The running connection, starting a runner if there is none (holding `_lock`)."""
        if self._closed:
            raise SessionStateError("the kernel is closed")
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        self._idle.clear()
        if conn is not None:
            conn.channel.kill()
            _close_channel(conn.channel)

    def _connect(self) -> _Connection:
        nonce = new_nonce()
        channel = self._launch(self._argv)
        conn = _Connection(channel, nonce, self._max_results + 64 * 1024)
        printed = CappedStream("startup", 64 * 1024)
        early: list[tuple[int, Event]] = []  # output before ready: the first cell gets it
        channel.send(start_request(nonce))
        deadline = time.monotonic() + self._start_timeout
        while conn.info is None:
            remaining = deadline - time.monotonic()
            got = conn.read(min(max(remaining, 0.0), 1.0))
            if got is None:
                if remaining > 0:
                    continue
                channel.kill()
                _close_channel(channel)
                raise KernelError(
                    f"the {self.language} kernel did not start within "
                    f"{self._start_timeout:g} s{_printed(printed)}",
                    language=self.language,
                    output=printed.replaced(),
                )
            if isinstance(got, ChannelExit):
                _close_channel(channel)
                raise KernelError(
                    f"the {self.language} kernel exited before it was ready: "
                    f"{got.describe()}{_printed(printed)}",
                    language=self.language,
                    output=printed.replaced(),
                )
            for stream, event in got:
                if isinstance(event, Output):
                    printed.feed(event.data)
                    if not printed.truncated:
                        early.append((stream, event))
                elif isinstance(event, Message) and event.type == "fatal":
                    channel.kill()
                    _close_channel(channel)
                    package = event.body.get("package")
                    raise KernelError(
                        f"the {self.language} kernel cannot start: {event.body.get('message')}",
                        language=self.language,
                        package=str(package) if package else None,
                        output=printed.replaced(),
                    )
                elif isinstance(event, Message) and event.type == "ready":
                    conn.info = _info(event.body, self.language)
        self._idle = early
        return conn

    def _drain_idle(self, conn: _Connection) -> ChannelExit | None:
        """Collect what arrived since the last cell; the exit if the runner is gone."""
        while True:
            got = conn.read(0.0)
            if got is None:
                return None
            if isinstance(got, ChannelExit):
                return got
            self._idle += got


def _info(body: dict[str, Any], language: str) -> KernelInfo:
    if body.get("protocol") != PROTOCOL_VERSION:
        logger.warning("%s kernel speaks protocol %s", language, body.get("protocol"))
    pid = body.get("pid")
    return KernelInfo(
        language=str(body.get("language", language)),
        implementation=str(body.get("implementation", "")),
        language_version=str(body.get("language_version", "")),
        pid=pid if isinstance(pid, int) else None,
    )


def _printed(stream: CappedStream) -> str:
    text = stream.replaced().strip()
    if not text:
        return ""
    tail = text[-2000:]
    return f"; it printed:\n{tail}"


def _close_channel(channel: KernelChannel) -> None:
    close = getattr(channel, "close", None)
    if callable(close):
        close()
