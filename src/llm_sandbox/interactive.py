"""`InteractiveSandboxSession`: a session whose cells run in stateful kernels.

The session opens a sandbox like `SandboxSession` and starts a kernel of its language in it
(`llm_sandbox.kernels`): one long-lived process per language, started through the sandbox's
`exec` with `ExecRequest(interactive=True)`, so it runs with the same isolation and limits as
any run, on every backend. `run()` sends a cell to it; variables, imports, functions and open
files persist until the session closes or the kernel restarts. `create_context(lang=...)` adds
a kernel of another language in the same sandbox (sharing its files).

Everything here goes through the session's lock: cells, commands, installs and file copies
run one at a time, so two cells sent at once are serialized, never interleaved.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Unpack

from llm_sandbox import environment
from llm_sandbox.backends.base import ExecRequest, InteractiveProcess, Sandbox
from llm_sandbox.config import ResourceLimits, SessionConfig, parse_size
from llm_sandbox.const import SandboxBackend
from llm_sandbox.exceptions import (
    ConfigurationError,
    KernelError,
    PackageInstallError,
    SandboxError,
)
from llm_sandbox.kernels import (
    RUNNERS_DIR,
    HistoryEntry,
    InstallReply,
    InstallRequest,
    InteractiveSettings,
    Kernel,
    KernelInfo,
    KernelType,
    kernel_argv,
    runner_files,
    runner_spec,
)
from llm_sandbox.kernels.kernel import ResultCallback
from llm_sandbox.kernels.process_channel import ProcessChannel
from llm_sandbox.language_handlers.base import AbstractLanguageHandler
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory
from llm_sandbox.options import SessionOptions
from llm_sandbox.output import OutputCallback
from llm_sandbox.results import CellResult
from llm_sandbox.session import SandboxSession, current_interrupt

__all__ = [
    "RESULT_POLL_INTERVAL",
    "RUNTIME_START_TIMEOUT",
    "InteractiveSandboxSession",
    "InteractiveSettings",
    "KernelContext",
    "KernelType",
]

RUNTIME_START_TIMEOUT: Final = 30.0
"""Seconds a kernel has to start (the previous generation's name)."""
RESULT_POLL_INTERVAL: Final = 0.2
"""Kept for compatibility: results arrive as messages, nothing polls."""

if TYPE_CHECKING:
    from llm_sandbox.pool.manager import ContainerPoolManager

logger = logging.getLogger("llm_sandbox")


class KernelContext:
    """A kernel of one language in an interactive session's sandbox (`create_context`).

    `run()` sends a cell to this kernel; the session's other kernels keep their own state
    but share the sandbox's files. Closed with the session, or by `close()`.
    """

    def __init__(self, session: InteractiveSandboxSession, lang: str) -> None:
        self.session = session
        self.language = runner_spec(lang).language
        self._handler = LanguageHandlerFactory.create_handler(self.language, session.logger)
        self.kernel = Kernel(
            self._launch,
            kernel_argv(self.language),
            language=self.language,
            start_timeout=RUNTIME_START_TIMEOUT,
            history_size=session.settings.history_size,
            max_output=session.config.limits.output,
            on_install=self._install,
        )
        self.restarts = 0

    def _launch(self, argv: Sequence[str]) -> ProcessChannel:
        sandbox = self.session._require_open()
        return launch_kernel(sandbox, self.session._kernel_env(self._handler), self.language, argv)

    def adopt(self, kernel: Kernel) -> KernelInfo:
        """Take over a kernel already started in the session's sandbox (a pool's warm
        kernel) instead of starting one."""
        kernel.rebind(
            self._launch,
            history_size=self.session.settings.history_size,
            max_output=self.session.config.limits.output,
            on_install=self._install,
        )
        self.kernel = kernel
        return self.start()

    def _install(self, request: InstallRequest) -> InstallReply:
        if self.language != self.session.config.lang:
            return InstallReply(
                exit_code=1,
                stderr=f"installs go through the session's language ({self.session.config.lang});"
                " call session.install() for it\n",
            )
        try:
            result = self.session.install(request.packages)
        except PackageInstallError as exc:
            return InstallReply(exit_code=exc.exit_code or 1, stdout=exc.stdout, stderr=exc.stderr)
        except SandboxError as exc:
            return InstallReply(exit_code=1, stderr=f"{exc}\n")
        path = self.session._kernel_env(self._handler).get("PYTHONPATH", "")
        return InstallReply(
            exit_code=result.exit_code,
            stdout=result.stdout,
            stderr=result.stderr,
            sys_path=[p for p in path.split(":") if p],
        )

    def start(self) -> KernelInfo:
        with self.session._lock:
            return self.kernel.start()

    def run(
        self,
        code: str,
        timeout: float | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        on_result: ResultCallback | None = None,
    ) -> CellResult:
        """Run one cell in this kernel (see `InteractiveSandboxSession.run`)."""
        if not isinstance(code, str):
            raise ConfigurationError(f"code must be a string, got {type(code).__name__}")
        session = self.session
        with session._lock:
            session._require_open()
            session._enforce_policy(code, self.language)
            limit = timeout if timeout is not None else session.settings.timeout
            try:
                result = self.kernel.execute(
                    code,
                    timeout=limit,
                    on_stdout=on_stdout,
                    on_stderr=on_stderr,
                    on_result=on_result,
                    interrupt=current_interrupt(),
                )
            except SandboxError as exc:
                if getattr(exc, "kernel_restarted", False):
                    self.restarts += 1
                raise
            if result.kernel_restarted:
                self.restarts += 1
            return _with_traceback(result)

    def interrupt(self, reason: str = "the run was interrupted") -> bool:
        """Interrupt the running cell the language's own way (any thread); whether one was
        running. The cell ends with the language's own error (KeyboardInterrupt in Python),
        which says what happened; `reason` is there for the signature every session's
        `interrupt` shares and is logged."""
        running = self.kernel.interrupt()
        if running:
            logger.info("%s kernel: %s", self.language, reason)
        return running

    def restart(self) -> KernelInfo:
        """A fresh kernel: every variable, import and function is gone. A cell running in
        another thread ends at once (error `KernelRestarted`)."""
        self.session._require_open()
        self.restarts += 1
        return self.kernel.restart()

    @property
    def history(self) -> list[HistoryEntry]:
        """The last `history_size` cells, oldest first."""
        return self.kernel.history

    def close(self) -> None:
        self.kernel.close()


def launch_kernel(
    sandbox: Sandbox, env: dict[str, str], language: str, argv: Sequence[str]
) -> ProcessChannel:
    """Start the kernel runner `argv` of `language` in `sandbox` with environment `env`."""
    files = {f"{RUNNERS_DIR}/{name}": data for name, data in runner_files().items()}
    process = sandbox.exec(ExecRequest(argv=argv, env=env, files=files, interactive=True))
    if not isinstance(process, InteractiveProcess):
        process_type = type(process).__name__
        raise KernelError(
            f"the sandbox returned a {process_type} for an interactive command: its "
            "backend does not support kernels",
            language=language,
        )
    return ProcessChannel(process)


def kernel_env(config: SessionConfig, handler: AbstractLanguageHandler) -> dict[str, str]:
    """A kernel's environment: its language's run environment under the user's."""
    return environment.merge(config.environment, handler.run_env(config.workdir))


class InteractiveSandboxSession(SandboxSession):
    """A `SandboxSession` whose `run()` executes cells in a stateful kernel.

    `lang` is "python" (IPython), "javascript" (Node) or "r"; other languages raise
    `LanguageNotSupportedError`. `max_memory` is the sandbox's memory limit (e.g. "1GB"; an
    explicit `limits=` wins), `history_size` how many cells `history` keeps, `timeout` each
    cell's default timeout in seconds (None: no limit). `interactive_settings` gives these
    as one `InteractiveSettings` (its values win). `pool=` borrows a sandbox from a pool (one
    made with `kernels=True` has the kernel started). Every other option is `SandboxSession`'s.
    """

    def __init__(
        self,
        lang: str = "python",
        *,
        backend: SandboxBackend | str | None = None,
        kernel_type: KernelType | str = KernelType.IPYTHON,
        max_memory: str | int | None = "1GB",
        history_size: int = 1000,
        timeout: float | None = 300.0,
        interactive_settings: InteractiveSettings | None = None,
        pool: ContainerPoolManager | None = None,
        **options: Unpack[SessionOptions],
    ) -> None:
        try:
            settings = interactive_settings or InteractiveSettings(
                kernel_type=KernelType(kernel_type),
                max_memory=max_memory
                if isinstance(max_memory, str) or max_memory is None
                else None,
                history_size=history_size,
                timeout=timeout,
            )
        except ValueError as exc:
            raise ConfigurationError(f"interactive settings: {exc}") from exc
        if not isinstance(settings, InteractiveSettings):
            raise ConfigurationError("interactive_settings must be an InteractiveSettings")
        memory = settings.max_memory if interactive_settings else max_memory
        if memory is not None and "limits" not in options:
            options["limits"] = ResourceLimits(memory=parse_size(memory, "max_memory"))
        super().__init__(lang, backend=backend, **options)
        self.settings = settings
        self.kernel_type = settings.kernel_type
        runner_spec(self.config.lang)  # other languages: a clear error now
        self._contexts: list[KernelContext] = []
        self._main: KernelContext | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def open(self) -> None:
        """Open the sandbox and start the session's kernel (its errors name what is missing)."""
        with self._lock:
            super().open()
            try:
                self._main = KernelContext(self, self.config.lang)
                self._contexts = [self._main]
                self._start_main(self._main)
            except BaseException:
                self.close()
                raise

    def _start_main(self, context: KernelContext) -> None:
        """Start the session's kernel (a pooled session adopts the pool's warm one)."""
        context.start()

    @classmethod
    def pooled_variant(cls) -> type[SandboxSession]:
        from llm_sandbox.pool.session import PooledInteractiveSandboxSession

        return PooledInteractiveSandboxSession

    def close(self) -> None:
        """Stop every kernel, then tear the sandbox down (nothing is left running)."""
        # Kernels close first without the session's lock: a cell running in another thread
        # ends at once (its kernel is killed) instead of at its timeout.
        self._close_kernels()
        super().close()

    def _teardown(self) -> None:
        """Kernels go before their sandbox (also when session_timeout expires)."""
        self._close_kernels()
        super()._teardown()

    def _close_kernels(self) -> None:
        contexts, self._contexts, self._main = self._contexts, [], None
        for context in contexts:
            try:
                context.close()
            except SandboxError as exc:
                logger.warning("closing the %s kernel: %s", context.language, exc)

    # --- cells -------------------------------------------------------------------------------
    def run(  # type: ignore[override]
        self,
        code: str,
        libraries: Sequence[str] | None = None,
        timeout: float | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        *,
        on_result: ResultCallback | None = None,
    ) -> CellResult:
        """Run one cell in the session's kernel; its state persists to the next cell.

        Returns a `CellResult` (a `ConsoleOutput` with `execution_count`, `results` as MIME
        bundles and `error`). A cell that raises returns its `error`; the kernel lives on.
        Past `timeout` (default: the session's) the cell is interrupted and
        `CellTimeoutError` (a `SandboxTimeoutError`) raised; `kernel_restarted` says whether
        the kernel had to be killed and restarted. `libraries` are installed first.
        """
        if libraries:
            self.install(libraries)
        return self._context().run(
            code, timeout=timeout, on_stdout=on_stdout, on_stderr=on_stderr, on_result=on_result
        )

    def interrupt(self, reason: str = "the run was interrupted") -> bool:
        """Interrupt the running cell (KeyboardInterrupt in Python: the kernel keeps its
        state) and stop a command the session is running (as `SandboxSession.interrupt`);
        from any thread. Returns whether anything was running."""
        stopped = super().interrupt(reason)
        main = self._main
        return (main is not None and main.interrupt()) or stopped

    def restart(self) -> KernelInfo:
        """Restart the session's kernel: its state is gone."""
        return self._context().restart()

    @property
    def history(self) -> list[HistoryEntry]:
        """The last `history_size` cells of the session's kernel, oldest first."""
        main = self._main
        return main.history if main is not None else []

    @property
    def kernel_restarts(self) -> int:
        """How often a kernel of this session was restarted (timeouts it did not survive,
        deaths, `restart()`)."""
        return sum(context.restarts for context in self._contexts)

    @property
    def kernel_info(self) -> KernelInfo | None:
        """What the session's kernel reported about itself."""
        main = self._main
        return main.kernel.info if main is not None else None

    def create_context(self, lang: str | None = None) -> KernelContext:
        """Start a kernel of `lang` (default: the session's) in this sandbox; its `run()`
        sends cells to it. It shares the sandbox's files, not its state."""
        with self._lock:
            self._require_open()
            context = KernelContext(self, lang or self.config.lang)
            context.start()
            self._contexts.append(context)
            return context

    # --- helpers -----------------------------------------------------------------------------
    def _context(self) -> KernelContext:
        self._require_open()
        if self._main is None:
            raise KernelError("the session's kernel did not start", language=self.config.lang)
        return self._main

    def _kernel_env(self, handler: AbstractLanguageHandler) -> dict[str, str]:
        return kernel_env(self.config, handler)


def _with_traceback(result: CellResult) -> CellResult:
    """A failed cell's traceback also on its stderr, as the interpreter would print it (code
    that reads `stderr` of a failed run, as for `SandboxSession.run`, finds it there)."""
    error = result.error
    if error is None or error.name in ("KernelDied", "KernelRestarted"):
        return result
    text = "\n".join(error.traceback) if error.traceback else f"{error.name}: {error.value}"
    if not text or text in result.stderr:
        return result
    separator = "" if not result.stderr or result.stderr.endswith("\n") else "\n"
    return dataclasses.replace(result, stderr=f"{result.stderr}{separator}{text}\n")
