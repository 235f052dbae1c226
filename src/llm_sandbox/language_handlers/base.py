"""What a language needs, described without doing any I/O.

A handler turns code into files and argv lists: where the source goes, how to compile and run
it, how to install libraries, and which environment the run needs. Backends only execute
what the handler describes, so a new language is one module and works on every backend.

Beside that a handler declares, as class attributes, what the rest of the package asks of a
language: `aliases` and `source_rules` (for the static security analysis), `recipe` (its default
image), `tools` (the host programs the embedded backend needs) and plot hooks (`plot_capture`).
Nothing here imports the security analysis or the image builder: they ask the handler registry.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from llm_sandbox.exceptions import InvalidPackageError
from llm_sandbox.language_handlers.syntax import SourceRules
from llm_sandbox.layout import LIBS_DIR, SUPPORT_DIR

if TYPE_CHECKING:
    from llm_sandbox.images.recipes import Recipe

CODE_DIR = f"{SUPPORT_DIR}/code"
CAPTURE_DIR = f"{SUPPORT_DIR}/capture"
"""Where plotting hooks' support files go (see `PlotCapture`)."""
BUILD_DIR = "/tmp/llm-sandbox-build"


def _fill(word: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        word = word.replace("{" + name + "}", value)
    return word


@dataclass(frozen=True)
class RuntimeNeeds:
    """What the language needs from a sandbox, independent of the backend."""

    host_paths: Sequence[str] = ()
    """Host directories the embedded backend must mount read-only (e.g. a Python outside /usr)."""
    image: str | None = None
    """The default container image for the language."""
    path_dirs: Sequence[str] = ()
    """Directories put first on PATH by the embedded backend (where the toolchain lives)."""
    tools: Sequence[tuple[str, str]] = ()
    """(program, install hint) the embedded backend checks for on the host before opening."""


@dataclass
class LanguageConfig:
    """How to run one language.

    `execution_commands` and `compile_commands` are command lines in which `{file}` is the
    source file's path inside the sandbox; they are split like a shell would split them but
    never run through a shell. `package_manager` is the install command line `install()` runs,
    with `{libs}` standing for the language's libraries directory; the library names are
    appended after `--`. It is None when the language has no such line: its handler then builds
    the install itself (`install_command`) or cannot install.
    """

    name: str
    file_extension: str
    execution_commands: list[str]
    package_manager: str | None = None
    compile_commands: list[str] = field(default_factory=list)
    image: str | None = None


@dataclass(frozen=True)
class PlotCapture:
    """How a language's figures are captured in an `ArtifactSandboxSession`.

    `files` (absolute sandbox path → content) are placed for every run and `env` is added to the
    run's environment; together they make the language's plotting libraries save figures into
    `$LLM_SANDBOX_PLOTS_DIR`. `probe` is an argv, run once when a session opens, that prints
    the names of the plotting libraries the sandbox lacks (space-separated; nothing if none).
    """

    files: Mapping[str, bytes]
    env: Mapping[str, str]
    probe: Sequence[str] = ()


@dataclass(frozen=True)
class CommandPlan:
    """One run, fully described: files to place, compile steps (may be empty), the run step."""

    files: dict[str, bytes]
    compile: list[list[str]]
    run: list[str]


# Package names: a name, optional extras, optional version constraints. No spaces, no option
# prefix, no shell or URL syntax: the name goes into an argv after `--`, but rejecting early
# gives the user a clear error instead of a confusing installer failure.
_SPEC = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
    r"(?:\[[A-Za-z0-9._-]+(?:,[A-Za-z0-9._-]+)*\])?"
    r"(?:(?:==|>=|<=|~=|!=|>|<|===)[A-Za-z0-9.*+!_-]+"
    r"(?:,(?:==|>=|<=|~=|!=|>|<)[A-Za-z0-9.*+!_-]+)*)?$"
)


