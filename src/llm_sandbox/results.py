"""What a run returns: the program's exit code and output, and whether a limit cut it short.

The shapes are the previous generation's (`llm_sandbox.data` re-exports them): positional
`ConsoleOutput(exit_code, stderr, stdout)`, `ExecutionResult(exit_code, stderr, stdout, plots)`,
`PlotOutput(format, content_base64, width, height, dpi)`; everything we added is keyword-only.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

StreamCallback = Callable[[str], None]
"""A live output callback: receives each decoded chunk of stdout or stderr as it arrives."""


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
    stderr: str = ""
    stdout: str = ""
    wall_time: float = field(default=0.0, kw_only=True)
    stdout_truncated: bool = field(default=False, kw_only=True)
    stderr_truncated: bool = field(default=False, kw_only=True)
    out_of_memory: bool = field(default=False, kw_only=True)
    compile_failed: bool = field(default=False, kw_only=True)
    egress_denied: int = field(default=0, kw_only=True)
    """Connection attempts the egress gate refused during this call (see `network_log`)."""
    compile_stdout: str = field(default="", kw_only=True)
    """What a compile stage that succeeded printed (a failed one's output is stdout/stderr)."""
    compile_stderr: str = field(default="", kw_only=True)
    """What a compile stage that succeeded printed on stderr, e.g. warnings."""

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

    def text(self) -> str:
        """The program's standard output (deprecated since the previous generation: use
        `stdout`)."""
        warnings.warn(
            "ConsoleOutput.text() is deprecated; use the stdout attribute",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.stdout

    def success(self) -> bool:
        """True when the program exited with status 0 and no limit was hit."""
        return self.verdict is Verdict.OK

    def to_dict(self, include_plots: bool = False) -> dict[str, Any]:
        """The result as plain data (plots as dicts; bytes of files as base64)."""
        data: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name in ("plots", "files") and not include_plots:
                continue
            data[item.name] = _plain(value)
        return data

    def to_json(self, include_plots: bool = False) -> str:
        """The result as JSON (the previous generation's `to_json`; plots only if asked)."""
        return json.dumps(self.to_dict(include_plots=include_plots), indent=2)


class FileType(StrEnum):
    """File formats of captured plots and artifacts. A member compares equal to its string
    (`FileType.PNG == "png"`), and `.value` works as in the previous generation."""

    PNG = "png"
    JPEG = "jpeg"
    PDF = "pdf"
    SVG = "svg"
    CSV = "csv"
    JSON = "json"
    TXT = "txt"
    HTML = "html"
    GIF = "gif"
    WEBP = "webp"


@dataclass(frozen=True)
class PlotOutput:
    """A figure captured from a run.

    `format` is the file format (a `FileType`: png, svg, jpeg, gif, webp, pdf, html);
    `content_base64` the file, base64-encoded; `width` and `height` its size in pixels when the
    format says (an SVG's size in CSS pixels), else None; `dpi` its resolution when known. `name`
    is the file's name in the artifacts directory when the code wrote it there itself, None for
    a figure a plotting hook captured.
    """

    format: FileType
    content_base64: str
    width: int | None = None
    height: int | None = None
    dpi: int | None = None
    name: str | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.format, FileType):
            object.__setattr__(self, "format", FileType(str(self.format).lower()))

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
    files: list[ArtifactFile] = field(default_factory=list, kw_only=True)
    artifacts_truncated: bool = field(default=False, kw_only=True)
    dropped_artifacts: list[str] = field(default_factory=list, kw_only=True)
    warnings: list[str] = field(default_factory=list, kw_only=True)


@dataclass(frozen=True)
class CellError:
    """Why a cell of an interactive session failed: Jupyter's `ename`, `evalue`, `traceback`.

    `name` is the exception's class (`ZeroDivisionError`, `TypeError`, R's condition class;
    `KernelDied` when the kernel process died), `value` its message, `traceback` the lines of
    the traceback as the language prints them (without colours).
    """

    name: str
    value: str
    traceback: list[str] = field(default_factory=list)


_IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpeg", "image/svg+xml": "svg"}


@dataclass(frozen=True)
class CellResult(ConsoleOutput):
    """The result of one cell of an interactive session: a `ConsoleOutput` plus rich results.

    `stdout` and `stderr` are what the cell printed (capped like any run's). `results` are its
    MIME bundles in order, Jupyter's `data` of each `display_data` and `execute_result`: a
    mapping from MIME type to data (`text/plain`, `text/html`, `text/markdown`, `text/latex`,
    `image/svg+xml` as text; `image/png`, `image/jpeg`, `application/pdf` base64-encoded;
    `application/json` as the JSON value). `execution_count` is the kernel's cell counter
    (None for a silent cell). `error` says why the cell failed (then `exit_code` is 1);
    a failed cell does not end the kernel. `kernel_restarted` is set when the kernel died (or
    exited) during or before this cell and a fresh one was started: its state is gone.
    `warnings` says what was dropped or went wrong around the cell.
    """

    execution_count: int | None = field(default=None, kw_only=True)
    results: list[dict[str, object]] = field(default_factory=list, kw_only=True)
    error: CellError | None = field(default=None, kw_only=True)
    kernel_restarted: bool = field(default=False, kw_only=True)
    warnings: list[str] = field(default_factory=list, kw_only=True)

    @property
    def plots(self) -> list[PlotOutput]:
        """The images among `results` (PNG, JPEG, SVG), as `PlotOutput`s."""
        plots = []
        for bundle in self.results:
            for mime, fmt in _IMAGE_TYPES.items():
                data = bundle.get(mime)
                if isinstance(data, str):
                    content = base64.b64encode(data.encode()).decode() if fmt == "svg" else data
                    plots.append(PlotOutput(FileType(fmt), content))
                    break
        return plots


def _plain(value: object) -> object:
    """`value` as JSON-ready data."""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
