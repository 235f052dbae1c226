"""`ArtifactSandboxSession`: a `SandboxSession` whose runs also return plots and files.

How capture works is described in `llm_sandbox.artifacts` (the per-run directory) and in each
language handler's `plot_capture` (the hooks). This module only wires them into the session:
it adds the hook files and environment to every run, reads the run's directory back afterwards,
and keeps the session's plot history for `plots` / `clear_plots()`.

Plot semantics: every run's result holds the plots *that run* produced, never earlier ones
(each run is a new process, so no figure outlives its run). The session also keeps every plot
since it opened, or since the last `clear_plots()`, in `session.plots`; `run(...,
clear_plots=True)` empties that history first.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Unpack

from llm_sandbox import artifacts
from llm_sandbox.config import parse_size
from llm_sandbox.const import SandboxBackend
from llm_sandbox.exceptions import ConfigurationError, SandboxRuntimeError, UnsafeArchiveError
from llm_sandbox.language_handlers.base import CommandPlan, PlotCapture
from llm_sandbox.options import SessionOptions
from llm_sandbox.output import OutputCallback
from llm_sandbox.results import ConsoleOutput, ExecutionResult, PlotOutput
from llm_sandbox.session import SandboxSession

if TYPE_CHECKING:
    from llm_sandbox.pool.manager import ContainerPoolManager


class ArtifactSandboxSession(SandboxSession):
    """Runs code like `SandboxSession` and returns an `ExecutionResult` with plots and files.

    `enable_plotting` turns the language's plotting hooks on (Python: matplotlib, seaborn, PIL,
    plotly; R: base graphics and ggplot2); files written to `$LLM_SANDBOX_ARTIFACTS_DIR` come
    back either way. `max_artifact_bytes` (bytes or a size such as `'32m'`) caps what one run
    returns; what does not fit is listed in the result's `dropped_artifacts`. Every other
    option is `SandboxSession`'s.
    """

    def __init__(
        self,
        lang: str = "python",
        *,
        enable_plotting: bool = True,
        max_artifact_bytes: int | str = artifacts.DEFAULT_MAX_ARTIFACT_BYTES,
        backend: SandboxBackend | str | None = None,
        pool: ContainerPoolManager | None = None,
        **options: Unpack[SessionOptions],
    ) -> None:
        if not isinstance(enable_plotting, bool):
            raise ConfigurationError(
                f"enable_plotting must be True or False, not {enable_plotting!r}"
            )
        super().__init__(lang, backend=backend, **options)
        self.enable_plotting = enable_plotting
        self.max_artifact_bytes = parse_size(max_artifact_bytes, "max_artifact_bytes")
        self.missing_plot_libraries: tuple[str, ...] = ()
        """Plotting libraries the sandbox lacked when last checked (at open and after installs)."""
        self._layout: artifacts.RunLayout | None = None
        self._history: list[PlotOutput] = []

    @classmethod
    def pooled_variant(cls) -> type[SandboxSession]:
        from llm_sandbox.pool.session import ArtifactPooledSandboxSession

        return ArtifactPooledSandboxSession

    # --- plot history --------------------------------------------------------------------------
    @property
    def plots(self) -> list[PlotOutput]:
        """Every plot captured since the session opened or `clear_plots()` was last called."""
        return list(self._history)

    def clear_plots(self) -> None:
        """Forget the plot history (results already returned keep their plots)."""
        with self._lock:
            self._history.clear()

    # --- lifecycle and runs --------------------------------------------------------------------
    def open(self) -> None:
        with self._lock:
            super().open()
            try:
                self._check_plotting()
            except BaseException:
                self.close()
                raise

    def install(
        self, libraries: Sequence[str] | None = None, timeout: float | None = None
    ) -> ConsoleOutput:
        with self._lock:
            result = super().install(libraries, timeout)
            if self.missing_plot_libraries:
                self._check_plotting()
            return result

    def run(  # type: ignore[override]  # noqa: PLR0917 - the previous generation's positional order
        self,
        code: str,
        libraries: Sequence[str] | None = None,
        timeout: float | None = None,
        clear_plots: bool = False,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        *,
        stdin: str | bytes | None = None,
        args: Sequence[str] | None = None,
    ) -> ExecutionResult:
        """Run `code` like `SandboxSession.run`; the result adds this run's plots and files.

        `clear_plots=True` empties the session's plot history (`plots`) before the run. The
        positional order is the previous generation's (`clear_plots` before the callbacks).
        """
        with self._lock:
            if clear_plots:
                self._history.clear()
            self._layout = None
            console = super().run(
                code,
                libraries,
                timeout,
                stdin=stdin,
                args=args,
                on_stdout=on_stdout,
                on_stderr=on_stderr,
            )
            collected = self._collect(console)
            self._history.extend(collected.plots)
            return ExecutionResult(
                **{f.name: getattr(console, f.name) for f in dataclasses.fields(ConsoleOutput)},
                plots=collected.plots,
                files=collected.files,
                artifacts_truncated=collected.truncated,
                dropped_artifacts=collected.dropped,
                warnings=[*self._missing_warning(), *collected.warnings],
            )

    def _prepare_run(
        self, plan: CommandPlan, env: dict[str, str]
    ) -> tuple[CommandPlan, dict[str, str]]:
        layout = artifacts.RunLayout.for_run(self._run_count)
        self._layout = layout
        files = dict(plan.files)
        capture = self._capture(env)
        if capture is not None:
            files.update(capture.files)
            env = {**env, **capture.env}
        env.update(layout.env())
        return dataclasses.replace(plan, files=files, run=layout.wrap(plan.run)), env

    def _capture(self, env: dict[str, str]) -> PlotCapture | None:
        if not self.enable_plotting:
            return None
        return self.language_handler.plot_capture(env)

    def _collect(self, console: ConsoleOutput) -> artifacts.Collected:
        layout = self._layout
        if layout is None or console.compile_failed:
            return artifacts.Collected()
        sandbox = self._require_open()
        collected = artifacts.Collected()
        try:
            data = sandbox.get_archive(layout.run_dir)
            return artifacts.collect(
                data, budget=self.max_artifact_bytes, max_stream_bytes=self.config.limits.disk
            )
        except FileNotFoundError:
            collected.warnings.append(
                f"the artifacts directory {layout.run_dir} was gone after the run (did the "
                "program delete it, or is /tmp full?); no plots or files could be collected"
            )
        except (SandboxRuntimeError, UnsafeArchiveError) as exc:
            # The run itself is over and its output is good: report, do not lose it.
            collected.warnings.append(f"plots and files could not be collected: {exc}")
        return collected

    # --- what the sandbox lacks ------------------------------------------------------------------
    def _check_plotting(self) -> None:
        """Ask the sandbox which plotting libraries it lacks; warn once per finding."""
        run_env = self._run_env()
        capture = self._capture(run_env)
        if capture is None or not capture.probe:
            self.missing_plot_libraries = ()
            return
        env = {**run_env, **capture.env}
        result = self._execute(capture.probe, self._deadline(None), time.monotonic(), env=env)
        if result.exit_code != 0:
            problem = result.stderr.strip()[-500:]
            self.logger.warning("could not check the plotting libraries: %s", problem)
            return
        missing = tuple(result.stdout.split())
        if missing and missing != self.missing_plot_libraries:
            self.missing_plot_libraries = missing
            self.logger.warning("%s", self._missing_warning()[0])
        self.missing_plot_libraries = missing

    def _missing_warning(self) -> list[str]:
        if not self.missing_plot_libraries:
            return []
        where = (
            "the host's interpreter, which the local backend runs"
            if self.config.backend == SandboxBackend.LOCAL
            else "the image"
        )
        return [
            f"plotting libraries missing in the {self.config.lang} sandbox: "
            f"{', '.join(self.missing_plot_libraries)}; figures made with them are not "
            f"captured. Install them in {where}, or with session.install([...])"
        ]
