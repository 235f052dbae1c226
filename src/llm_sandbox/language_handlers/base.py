"""What a language needs, described without doing any I/O.

A handler turns code into files and argv lists: where the source goes, how to compile and run
it, how to install libraries, and which environment the run needs. Backends only execute
what the handler describes, so a new language is one module and works on every backend.

Beside that a handler declares, as class attributes, what the rest of the package asks of a
language: `aliases` and `source_rules` (for the static security analysis), `recipe` (its default
image), `tools` (the host programs the embedded backend needs) and plot hooks (`plot_capture`).
Nothing here imports the security analysis or the image builder: they ask the handler registry.

The 0.3.x handler interface is kept (see "0.3.x compatibility" below): `LanguageConfig` takes
its fields, a handler answers `get_execution_commands`, `get_library_installation_command`,
`filter_comments` and the rest, and a 0.3.x-style subclass that overrides those methods runs in
a session as it did (its overrides are what the session runs).
"""

from __future__ import annotations

import inspect
import logging
import posixpath
import re
import shlex
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

from llm_sandbox.exceptions import (
    ConfigurationError,
    InvalidPackageError,
    LibraryInstallationNotSupportedError,
)
from llm_sandbox.language_handlers.runtime_context import RuntimeContext
from llm_sandbox.language_handlers.syntax import SourceRules
from llm_sandbox.layout import LIBS_DIR, SUPPORT_DIR

if TYPE_CHECKING:
    from llm_sandbox.images.recipes import Recipe

CODE_DIR = f"{SUPPORT_DIR}/code"
CAPTURE_DIR = f"{SUPPORT_DIR}/capture"
"""Where plotting hooks' support files go (see `PlotCapture`)."""
BUILD_DIR = "/tmp/llm-sandbox-build"


def _fill(word: str, values: Mapping[str, str]) -> str:
    for name, value in values.items():
        word = word.replace("{" + name + "}", value)
    return word


_SHELL_OPERATOR_CHARS = frozenset("();<>|&")