class AbstractLanguageHandler:
    """Base of every language handler; subclasses set `self.config` in `__init__`.

    A built-in language is a module of this package whose `HANDLER` is its handler class (the
    module's name is the language's); the registry finds it there (see `factory`).
    """

    config: LanguageConfig

    # --- what the rest of the package asks of the language ----------------------------------
    aliases: ClassVar[tuple[str, ...]] = ()
    """Other names the security policy accepts for this language (e.g. "py")."""
    source_rules: ClassVar[SourceRules | None] = None
    """How the source reads (comments, strings, import forms), for the security analysis; None:
    patterns are matched against the raw text and no imports are found."""
    recipe: ClassVar[Recipe | None] = None
    """The language's default image (`llm-sandbox images build <lang>`); None: no image of ours."""
    tools: ClassVar[tuple[tuple[str, str], ...]] = ()
    """(program, how to install it) the embedded backend needs on the host for this language."""

    # --- library names ------------------------------------------------------------------------
    package_pattern: ClassVar[re.Pattern[str]] = _SPEC
    """What a library name given to `install()` must match entirely."""
    package_rule: ClassVar[str] = (
        "library name {name!r} is not a plain package name; use a name with an optional version "
        "constraint such as 'numpy' or 'pandas>=2.0' (options, URLs and shell syntax are not "
        "accepted)"
    )
    """The error for a name that does not match (`{name!r}` is the name)."""
    libraries_noun: ClassVar[str] = "libraries"
    """What the language calls its libraries, for errors ("no <noun> to install")."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("llm_sandbox")

    # --- derived from the config; override where a language differs ------------------------
    @property
    def name(self) -> str:
        return self.config.name

    def source_name(self, code: str) -> str:
        """The source file's name (Java overrides it: the file must be named after the class)."""
        return f"main.{self.config.file_extension}"

    def placeholders(self, code: str) -> dict[str, str]:
        """Extra `{name}` values for the command lines (e.g. Java's `{main}` class)."""
        return {}

    def command_plan(self, code: str, run_id: int) -> CommandPlan:
        """The files and argv lists of run `run_id`.

        Command lines may use `{file}` (the source), `{dir}` (its directory), `{build}` (a
        fresh writable directory for compiler output, created before the first compile step),
        `{libs}` (this language's library directory) and the handler's own placeholders. Each
        line is split like a shell would split it, but nothing runs through a shell.
        """
        source_dir = f"{CODE_DIR}/{run_id}"
        source = f"{source_dir}/{self.source_name(code)}"
        values = {
            "file": source,
            "dir": source_dir,
            "build": f"{BUILD_DIR}/{run_id}",
            "libs": self.libs_dir,
            **self.placeholders(code),
        }

        def split(line: str) -> list[str]:
            return [_fill(word, values) for word in shlex.split(line)]

        lines = [*self.config.compile_commands, self.config.execution_commands[0]]
        compile_steps = [split(line) for line in self.config.compile_commands]
        if any("{build}" in line for line in lines):
            compile_steps.insert(0, ["mkdir", "-p", values["build"]])
        return CommandPlan(
            files={source: code.encode()},
            compile=compile_steps,
            run=split(self.config.execution_commands[0]),
        )

    def run_env(self, workdir: str) -> dict[str, str]:
        """Extra environment for runs and compiles (e.g. where installed libraries live)."""
        return {}

    def plot_capture(self, run_env: Mapping[str, str]) -> PlotCapture | None:
        """How this language's plots are captured, given the run's environment; None if it has
        no plotting hooks (files written to the artifacts directory still come back)."""
        return None

    def install_env(self) -> dict[str, str]:
        """Extra environment for installs (e.g. caches kept out of the work directory)."""
        return {}

    def runtime_needs(self) -> RuntimeNeeds:
        return RuntimeNeeds(image=self.config.image, tools=self.tools)

    def validate_library(self, name: str) -> None:
        if not isinstance(name, str) or not self.package_pattern.fullmatch(name):
            raise self.invalid_library(name)

    def invalid_library(self, name: object) -> InvalidPackageError:
        return InvalidPackageError(self.package_rule.format(name=name))

    def install_argv(self, libraries: Sequence[str]) -> list[str]:
        """The argv installing `libraries`: refused without a way to install, then every name
        validated, then built by `install_command`."""
        own_command = type(self).install_command is not AbstractLanguageHandler.install_command
        if not (own_command or self.config.package_manager):
            raise InvalidPackageError(
                f"the {self.name} handler cannot install libraries: it has no package manager; "
                "set `package_manager` in its LanguageConfig (the install command line, `{libs}` "
                "for its libraries directory; names are appended) or override `install_command`, "
                "or use an image or host that already has the libraries"
            )
        if not libraries:
            raise InvalidPackageError(f"no {self.libraries_noun} to install")
        for library in libraries:
            self.validate_library(library)
        return self.install_command(list(libraries))

    def install_command(self, libraries: list[str]) -> list[str]:
        """The argv installing `libraries` (validated, at least one): by default the config's
        `package_manager` line, `--`, then the names."""
        values = {"libs": self.libs_dir}
        manager = shlex.split(self.config.package_manager or "")
        return [*(_fill(word, values) for word in manager), "--", *libraries]

    @property
    def libs_dir(self) -> str:
        return f"{LIBS_DIR}/{self.name}"
