"""Which runner each language uses and the command that starts it.

The session places `runner_files()` into `RUNNERS_DIR` in the sandbox and starts
`kernel_argv(lang)` as one long-lived process. The command goes through `sh` to arrange the
runner's file descriptors (see `protocol.py`): requests on fd 3, frames on fds 4 and 5 (copies
of stdout and stderr), and /dev/null as stdin, so that user code (and any subprocess it starts)
can neither read the requests nor take the runner's channel away by closing fd 1 or 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llm_sandbox.exceptions import LanguageNotSupportedError
from llm_sandbox.kernels.runners import FILES, runner_file
from llm_sandbox.layout import SUPPORT_DIR

RUNNERS_DIR = f"{SUPPORT_DIR}/kernels"
"""Where the session places the runner files in the sandbox (read-only for the sandbox user)."""

LAUNCHER = 'exec "$@" 3<&0 4>&1 5>&2 0</dev/null'
"""sh that runs the runner with its descriptors arranged; the argv follows as "$@"."""


@dataclass(frozen=True)
class RunnerSpec:
    """One language's runner: its file and the interpreter command that runs it."""

    language: str
    file: str
    interpreter: tuple[str, ...]
    needs: str
    """What must be installed in the sandbox, for error messages."""


RUNNERS = {
    "python": RunnerSpec(
        "python", "python_runner.py", ("python3",), "Python 3.8+ with IPython (pip install ipython)"
    ),
    "javascript": RunnerSpec("javascript", "node_runner.js", ("node",), "Node.js 18+"),
    "r": RunnerSpec("r", "r_runner.R", ("Rscript",), "R 4.0+ (Rscript)"),
}
_ALIASES = {
    "py": "python",
    "python3": "python",
    "js": "javascript",
    "node": "javascript",
    "nodejs": "javascript",
}


def runner_spec(lang: str) -> RunnerSpec:
    """The runner of `lang` (case-insensitive, common aliases accepted)."""
    name = str(lang).lower()
    spec = RUNNERS.get(_ALIASES.get(name, name))
    if spec is None:
        supported = ", ".join(RUNNERS)
        raise LanguageNotSupportedError(
            str(lang),
            f"interactive kernels exist for {supported}; {lang!r} has none: use "
            "SandboxSession.run() for it, or pass lang= one of those",
        )
    return spec


def kernel_argv(
    lang: str, *, runner_dir: str = RUNNERS_DIR, interpreter: Sequence[str] | None = None
) -> list[str]:
    """The command that starts `lang`'s runner from `runner_dir` (`interpreter` replaces the
    default command, e.g. a virtual environment's python)."""
    spec = runner_spec(lang)
    command = list(interpreter) if interpreter else list(spec.interpreter)
    return ["sh", "-c", LAUNCHER, "llm-sandbox-kernel", *command, f"{runner_dir}/{spec.file}"]


def runner_files() -> dict[str, bytes]:
    """Every runner file by name, to place into `RUNNERS_DIR`."""
    return {name: runner_file(name) for name in FILES}