def needs_shell(line: str) -> bool:
    """Whether a command line uses shell syntax: `&&`, `||`, `;`, `|`, `&`, redirections or
    subshells outside quotes (0.3.x's documented `"rustc {file} -o p && p"` does)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return any(token and set(token) <= _SHELL_OPERATOR_CHARS for token in lexer)
    except ValueError:  # unbalanced quotes: splitting the line reports it
        return False


@dataclass(frozen=True)
class _Command:
    argv: list[str]
    text: str
    """The command as one shell line (what `get_execution_commands` and friends return)."""


def _command(line: str, values: Mapping[str, str]) -> _Command:
    """One configured command line with its `{placeholders}` filled.

    A plain line is split like a shell would split it and each word filled: no shell runs. A
    line with shell syntax (`needs_shell`) is the handler author's explicit wish for a shell:
    it runs as `sh -c <line>`, with every value quoted for the shell.
    """
    if needs_shell(line):
        text = _fill(line, {name: shlex.quote(value) for name, value in values.items()})
        return _Command(["sh", "-c", text], text)
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise ConfigurationError(f"command line {line!r} cannot be split: {exc}") from None
    if not words:
        raise ConfigurationError("a command line is empty")
    argv = [_fill(word, values) for word in words]
    return _Command(argv, shlex.join(argv))


def _call_with_context(method: Callable[..., Any], arg: str, context: RuntimeContext) -> Any:
    """Call a 0.3.x-style override `method(arg, runtime_context=...)`, as 0.3.x sessions did;
    an override that takes no context is called with `arg` alone."""
    try:
        parameters = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):  # no signature to read: call it as 0.3.x did
        return method(arg, runtime_context=context)
    if any(
        p.name == "runtime_context" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters
    ):
        return method(arg, runtime_context=context)
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) >= 2 or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return method(arg, context)
    return method(arg)


def _command_lines(value: object, method: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, str) and v.strip() for v in value
    ):
        raise ConfigurationError(
            f"{method}() must return command lines (a list of non-empty strings), got {value!r}"
        )
    return list(value)


class PlotLibrary(Enum):
    """Plotting libraries a handler may name in its `PlotDetectionConfig` (0.3.x's enum)."""

    MATPLOTLIB = "matplotlib"
    PLOTLY = "plotly"
    SEABORN = "seaborn"
    CHARTJS = "chartjs"
    D3JS = "d3js"
    JFREECHART = "jfreechart"
    XCHART = "xchart"
    ROOT = "root"
    GONUM_PLOT = "gonum_plot"
    GRUFF = "gruff"


@dataclass
class PlotDetectionConfig:
    """Which plotting libraries a language's plots are captured from (0.3.x's config).

    `libraries` is what `supported_plot_libraries` reports. `setup_code` and `cleanup_code` are
    kept for 0.3.x handlers but not run: this generation injects no code into the user's
    program; `ArtifactSandboxSession` captures plots through the handler's `plot_capture`.
    """

    libraries: list[PlotLibrary]
    setup_code: str = ""
    cleanup_code: str = ""


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
    source file's path inside the sandbox; they are split like a shell would split them, and
    run without a shell unless a line uses shell syntax (`&&`, `|`, `;`, redirections), which
    runs that line with `sh -c`. The compile commands run first, then the execution commands
    in order; a failing step stops the run, and the last one's output is the result.

    `package_manager` is the install command line `install()` runs, with `{libs}` standing for
    the language's libraries directory; the (validated) library names are appended to it. It
    is None when the language has no such line: its handler then builds the install itself
    (`install_command`) or cannot install. `is_support_library_installation=False` makes every
    install fail with `LibraryInstallationNotSupportedError`.

    The first six fields, in order, are 0.3.x's (`package_manager` now defaults to None);
    `plot_detection` names the plotting libraries that are captured (see
    `PlotDetectionConfig`).
    """

    name: str
    file_extension: str
    execution_commands: list[str]
    package_manager: str | None = None
    is_support_library_installation: bool = True
    plot_detection: PlotDetectionConfig | None = None
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


# Python package names: a name, optional extras, optional version constraints. No spaces, no
# option prefix, no shell or URL syntax: the name goes into an argv, never through a shell, but
# rejecting early gives the user a clear error instead of a confusing installer failure.
_PEP508 = (
    r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
    r"(?:\[[A-Za-z0-9._-]+(?:,[A-Za-z0-9._-]+)*\])?"
    r"(?:(?:==|>=|<=|~=|!=|>|<|===)[A-Za-z0-9.*+!_-]+"
    r"(?:,(?:==|>=|<=|~=|!=|>|<)[A-Za-z0-9.*+!_-]+)*)?"
)
PEP508_SPEC = re.compile(rf"^{_PEP508}$")
# Characters no shell gives a meaning to (inside a word), starting like a name: the shapes other
# package managers use (`serde@1.0`, `@scope/pkg`, `host/path@v1`, `gem:1.2`, `a+b`).
_PLAIN = r"@?[A-Za-z0-9][A-Za-z0-9._/+:@=,-]*"
SHELL_SAFE_NAME = re.compile(rf"^{_PLAIN}$")
LIBRARY_SPEC = re.compile(rf"^(?:{_PEP508}|{_PLAIN})$")
"""What the library names of a handler that declares no `package_pattern` must match."""


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
    package_pattern: ClassVar[re.Pattern[str]] = LIBRARY_SPEC
    """What a library name given to `install()` must match entirely."""
    package_rule: ClassVar[str] = (
        "library name {name!r} is not a plain package name; use a name with an optional version "
        "such as 'numpy', 'pandas>=2.0', 'serde@1.0' or '@scope/pkg' (options, spaces, quotes "
        "and shell syntax are not accepted)"
    )
    """The error for a name that does not match (`{name!r}` is the name)."""
    libraries_noun: ClassVar[str] = "libraries"
    """What the language calls its libraries, for errors ("no <noun> to install")."""
    end_of_options: ClassVar[str | None] = None
    """A word put between the `package_manager` line and the names (pip's and npm's "--"), or
    None: the names follow the line directly, as in 0.3.x (validation already keeps a name from
    starting with "-")."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("llm_sandbox")

    # --- derived from the config; override where a language differs ------------------------
    @property
    def name(self) -> str:
        """The language's name (a plain string, even if the config holds a str enum member)."""
        name = self.config.name
        return str(name.value) if isinstance(name, Enum) else name

    @property
    def file_extension(self) -> str:
        return self.config.file_extension

    def source_name(self, code: str) -> str:
        """The source file's name (Java overrides it: the file must be named after the class)."""
        return f"main.{self.config.file_extension}"

    def placeholders(self, code: str) -> dict[str, str]:
        """Extra `{name}` values for the command lines (e.g. Java's `{main}` class)."""
        return {}

    def file_placeholders(self, code_file: str) -> dict[str, str]:
        """`placeholders` when only the source file's path is known (`get_execution_commands`)."""
        return {}

    def command_plan(self, code: str, run_id: int) -> CommandPlan:
        """The files and argv lists of run `run_id`.

        Command lines may use `{file}` (the source), `{dir}` (its directory), `{build}` (a
        fresh writable directory for compiler output, created before the first compile step),
        `{libs}` (this language's library directory) and the handler's own placeholders. Each
        line is split like a shell would split it and nothing runs through a shell, unless the
        line uses shell syntax (see `LanguageConfig`).

        A 0.3.x-style handler that overrides `get_execution_commands` gets it called with the
        source file (and a `RuntimeContext` whose `workdir` is the fresh build directory); its
        command lines run in order, the last one being the program.
        """
        source_dir = f"{CODE_DIR}/{run_id}"
        source = f"{source_dir}/{self.source_name(code)}"
        build = f"{BUILD_DIR}/{run_id}"
        if self._overrides("get_execution_commands"):
            lines = _command_lines(
                _call_with_context(
                    self.get_execution_commands, source, RuntimeContext(workdir=build)
                ),
                "get_execution_commands",
            )
            if not lines:
                raise ConfigurationError(
                    f"the {self.name} handler's get_execution_commands() returned no commands"
                )
            argvs = [["mkdir", "-p", build], *(_command(line, {}).argv for line in lines)]
        else:
            values = self._values(source, build)
            values.update(self.placeholders(code))
            argvs = [command.argv for command in self._configured_commands(values)]
        return CommandPlan(files={source: code.encode()}, compile=argvs[:-1], run=argvs[-1])

    def _values(self, source: str, build: str) -> dict[str, str]:
        return {
            "file": source,
            "dir": posixpath.dirname(source),
            "build": build,
            "libs": self.libs_dir,
        }

    def _configured_commands(self, values: Mapping[str, str]) -> list[_Command]:
        """The config's compile and execution lines, filled; `mkdir` of `{build}` first."""
        if not self.config.execution_commands:
            raise ConfigurationError(
                f"the {self.name} handler has no execution_commands in its LanguageConfig; "
                "give at least one command line, e.g. ['mytool {file}']"
            )
        lines = [*self.config.compile_commands, *self.config.execution_commands]
        commands = [_command(line, values) for line in lines]
        if any("{build}" in line for line in lines):
            build = values["build"]
            commands.insert(0, _Command(["mkdir", "-p", build], f"mkdir -p {shlex.quote(build)}"))
        return commands

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

    package_index_hosts: tuple[str, ...] = ()
    """Hosts the package manager downloads from by default (installs may reach them)."""
    package_index_env: tuple[str, ...] = ()
    """Environment variables that name more index URLs (their hosts are allowed too)."""

    def index_hosts(self, env: Mapping[str, str]) -> list[str]:
        """The hosts an install may reach through the egress gate, given the install's
        environment: the defaults and the hosts of the index URLs configured there."""
        hosts = list(self.package_index_hosts)
        for name in self.package_index_env:
            for url in env.get(name, "").split():
                host = urllib.parse.urlsplit(url).hostname
                if url.startswith(("http://", "https://")) and host and host not in hosts:
                    hosts.append(host)
        return hosts

    def runtime_needs(self) -> RuntimeNeeds:
        return RuntimeNeeds(image=self.config.image, tools=self.tools)

    def validate_library(self, name: str) -> None:
        if not isinstance(name, str) or not self.package_pattern.fullmatch(name):
            raise self.invalid_library(name)

    def invalid_library(self, name: object) -> InvalidPackageError:
        return InvalidPackageError(self.package_rule.format(name=name))

    def _install_refusal(self, *, legacy: bool) -> LibraryInstallationNotSupportedError | None:
        """Why this language cannot install libraries; None if it can. With `legacy`, a 0.3.x
        `get_library_installation_command` override counts as a way to install."""
        if not self.config.is_support_library_installation:
            return LibraryInstallationNotSupportedError(
                self.name,
                f"library installation is not supported for {self.name}: its LanguageConfig sets "
                "is_support_library_installation=False; use an image or host that already has "
                "the libraries",
            )
        if not (
            self.config.package_manager
            or self._overrides("install_command")
            or (legacy and self._overrides("get_library_installation_command"))
        ):
            return LibraryInstallationNotSupportedError(
                self.name,
                f"the {self.name} handler cannot install libraries: it has no package manager; "
                "set `package_manager` in its LanguageConfig (the install command line, `{libs}` "
                "for its libraries directory; names are appended) or override `install_command`, "
                "or use an image or host that already has the libraries",
            )
        return None

    def install_argv(self, libraries: Sequence[str]) -> list[str]:
        """The argv installing `libraries`: refused when the language cannot install, then
        every name validated, then built by `install_command`; a 0.3.x-style handler that
        overrides `get_library_installation_command` gets one command per library from it
        (several run one after the other with `sh -c`, stopping at the first failure)."""
        refusal = self._install_refusal(legacy=True)
        if refusal is not None:
            raise refusal
        return self._install_argv(
            libraries, legacy=self._overrides("get_library_installation_command")
        )

    def _install_argv(self, libraries: Sequence[str], *, legacy: bool) -> list[str]:
        if not libraries:
            raise InvalidPackageError(f"no {self.libraries_noun} to install")
        for library in libraries:
            self.validate_library(library)
            if library.startswith("-"):  # a subclass's pattern let an option through
                raise self.invalid_library(library)
        if not legacy:
            return self.install_command(list(libraries))
        commands = []
        for library in libraries:
            line = _call_with_context(
                self.get_library_installation_command,
                library,
                RuntimeContext(workdir=self.libs_dir),
            )
            if not isinstance(line, str):
                raise ConfigurationError(
                    f"get_library_installation_command() must return a command line, got {line!r}"
                )
            if needs_shell(line) and not SHELL_SAFE_NAME.fullmatch(library):
                raise InvalidPackageError(
                    f"library name {library!r} cannot go into the shell command line "
                    f"{line!r}: it has characters a shell interprets"
                )
            commands.append(_command(line, {}))
        if len(commands) == 1:
            return commands[0].argv
        script = " && ".join(
            c.text if c.argv[:2] == ["sh", "-c"] else shlex.join(c.argv) for c in commands
        )
        return ["sh", "-c", script]

    def install_command(self, libraries: list[str]) -> list[str]:
        """The argv installing `libraries` (validated, at least one): by default the config's
        `package_manager` line with the names appended (after `end_of_options`, if set)."""
        values = {"libs": self.libs_dir}
        line = self.config.package_manager or ""
        if needs_shell(line):
            quoted = " ".join(shlex.quote(library) for library in libraries)
            return ["sh", "-c", f"{_command(line, values).text} {quoted}"]
        marker = [self.end_of_options] if self.end_of_options else []
        return [*_command(line, values).argv, *marker, *libraries]

    @property
    def libs_dir(self) -> str:
        return f"{LIBS_DIR}/{self.name}"

    def _overrides(self, method: str) -> bool:
        """Whether the handler's class replaces the base class's `method`."""
        return bool(getattr(type(self), method) is not getattr(AbstractLanguageHandler, method))

    # --- 0.3.x compatibility -------------------------------------------------------------------
    # The 0.3.x handler interface. The session uses the methods above; these answer what 0.3.x
    # callers ask, from the same configuration, and a subclass may override
    # `get_execution_commands` or `get_library_installation_command` as in 0.3.x: the session
    # then runs what they return.

    @property
    def is_support_library_installation(self) -> bool:
        """Whether `install()` can install libraries for this language."""
        return self._install_refusal(legacy=True) is None

    @property
    def is_support_plot_detection(self) -> bool:
        """Whether the language declares plot capture: `plot_capture` hooks, or a
        `plot_detection` config (whose set-up code is not run: see `PlotDetectionConfig`)."""
        return self.config.plot_detection is not None or self._overrides("plot_capture")

    @property
    def supported_plot_libraries(self) -> list[PlotLibrary]:
        detection = self.config.plot_detection
        return list(detection.libraries) if detection else []

    def get_execution_commands(
        self, code_file: str, runtime_context: RuntimeContext | None = None
    ) -> list[str]:
        """The command lines that compile and run `code_file`, in order.

        Outside a session's run `{build}` is the shared build directory (within a run, each run
        has its own). `runtime_context` is accepted for 0.3.x callers and not needed.
        """
        parent = posixpath.dirname(code_file)
        build = BUILD_DIR
        if posixpath.dirname(parent) == CODE_DIR:
            build = f"{BUILD_DIR}/{posixpath.basename(parent)}"
        values = self._values(code_file, build)
        values.update(self.file_placeholders(code_file))
        return [command.text for command in self._configured_commands(values)]

    def get_library_installation_command(
        self, library: str, runtime_context: RuntimeContext | None = None
    ) -> str:
        """The command line installing one library (validated first), as `install()` runs it.

        Raises `LibraryInstallationNotSupportedError` when the language cannot install.
        `runtime_context` is accepted for 0.3.x callers and not needed.
        """
        if self._overrides("get_library_installation_command"):
            # Called by a 0.3.x-style override (`super()...`): what this class alone would run.
            refusal = self._install_refusal(legacy=False)
            if refusal is not None:
                raise refusal
            argv = self._install_argv([library], legacy=False)
        else:
            argv = self.install_argv([library])
        if len(argv) == 3 and argv[:2] == ["sh", "-c"]:
            return argv[2]
        return shlex.join(argv)

    def get_import_patterns(self, module: str) -> str:
        """A regex matching an import of `module` (the 0.3.x interface; the built-in languages
        give 0.3.x's). This generation's security analysis does not use it: it reads
        `source_rules`. A handler without one gets a pattern that matches nothing."""
        return r"(?!)"

    @classmethod
    def get_multiline_comment_patterns(cls) -> str:
        """A regex matching one block comment; "" when there is none. By default built from
        `source_rules` (0.3.x subclasses override it as a staticmethod)."""
        syntax = cls.source_rules.syntax if cls.source_rules else None
        if syntax is None or not syntax.block_comments:
            return ""
        return "|".join(
            rf"{re.escape(start)}[\s\S]*?{re.escape(end)}" for start, end in syntax.block_comments
        )

    @classmethod
    def get_inline_comment_patterns(cls) -> str:
        """A regex matching a line comment up to the end of the line; "" when there is none.
        By default built from `source_rules`."""
        syntax = cls.source_rules.syntax if cls.source_rules else None
        if syntax is None or not syntax.line_comments:
            return ""
        markers = "|".join(re.escape(marker) for marker in syntax.line_comments)
        return rf"(?:{markers}).*$"

    def filter_comments(self, code: str) -> str:
        """The code without comments, the 0.3.x way: block comments removed everywhere, then
        line comments line by line; lines left blank become empty.

        Naive, as it was: comment markers inside strings count too (`"http://x"` loses its
        `//x"` in JavaScript). The security analysis does not use it; it reads the source with
        the language's `source_rules`, strings and all.
        """
        block = self.get_multiline_comment_patterns()
        if block:
            code = re.sub(block, "", code)
        inline = self.get_inline_comment_patterns()
        lines = []
        for line in code.split("\n"):
            kept = re.sub(inline, "", line) if inline else line
            lines.append(kept if kept.strip() else "")
        return "\n".join(lines)

    def inject_plot_detection_code(self, code: str) -> str:
        """The code to run for plot capture: the code itself. This generation injects nothing
        (0.3.x prepended a set-up snippet for Python and R); `ArtifactSandboxSession` sets up
        the capture around the program instead (`plot_capture`)."""
        return code

    def extract_plots(self, container: object, output_dir: str) -> list[Any]:
        """Not available: plots come back in `ArtifactSandboxSession.run(...).plots`."""
        raise NotImplementedError(
            "handler.extract_plots() is gone: run the code in an ArtifactSandboxSession, whose "
            "run() returns the plots (result.plots) and every plot since it opened "
            "(session.plots)"
        )

    def run_with_artifacts(
        self, container: object, code: str, *args: object, **kwargs: object
    ) -> tuple[Any, list[Any]]:
        """Not available: use `ArtifactSandboxSession(lang=...).run(code)`."""
        raise NotImplementedError(
            "handler.run_with_artifacts() is gone: use ArtifactSandboxSession(lang=...).run(code),"
            " whose result has the output and the plots (result.plots)"
        )
