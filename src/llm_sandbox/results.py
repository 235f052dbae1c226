"""What a run returns: the program's exit code and output, and whether a limit cut it short."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Verdict(str, Enum):
    """How a run ended, as far as the sandbox can tell from outside the program."""

    OK = "ok"
    """The program exited with status 0."""
    ERROR = "error"
    """The program exited with a non-zero status of its own."""
    COMPILE_ERROR = "compile_error"
    """The compile stage failed; the program never ran. Diagnostics are in stderr."""
    OUT_OF_MEMORY = "out_of_memory"
    """The memory limit was hit and the kernel killed the program."""


@dataclass(frozen=True)
class ConsoleOutput:
    """The result of `run()` / `execute_command()`.

    `exit_code` is exactly the program's (128 + N when it died of signal N). Output is decoded as
    UTF-8 with replacement; when a stream exceeded the output limit only its first bytes are kept
    and the matching `*_truncated` flag is set.
    """

    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    wall_time: float = 0.0
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    out_of_memory: bool = False
    compile_failed: bool = False

    @property
    def truncated(self) -> bool:
        """True when either stream was cut at the output limit."""
        return self.stdout_truncated or self.stderr_truncated

    @property
    def verdict(self) -> Verdict:
        """A one-word summary of how the run ended."""
        if self.compile_failed:
            return Verdict.COMPILE_ERROR
        if self.out_of_memory:
            return Verdict.OUT_OF_MEMORY
        return Verdict.OK if self.exit_code == 0 else Verdict.ERROR

    @property
    def text(self) -> str:
        """The program's standard output."""
        return self.stdout

    def success(self) -> bool:
        """True when the program exited with status 0 and no limit was hit."""
        return self.verdict is Verdict.OK


@dataclass(frozen=True)
class PlotOutput:
    """A figure captured from a run."""

    format: str
    content_base64: str
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class ExecutionResult(ConsoleOutput):
    """A `ConsoleOutput` plus the plots the run produced."""

    plots: list[PlotOutput] = field(default_factory=list)
