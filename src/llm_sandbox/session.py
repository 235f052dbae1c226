"""`SandboxSession`: the facade users hold. Config, lifecycle, timeouts; no backend specifics.

```
NEW ──open()──► OPEN ──close()──► CLOSED
                 │
                 └─ session_timeout passes ──► EXPIRED (sandbox torn down; calls raise)
```

Every run has a deadline: its timeout, clamped to the session's expiry. When the deadline
passes the backend kills everything the run started before `SandboxTimeoutError` is raised,
and the session stays usable (unless it was the session that expired).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import inspect
import io
import logging
import os
import posixpath
import re
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from llm_sandbox import archive, environment
from llm_sandbox.backends import registry
from llm_sandbox.backends.base import (
    KILL_GRACE,
    STDOUT,
    ExecRequest,
    ExitStatus,
    GuardedProcess,
    Interrupt,
    KillUnconfirmed,
    Process,
    Sandbox,
    read_to_end,
    untranslated,
)
from llm_sandbox.config import check_timeout
from llm_sandbox.const import SandboxBackend
from llm_sandbox.egress import (
    NO_EGRESS,
    PROXY_ENV,
    EgressPolicy,
    Gate,
    GateAttachment,
    NetworkEvent,
)
from llm_sandbox.exceptions import (
    CommandEmptyError,
    ConfigurationError,
    LibraryInstallationNotSupportedError,
    NotOpenSessionError,
    OutputDecodeError,
    PackageInstallError,
    SandboxError,
    SandboxInterruptedError,
    SandboxTimeoutError,
    SecurityViolationError,
    SessionStateError,
)
from llm_sandbox.language_handlers.base import CommandPlan
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory
from llm_sandbox.options import SessionOptions
from llm_sandbox.output import CappedStream, OutputCallback
from llm_sandbox.results import ConsoleOutput
from llm_sandbox.security import Violation

if TYPE_CHECKING:
    from llm_sandbox.pool.manager import ContainerPoolManager

Command = str | tuple[str, str | None] | list[str]
"""One of `execute_commands`: a shell line, or `(line, workdir)`."""
_Session = TypeVar("_Session", bound="SandboxSession")
INSTALL_TIMEOUT_FLOOR = 300.0


class State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"
    EXPIRED = "expired"


@dataclasses.dataclass
class _Gated:
    """One command's side of the egress gate: its attachment and the attempts refused."""

    attachment: GateAttachment | None = None
    denied: int = 0


class _Deadline(Exception):
    """Internal: the run's deadline passed (or its interrupt was set)."""


_INTERRUPT: ContextVar[Interrupt | None] = ContextVar("llm_sandbox_interrupt", default=None)


def current_interrupt() -> Interrupt | None:
    """The interrupt of the `interruptible` block this thread is in, if any: code that waits
    by itself (a kernel's reply, a pool's free sandbox) looks at it and stops when it is set."""
    return _INTERRUPT.get()


@contextlib.contextmanager
def interruptible(interrupt: Interrupt) -> Iterator[None]:
    """Session calls made inside this block stop when `interrupt` is set (from any thread):
    the command running then is killed, every process it started, and the call raises
    `SandboxInterruptedError`; a command about to start does not start. The async API runs
    each call of its worker thread in such a block (`llm_sandbox.aio`)."""
    token = _INTERRUPT.set(interrupt)
    try:
        yield
    finally:
        _INTERRUPT.reset(token)


_OWNED_ELSEWHERE = {
    "enable_plotting": "ArtifactSandboxSession, which captures plots and files",
    "max_artifact_bytes": "ArtifactSandboxSession, which captures plots and files",
}
"""Options of the other session classes, so giving them to this one says where they belong."""


def _backend_given_first(
    lang: str, backend: SandboxBackend | str | None
) -> tuple[str, SandboxBackend | str | None]:
    """The previous generation's sessions took the backend first (`SandboxSession("docker")`):
    a first argument that names a backend and no language is read that way."""
    named = isinstance(lang, str) and registry.is_backend_name(lang)
    if not named or LanguageHandlerFactory.lookup(lang) is not None:
        return lang, backend
    if backend is not None:
        raise ConfigurationError(
            f"{lang!r} names a backend, not a language, and backend={backend!r} is given too; "
            "pass lang= for the language"
        )
    return "python", lang


