"""Where a run's artifacts live in the sandbox, and turning what comes back into results. Pure.

Every run of an `ArtifactSandboxSession` gets a fresh directory under `ARTIFACTS_ROOT` (in /tmp,
which every backend makes writable) with two subdirectories:

* `files/`, announced to the program as `$LLM_SANDBOX_ARTIFACTS_DIR`: whatever the code writes
  there comes back. Images (png, jpeg, gif, webp, svg) come back as plots, anything else as files.
* `plots/`, announced as `$LLM_SANDBOX_PLOTS_DIR`: where the language's plotting hooks (see
  `AbstractLanguageHandler.plot_capture`) save the figures they capture, numbered in order.
  A hook that fails writes one line per failure to `plots/_errors.txt`; those become warnings.

The run's command is wrapped in `/bin/sh -c` that removes earlier runs' directories, creates
this run's, and `exec`s the program: same process, same argv, same exit code, no output.
After the run the session reads the directory back as a tar stream (`Sandbox.get_archive`)
and `collect` sorts it into plots and files under a byte budget.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field

from llm_sandbox import archive, plot_formats
from llm_sandbox.results import ArtifactFile, FileType, PlotOutput

ARTIFACTS_ENV = "LLM_SANDBOX_ARTIFACTS_DIR"
PLOTS_ENV = "LLM_SANDBOX_PLOTS_DIR"
ARTIFACTS_ROOT = "/tmp/llm-sandbox-artifacts"
FILES = "files"
PLOTS = "plots"
CAPTURE_ERRORS = "_errors.txt"
DEFAULT_MAX_ARTIFACT_BYTES = 32 * 1024 * 1024

# $0: this run's directory; then the program's argv. Failures stay silent here: a missing
# directory is reported after the run, and the program runs either way.
_WRAPPER = (
    f'rm -rf -- {ARTIFACTS_ROOT} 2>/dev/null; mkdir -p -- "$0/{FILES}" "$0/{PLOTS}" 2>/dev/null; '
    'exec "$@"'
)


@dataclass(frozen=True)
class RunLayout:
    """The artifacts directory of one run."""

    run_dir: str

    @classmethod
    def for_run(cls, run_id: int) -> RunLayout:
        return cls(f"{ARTIFACTS_ROOT}/{run_id}")

    @property
    def files_dir(self) -> str:
        return f"{self.run_dir}/{FILES}"

    @property
    def plots_dir(self) -> str:
        return f"{self.run_dir}/{PLOTS}"

    def env(self) -> dict[str, str]:
        return {ARTIFACTS_ENV: self.files_dir, PLOTS_ENV: self.plots_dir}

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """`argv`, started by a shell that replaces earlier runs' directories with this run's
        and then becomes `argv` (same process, so the exit code is the program's)."""
        return ["/bin/sh", "-c", _WRAPPER, self.run_dir, *argv]


@dataclass
class Collected:
    """A run's artifacts sorted into results."""

    plots: list[PlotOutput] = field(default_factory=list)
    files: list[ArtifactFile] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        return bool(self.dropped)


def _order(path: str) -> tuple[int, str]:
    """Captured plots first, in the order the hooks numbered them; then files by name."""
    inner = path.partition("/")[2]
    return (0 if inner.startswith(f"{PLOTS}/") else 1, inner)


def collect(data: bytes, *, budget: int, max_stream_bytes: int | None = None) -> Collected:
    """Sort the tar stream of a run directory (top-level entry: the directory) into results."""
    read = archive.read_files(data, budget=budget, max_stream_bytes=max_stream_bytes, order=_order)
    collected = Collected()
    for path, reason in read.skipped:
        collected.dropped.append(f"{_inner(path)}: {reason}")
    for item in read.files:
        area, _, name = _inner(item.path).partition("/")
        if area == PLOTS:
            _add_captured(collected, name, item.content)
        elif area == FILES and name:
            _add_file(collected, name, item.content)
    return collected


def _inner(path: str) -> str:
    """A path below the run directory (the archive's top-level entry)."""
    return path.partition("/")[2] or path


def _add_captured(collected: Collected, name: str, content: bytes) -> None:
    if name == CAPTURE_ERRORS:
        text = content.decode("utf-8", errors="replace")
        collected.warnings += [f"plot capture: {line}" for line in text.splitlines() if line]
        return
    fmt = plot_formats.format_of(name)
    if fmt is None:
        collected.warnings.append(f"plot capture wrote {name!r}, which is not a plot format")
        return
    collected.plots.append(_plot(fmt, content))


def _add_file(collected: Collected, name: str, content: bytes) -> None:
    fmt = plot_formats.format_of(name)
    if fmt in plot_formats.IMAGE_FORMATS:
        collected.plots.append(_plot(fmt, content, name=name))
    else:
        collected.files.append(ArtifactFile(name, plot_formats.mime_type(name), content))


def _plot(fmt: str, content: bytes, name: str | None = None) -> PlotOutput:
    width, height = plot_formats.dimensions(fmt, content)
    encoded = base64.b64encode(content).decode("ascii")
    return PlotOutput(
        format=FileType(fmt), content_base64=encoded, width=width, height=height, name=name
    )
