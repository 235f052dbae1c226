"""What a run returns: the program's exit code and output, and whether a limit cut it short."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import StrEnum


class Verdict(StrEnum):
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
    """A figure captured from a run.

    `format` is the file format (png, svg, jpeg, gif, webp, pdf, html); `content_base64` the file,
    base64-encoded; `width` and `height` its size in pixels when the format says (an SVG's size
    in CSS pixels), else None. `name` is the file's name in the artifacts directory when the
    code wrote it there itself, None for a figure a plotting hook captured.
    """

    format: str
    content_base64: str
    width: int | None = None
    height: int | None = None
    name: str | None = None

    @property
    def content(self) -> bytes:
        """The decoded file."""
        return base64.b64decode(self.content_base64)


@dataclass(frozen=True)
class ArtifactFile:
    """A file the code wrote to the artifacts directory (`$LLM_SANDBOX_ARTIFACTS_DIR`).

    `name` is its path relative to that directory (POSIX separators, never absolute or `..`).
    """

    name: str
    mime_type: str
    content: bytes

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass(frozen=True)
class ExecutionResult(ConsoleOutput):
    """A `ConsoleOutput` plus what the run produced besides output.

    `plots` are the figures of this run, in the order they were produced. `files` are the other
    files the code wrote to the artifacts directory. When plots and files together exceeded the
    session's `max_artifact_bytes`, what did not fit is left out, `artifacts_truncated` is set and
    `dropped_artifacts` names each file left out and why. `warnings` says what kept capture from
    working fully (a plotting library missing in the sandbox, a hook that failed).
    """

    plots: list[PlotOutput] = field(default_factory=list)
    files: list[ArtifactFile] = field(default_factory=list)
    artifacts_truncated: bool = False
    dropped_artifacts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