def _reject_options_of_other_sessions(options: Mapping[str, object]) -> None:
    for name in options:
        if name in _OWNED_ELSEWHERE:
            raise ConfigurationError(
                f"option {name!r} belongs to {_OWNED_ELSEWHERE[name]}; use it instead of "
                "SandboxSession"
            )


class SandboxSession:
    """Runs code in an isolated sandbox. Use as a context manager or call `open()`/`close()`.

    `lang` is the language of the code; `backend` where it runs (None: chosen automatically,
    see `llm_sandbox.backends.registry`). The other options are the fields of
    `llm_sandbox.config.SessionConfig` (every backend) and of the chosen backend's options
    class (e.g. `image=` for containers). An unknown option, or one that does not apply to
    the chosen backend, raises `ConfigurationError`.
    """

    def __new__(cls, *args: object, pool: object | None = None, **options: object) -> Any:
        """With `pool=` (a `llm_sandbox.pool` manager), the session borrows a sandbox of the
        pool: the previous generation's `SandboxSession(pool=pool)`. See `pooled_variant`."""
        if pool is not None:
            return object.__new__(cls.pooled_variant())
        return object.__new__(cls)

    @classmethod
    def pooled_variant(cls) -> type[SandboxSession]:
        """The class of this kind of session that borrows its sandbox from a pool."""
        from llm_sandbox.pool.session import PooledSandboxSession

        return PooledSandboxSession

    def __init__(
        self,
        lang: str = "python",
        *,
        backend: SandboxBackend | str | None = None,
        pool: ContainerPoolManager | None = None,
        **options: Unpack[SessionOptions],
    ) -> None:
        _reject_options_of_other_sessions(options)
        lang, backend = _backend_given_first(lang, backend)
        self.config = registry.configure({"lang": lang, "backend": backend, **options})
        self.logger = self.config.logger or logging.getLogger("llm_sandbox")
        self.language_handler = LanguageHandlerFactory.create_handler(self.config.lang, self.logger)
        self._state = State.NEW
        self._sandbox: Sandbox | None = None
        self._lock = threading.RLock()
        self._expires_at: float | None = None
        self._expiry_timer: threading.Timer | None = None
        self._run_count = 0
        self._committed_image: str | None = None
        self._gate: Gate | None = None
        self._running: Interrupt | None = None
        """The interrupt of the command running now (read by `interrupt()` from any thread)."""
        if self.config.verbose:
            _ensure_visible(self.logger)

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    @property
    def committed_image(self) -> str | None:
        """With commit_container=True: the new image the container was saved as at close."""
        return self._committed_image

    @property
    def network_log(self) -> list[NetworkEvent]:
        """Every connection attempt through the egress gate (runs and installs), oldest first:
        time, host, address, port, protocol, verdict and the reason of a refusal."""
        return self._gate.events if self._gate is not None else []

    @property
    def is_open(self) -> bool:
        return self._state is State.OPEN

    def open(self) -> None:
        with self._lock:
            if self._state is State.OPEN:
                raise SessionStateError("open() called on a session that is open")
            self._expires_at = None  # a closed or expired session opens afresh
            self._gate = None  # and with a gate (and network_log) of its own
            self._sandbox = self._open_sandbox()
            self._state = State.OPEN
            if self.config.session_timeout is not None:
                self._expires_at = time.monotonic() + self.config.session_timeout
                self._expiry_timer = threading.Timer(self.config.session_timeout, self._expire)
                self._expiry_timer.daemon = True
                self._expiry_timer.start()
            if self.config.libraries:
                try:
                    self.install(self.config.libraries)
                except BaseException:
                    self.close()
                    raise

    def close(self) -> None:
        with self._lock:
            if self._expiry_timer is not None:
                self._expiry_timer.cancel()
            self._teardown()
            if self._state is not State.EXPIRED:
                self._state = State.CLOSED

    def _open_sandbox(self) -> Sandbox:
        """Open the session's own sandbox (a pooled session borrows one instead)."""
        started = time.monotonic()
        definition, self.config = registry.resolve(self.config)
        backend = registry.load(definition)
        with untranslated(f"opening a {backend.name} sandbox"):
            sandbox = backend.open(self.config, self.language_handler.runtime_needs())
        self._log(
            "opened %s sandbox for %s in %.3f s",
            backend.name,
            self.config.lang,
            time.monotonic() - started,
        )
        return sandbox

    def _teardown(self) -> None:
        sandbox, self._sandbox = self._sandbox, None
        if self._gate is not None:
            self._gate.close()  # its record stays readable in network_log
        if sandbox is not None:
            self._close_sandbox(sandbox)

    def _close_sandbox(self, sandbox: Sandbox) -> None:
        """Tear the session's sandbox down (a pooled session gives it back instead)."""
        started = time.monotonic()
        try:
            with untranslated("closing the sandbox"):
                sandbox.close()
        finally:
            self._committed_image = sandbox.committed_image
        self._log("closed sandbox in %.3f s", time.monotonic() - started)
        if self._committed_image:
            self._log("saved the container as image %s", self._committed_image)

    def _expire(self) -> None:
        with self._lock:
            if self._state is State.OPEN:
                self._log(
                    "session_timeout of %.1f s passed; tearing the sandbox down",
                    self.config.session_timeout,
                )
                self._teardown()
                self._state = State.EXPIRED

    def __enter__(self: _Session) -> _Session:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _require_open(self) -> Sandbox:
        expired = self._expires_at is not None and time.monotonic() >= self._expires_at
        if self._state is State.OPEN and expired:
            self._expire()
        if self._state is State.EXPIRED:
            raise SandboxTimeoutError(
                f"the session expired: session_timeout={self.config.session_timeout} s passed "
                "and the sandbox was torn down; open a new session",
                timeout=self.config.session_timeout,
                session_expired=True,
            )
        if self._state is State.NEW:
            raise NotOpenSessionError()
        if self._state is State.CLOSED or self._sandbox is None:
            raise SessionStateError("the session is closed; open a new session")
        return self._sandbox

    def interrupt(self, reason: str = "the run was interrupted") -> bool:
        """Stop the command this session is running now; safe to call from any thread.

        Every process the command started is killed (within about a second) by the thread
        running it, whose call then raises `SandboxInterruptedError`; the session stays
        usable. Returns whether a command was running. (A call with several steps, such as a
        compiled language's run, stops at the step running when this is called; to stop a
        whole call, run it inside `interruptible`.)
        """
        running = self._running
        if running is None:
            return False
        running.set(reason)
        return True

    # --- running -----------------------------------------------------------------------------
    def run(
        self,
        code: str,
        libraries: Sequence[str] | None = None,
        timeout: float | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        *,
        stdin: str | bytes | None = None,
        args: Sequence[str] | None = None,
    ) -> ConsoleOutput:
        """Run `code` in the session's language and return its output and exit code.

        `stdin` is the program's standard input; `args` its command-line arguments
        (`sys.argv[1:]`, `process.argv.slice(2)`, `String[] args`, ...)."""
        if not isinstance(code, str):
            raise ConfigurationError(f"code must be a string, got {type(code).__name__}")
        if args is not None and (
            isinstance(args, str | bytes) or not all(isinstance(a, str) for a in args)
        ):
            raise ConfigurationError(f"args must be a list of strings, got {args!r}")
        with self._lock:
            self._require_open()
            self._enforce_policy(code)
            if libraries:
                self.install(libraries)
            self._run_count += 1
            handler = self.language_handler
            plan, env = self._prepare_run(
                handler.command_plan(code, self._run_count),
                self._run_env(),
            )
            files = plan.files
            deadline = self._deadline(timeout)
            started = time.monotonic()
            denied = 0  # by the egress gate while compiling (a build may fetch)
            built: list[ConsoleOutput] = []
            for argv in plan.compile:
                result = self._execute(argv, deadline, started, files=files, env=env)
                denied += result.egress_denied
                if result.exit_code != 0:
                    return dataclasses.replace(result, compile_failed=True, egress_denied=denied)
                built.append(result)
            result = self._execute(
                [*plan.run, *(args or ())],
                deadline,
                started,
                files=files,
                env=env,
                stdin=stdin,
                on_stdout=on_stdout,
                on_stderr=on_stderr,
            )
            if built:
                result = dataclasses.replace(
                    result,
                    egress_denied=result.egress_denied + denied,
                    compile_stdout="".join(r.stdout for r in built),
                    compile_stderr="".join(r.stderr for r in built),
                )
            self._log(
                "run %d finished: exit %d in %.3f s",
                self._run_count,
                result.exit_code,
                result.wall_time,
            )
            return result

    def _prepare_run(
        self, plan: CommandPlan, env: dict[str, str]
    ) -> tuple[CommandPlan, dict[str, str]]:
        """The files, commands and environment of run `self._run_count`; subclasses add theirs."""
        return plan, env

    def _run_env(self) -> dict[str, str]:
        """The environment of a run: the language's, under the user's (see `environment`)."""
        return environment.merge(
            self.config.environment, self.language_handler.run_env(self.config.workdir)
        )

    def is_safe(self, code: str) -> tuple[bool, list[Violation]]:
        """Check `code` against the session's security policy without running it.

        Returns whether it passes and every finding (pattern or module, line, severity).
        Without a policy everything passes; isolation is the boundary either way.
        """
        policy = self.config.security_policy
        if policy is None:
            return True, []
        safe, violations = policy.is_safe(code, self.config.lang)
        return bool(safe), list(violations)

    def _enforce_policy(self, code: str, lang: str | None = None) -> None:
        """Refuse `code` (in `lang`, default the session's) if the policy blocks it."""
        policy = self.config.security_policy
        if policy is None:
            return
        blocking = policy.blocking(policy.check(code, lang or self.config.lang))
        if blocking:
            listed = "; ".join(str(v) for v in blocking)
            raise SecurityViolationError(
                f"the code was not run: it violates the session's security policy ({listed})",
                violations=blocking,
            )

    def execute_command(
        self,
        command: str | Sequence[str],
        timeout: float | str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        *,
        workdir: str | None = None,
        stdin: str | bytes | None = None,
    ) -> ConsoleOutput:
        """Run a shell command line (`str`, through /bin/sh -c) or an argv (`list`).

        `workdir` defaults to the session's. (The previous generation's
        `execute_command(command, workdir)`: a string in the second place is the workdir.)
        """
        if isinstance(timeout, str):
            timeout, workdir = None, timeout
        if isinstance(command, str):
            if not command.strip():
                raise CommandEmptyError("command is empty; pass a shell line or an argv list")
            argv = ["/bin/sh", "-c", command]
        else:
            argv = list(command)
            if not argv or not all(isinstance(a, str) for a in argv):
                raise ConfigurationError("command must be a non-empty list of strings")
        with self._lock:
            self._require_open()
            started = time.monotonic()
            return self._execute(
                argv,
                self._deadline(timeout),
                started,
                cwd=workdir,
                stdin=stdin,
                on_stdout=on_stdout,
                on_stderr=on_stderr,
            )

    def install(
        self, libraries: Sequence[str] | None = None, timeout: float | None = None
    ) -> ConsoleOutput:
        """Install libraries with the language's package manager, with the network on.

        Nothing to install (None or an empty list) does nothing.
        """
        if isinstance(libraries, str):
            libraries = [libraries]
        if not libraries:
            return ConsoleOutput()
        if self.config.skip_environment_setup:
            raise LibraryInstallationNotSupportedError(
                self.config.lang,
                "this session was opened with skip_environment_setup=True, which installs "
                "nothing; open it without that option, or use an image with the libraries",
            )
        self._refuse_restricted_libraries(libraries)
        argv = self.language_handler.install_argv(list(libraries))
        with self._lock:
            self._require_open()
            if timeout is None:
                timeout = max(self.config.default_timeout or 0.0, INSTALL_TIMEOUT_FLOOR)
            self._log("installing %s", ", ".join(libraries))
            started = time.monotonic()
            env = environment.merge(self.config.environment, self.language_handler.install_env())
            result = self._execute(
                argv,
                self._deadline(timeout),
                started,
                env=env,
                network=self.config.full_network,
                egress=None if self.config.full_network else self._install_policy(env),
                writable_libs=True,
            )
            if result.exit_code != 0:
                raise PackageInstallError(
                    f"installing {', '.join(libraries)} failed with exit code {result.exit_code}:"
                    f" {result.stderr.strip()[-2000:]}",
                    exit_code=result.exit_code,
                    stdout=result.stdout,
                    stderr=result.stderr,
                )
            return result

    def _install_policy(self, env: Mapping[str, str]) -> EgressPolicy:
        """An install reaches its package indexes and what the session's policy allows."""
        hosts = self.language_handler.index_hosts(env)
        return (self.config.egress or NO_EGRESS).extended(hosts)

    # --- the previous generation's methods ------------------------------------------------
    def execute_commands(
        self,
        commands: Sequence[Command],
        workdir: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ConsoleOutput:
        """Run shell lines in order, each a string or `(line, workdir)`; stop at the first that
        fails and return its result (else the last one's; an empty list gives exit code 0)."""
        result = ConsoleOutput()
        for command in commands:
            line, where = (command, workdir) if isinstance(command, str) else command
            result = self.execute_command(
                str(line), workdir=where or workdir, on_stdout=on_stdout, on_stderr=on_stderr
            )
            if result.exit_code != 0:
                break
        return result

    def get_archive(self, path: str) -> tuple[bytes, dict[str, object]]:
        """A tar stream of the sandbox path `path` (relative to the workdir) and Docker-style
        stat facts about it: `name`, `size`, `mode`, `mtime`, `linkTarget`."""
        with self._lock:
            sandbox = self._require_open()
            data = sandbox.get_archive(self._sandbox_path(path))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            top = next((m for m in tar.getmembers() if "/" not in m.name.strip("/")), None)
        stat: dict[str, object] = {"name": posixpath.basename(path.rstrip("/")) or path}
        if top is not None:
            stat.update(size=top.size, mode=top.mode, mtime=top.mtime, linkTarget=top.linkname)
        return data, stat

    def environment_setup(self) -> None:
        """Install the session's `libraries` (our sessions need no other set-up)."""
        self.install(list(self.config.libraries))

    @property
    def container(self) -> object | None:
        """The backend's own handle on the sandbox: the SDK's container object for Docker and
        Podman, the pod's name for Kubernetes; None for the embedded backend or when closed."""
        sandbox = self._sandbox
        return sandbox.handle() if sandbox is not None else None

    def _refuse_restricted_libraries(self, libraries: Sequence[str]) -> None:
        """A library the policy restricts as a module is not installed (as in 0.3.x)."""
        policy = self.config.security_policy
        for library in libraries:
            name = re.split(r"[\[<>=!~;@ ]", library.strip(), maxsplit=1)[0]
            for module in (policy.restricted_modules or []) if policy else []:
                if module.name == name:
                    raise SecurityViolationError(
                        f"Library {library} is not allowed to be installed: the session's "
                        f"security policy restricts the module {module.name!r} "
                        f"({module.description})"
                    )

    # --- files -------------------------------------------------------------------------------
    def copy_to_runtime(self, src: str | os.PathLike[str], dest: str) -> None:
        """Copy a host file or directory to `dest` (a path in the sandbox; relative to workdir)."""
        target = self._sandbox_path(dest)
        parent, name = posixpath.split(target)
        data = archive.pack(src, name)
        with self._lock:
            sandbox = self._require_open()
            self._mkdir(parent)
            with untranslated(f"copying into {parent}"):
                sandbox.put_archive(parent, data)
            self._log("copied %s to %s", src, target)

    def copy_from_runtime(self, src: str, dest: str | os.PathLike[str]) -> list[Path]:
        """Copy a sandbox file or directory to the host path `dest`; returns the files written."""
        with self._lock:
            sandbox = self._require_open()
            with untranslated(f"copying {src} out of the sandbox"):
                data = sandbox.get_archive(self._sandbox_path(src))
        written = archive.extract_to(data, dest, max_bytes=self.config.limits.disk)
        self._log("copied %s to %s", src, dest)
        return written

    def _sandbox_path(self, path: str) -> str:
        if not isinstance(path, str) or not path:
            raise ConfigurationError("a sandbox path must be a non-empty string")
        return posixpath.normpath(posixpath.join(self.config.workdir, path))

    def _mkdir(self, path: str) -> None:
        result = self._execute(["mkdir", "-p", "--", path], self._deadline(None), time.monotonic())
        if result.exit_code != 0:
            raise SessionStateError(f"cannot create {path} in the sandbox: {result.stderr.strip()}")

    # --- the one place output is collected ---------------------------------------------------
    def _deadline(self, timeout: float | None) -> float | None:
        check_timeout(timeout, "timeout")
        limit = timeout if timeout is not None else self.config.run_timeout
        deadline = None if limit is None else time.monotonic() + limit
        if self._expires_at is not None:
            deadline = self._expires_at if deadline is None else min(deadline, self._expires_at)
        return deadline

    def _execute(
        self,
        argv: Sequence[str],
        deadline: float | None,
        started: float,
        *,
        files: dict[str, bytes] | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        stdin: str | bytes | None = None,
        network: bool = False,
        egress: EgressPolicy | None = None,
        writable_libs: bool = False,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ConsoleOutput:
        """Run one command; with an egress policy (`egress`, else the session's) its only way
        out is the session's gate, serving under that policy for the command's duration."""
        sandbox = self._require_open()
        policy = egress or (None if network else self.config.egress)
        with self._gated(policy) as gated:
            request = ExecRequest(
                argv=argv,
                env={**(env or {}), **PROXY_ENV} if gated.attachment else (env or {}),
                cwd=self._sandbox_path(cwd) if cwd else None,
                stdin=stdin.encode() if isinstance(stdin, str) else stdin,
                files=files or {},
                network=network,
                writable_libs=writable_libs,
                egress=gated.attachment,
            )
            result = self._exec_and_collect(
                sandbox, request, deadline, started, (on_stdout, on_stderr)
            )
        return dataclasses.replace(result, egress_denied=gated.denied)

    @contextlib.contextmanager
    def _gated(self, policy: EgressPolicy | None) -> Iterator[_Gated]:
        """The session's gate serving `policy` for one command (nothing when it is None)."""
        if policy is None:
            yield _Gated()
            return
        if self._gate is None:
            self._gate = Gate(policy)
        gate = self._gate
        gated = _Gated(GateAttachment(gate))
        before = gate.denied
        try:
            with gate.using(policy):
                yield gated
        finally:
            if gated.attachment is not None:
                gated.attachment.close()
            gated.denied = gate.denied - before

    def _exec_and_collect(
        self,
        sandbox: Sandbox,
        request: ExecRequest,
        deadline: float | None,
        started: float,
        callbacks: tuple[OutputCallback | None, OutputCallback | None],
    ) -> ConsoleOutput:
        argv = request.argv
        on_stdout, on_stderr = callbacks
        for name, callback in (("on_stdout", on_stdout), ("on_stderr", on_stderr)):
            if inspect.iscoroutinefunction(callback):
                raise ConfigurationError(
                    f"{name} is a coroutine function, which a sync session cannot await; use "
                    "AsyncSandboxSession (llm_sandbox.aio), or pass a plain function"
                )
        limit = self.config.limits.output
        errors = self.config.encoding_errors
        out = CappedStream("stdout", limit, on_stdout, errors)
        err = CappedStream("stderr", limit, on_stderr, errors)
        interrupt = current_interrupt() or Interrupt()
        if interrupt.is_set():
            raise SandboxInterruptedError(f"{interrupt.reason}; the command was not started")
        self._log("exec %s", " ".join(argv))
        with untranslated("starting the command"):
            process: Process = GuardedProcess(sandbox.exec(request))
        self._running = interrupt
        try:
            status = _drain(process, deadline, out, err, interrupt)
        except _Deadline:
            kill_error = _kill(process)
            if interrupt.is_set():
                raise _interrupted_error(interrupt, out, err, kill_error) from kill_error
            raise self._timeout_error(deadline, started, out, err, kill_error) from kill_error
        except BaseException:
            _kill(process)
            raise
        finally:
            self._running = None
        return ConsoleOutput(
            exit_code=status.exit_code,
            stdout=_decoded(out, err, status),
            stderr=_decoded(err, out, status),
            wall_time=time.monotonic() - started,
            stdout_truncated=out.truncated,
            stderr_truncated=err.truncated,
            out_of_memory=status.out_of_memory,
        )

    def _timeout_error(
        self,
        deadline: float | None,
        started: float,
        out: CappedStream,
        err: CappedStream,
        kill_error: SandboxError | None,
    ) -> SandboxTimeoutError:
        elapsed = (deadline or time.monotonic()) - started
        expired = self._expires_at is not None and deadline == self._expires_at
        if expired:
            # Tearing the sandbox down ends whatever the kill could not confirm.
            self._expire()
            message = (
                f"the session expired during the run (session_timeout="
                f"{self.config.session_timeout} s); every process was killed and the sandbox "
                "torn down"
            )
            kill_error = None
        elif kill_error is None:
            message = (
                f"execution timed out after {elapsed:.1f} s and every process it started was "
                "killed; pass timeout= (or execution_timeout=) to allow longer"
            )
        elif isinstance(kill_error, KillUnconfirmed):
            message = (
                f"execution timed out after {elapsed:.1f} s, but the end of the processes it "
                f"started could not be confirmed within {KILL_GRACE:.0f} s ({kill_error}); the "
                "next command waits for them"
            )
        else:
            # The sandbox itself is gone, and every process with it.
            message = f"execution timed out after {elapsed:.1f} s, and then {kill_error}"
            kill_error = None
        self._log("%s", message)
        return SandboxTimeoutError(
            message,
            timeout=elapsed,
            stdout=out.replaced(),
            stderr=err.replaced(),
            session_expired=expired,
            processes_killed=kill_error is None,
        )

    def _log(self, message: str, *args: object) -> None:
        self.logger.log(logging.INFO if self.config.verbose else logging.DEBUG, message, *args)


def _kill(process: Process) -> SandboxError | None:
    """Kill everything `process` started; the error when that could not be confirmed."""
    try:
        process.kill()
    except SandboxError as exc:
        logging.getLogger("llm_sandbox").warning("%s", exc)
        return exc
    return None


def _interrupted_error(
    interrupt: Interrupt, out: CappedStream, err: CappedStream, kill_error: SandboxError | None
) -> SandboxInterruptedError:
    if kill_error is None:
        message = f"{interrupt.reason}; every process the command started was killed"
    else:
        message = f"{interrupt.reason}; killing the command's processes failed: {kill_error}"
    return SandboxInterruptedError(
        message,
        stdout=out.replaced(),
        stderr=err.replaced(),
        processes_killed=kill_error is None,
    )


def _drain(
    process: Process,
    deadline: float | None,
    out: CappedStream,
    err: CappedStream,
    interrupt: Interrupt,
) -> ExitStatus:
    if not read_to_end(
        process,
        deadline,
        lambda stream, data: (out if stream == STDOUT else err).feed(data),
        interrupt,
    ):
        raise _Deadline
    out.finish()
    err.finish()
    return process.wait()


def _decoded(stream: CappedStream, other: CappedStream, status: ExitStatus) -> str:
    """`stream`'s text; with encoding_errors="strict", output that is not UTF-8 is an error
    that still carries the run's exit code and both streams."""
    try:
        return stream.text()
    except UnicodeDecodeError as exc:
        out, err = (stream, other) if stream.name == "stdout" else (other, stream)
        raise OutputDecodeError(
            f"the program's {stream.name} is not valid UTF-8 ({exc.reason} at byte "
            f"{exc.start}) and encoding_errors='strict'; the run finished with exit code "
            f"{status.exit_code}. Use encoding_errors='replace' (the default) to get the text "
            "with replacement characters",
            exit_code=status.exit_code,
            raw_stdout=out.data,
            raw_stderr=err.data,
            stdout=out.replaced(),
            stderr=err.replaced(),
        ) from exc


def _ensure_visible(logger: logging.Logger) -> None:
    """verbose=True must show something even when the application configured no logging."""
    if logger.hasHandlers():
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def __getattr__(name: str) -> object:
    """The previous generation's names in this module, loaded on first use (they build on
    `SandboxSession`, so they live in `llm_sandbox.backend_sessions`)."""
    if name in ("create_session", "SandboxDockerSession", "SandboxPodmanSession"):
        from llm_sandbox import backend_sessions

        return getattr(backend_sessions, name)
    if name in ("ContainerPoolManager", "PooledSandboxSession", "ArtifactPooledSandboxSession"):
        from llm_sandbox import pool

        return getattr(pool, name)
    if name == "ArtifactSandboxSession":
        from llm_sandbox.artifact_session import ArtifactSandboxSession

        return ArtifactSandboxSession
    if name == "InteractiveSandboxSession":
        from llm_sandbox.interactive import InteractiveSandboxSession

        return InteractiveSandboxSession
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
