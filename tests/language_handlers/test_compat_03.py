"""0.3.x's handler interface: custom handlers written for it run here, and the built-in languages
answer its questions as it did.

The expected values of the built-in languages' comment patterns, comment filtering and import
regexes were checked against llm-sandbox 0.3.46 on the same inputs; where this generation
differs on purpose (commands, plot set-up, which languages can install) the test says so.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import re
import shlex
from collections.abc import Iterator
from enum import Enum, StrEnum

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.exceptions import (
    ConfigurationError,
    InvalidPackageError,
    LanguageNotSupportedError,
    LibraryInstallationNotSupportedError,
)
from llm_sandbox.language_handlers import AbstractLanguageHandler, LanguageConfig
from llm_sandbox.language_handlers.base import (
    BUILD_DIR,
    CODE_DIR,
    PlotDetectionConfig,
    PlotLibrary,
    needs_shell,
)
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory
from llm_sandbox.language_handlers.runtime_context import RuntimeContext
from llm_sandbox.layout import LIBS_DIR
from support import open_or_skip

BUILT_IN = ("cpp", "go", "java", "javascript", "python", "r", "ruby")


def handler(lang: str) -> AbstractLanguageHandler:
    return LanguageHandlerFactory.create_handler(lang)


@pytest.fixture
def registered() -> Iterator[list[str]]:
    """Names registered by the test; unregistered afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        LanguageHandlerFactory.unregister_handler(name)


def register(names: list[str], name: str, cls: type[AbstractLanguageHandler]) -> None:
    LanguageHandlerFactory.register_handler(name, cls)
    names.append(name)


def open_local(lang: str) -> SandboxSession:
    return open_or_skip(SandboxSession(lang=lang, backend="local"), "the local backend")


# --- a handler written for 0.3.x ---------------------------------------------------------------
# The shape of 0.3.x's documented example: a subclass that sets `self.config` with 0.3.x's fields
# and answers the three questions 0.3.x made abstract. Here the "language" is Python under
# another name, so a real interpreter runs it.


class SnakeHandler(AbstractLanguageHandler):
    def __init__(self, logger: logging.Logger | None = None) -> None:
        super().__init__(logger)
        self.config = LanguageConfig(
            name="snake",
            file_extension="py",
            execution_commands=["python3 {file}"],
            package_manager="python3 -m pip install",
            is_support_library_installation=True,
        )

    def get_import_patterns(self, module: str) -> str:
        return rf"^\s*import\s+{re.escape(module)}\b"

    @staticmethod
    def get_multiline_comment_patterns() -> str:
        return r'"""[\s\S]*?"""'

    @staticmethod
    def get_inline_comment_patterns() -> str:
        return r"#.*$"


class CompiledSnakeHandler(SnakeHandler):
    """Like the documented example's one line "build into /tmp, && run it" (a shell line)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        super().__init__(logger)
        self.config.execution_commands = [
            "cp {file} /tmp/program.py && python3 /tmp/program.py first-arg"
        ]


class SnakeWithOwnCommands(SnakeHandler):
    """Overrides the command methods, as 0.3.x's own handlers did, using the runtime context."""

    def get_execution_commands(
        self, code_file: str, runtime_context: RuntimeContext | None = None
    ) -> list[str]:
        assert runtime_context is not None
        built = f"{runtime_context.workdir}/built.py"
        return [f"cp {code_file} {built}", f"python3 {built}"]

    def get_library_installation_command(
        self, library: str, runtime_context: RuntimeContext | None = None
    ) -> str:
        assert runtime_context is not None
        return f"echo fetching {library} for {runtime_context.workdir}"


class NoInstallSnake(SnakeHandler):
    def __init__(self, logger: logging.Logger | None = None) -> None:
        super().__init__(logger)
        self.config = LanguageConfig(
            "snake-no-install", "py", ["python3 {file}"], "python3 -m pip install", False
        )


def test_a_0_3_handler_runs_in_a_session_on_a_real_interpreter(registered: list[str]) -> None:
    register(registered, "snake", SnakeHandler)
    assert "snake" in LanguageHandlerFactory.get_supported_languages()
    session = open_local("snake")
    try:
        result = session.run("import sys\nprint('hiss', sum([20, 22]))\nsys.exit(3)")
        assert (result.exit_code, result.stdout, result.stderr) == (3, "hiss 42\n", "")
        h = session.language_handler
        assert h.filter_comments('x = 1  # one\n"""doc"""\ny = 2') == "x = 1  \n\ny = 2"
        assert h.is_support_library_installation
        assert not h.is_support_plot_detection
        assert h.get_execution_commands("/w/a.py") == ["python3 /w/a.py"]
        assert h.get_library_installation_command("numpy") == "python3 -m pip install numpy"
    finally:
        session.close()


def test_a_shell_line_in_execution_commands_runs_through_sh(registered: list[str]) -> None:
    register(registered, "csnake", CompiledSnakeHandler)
    h = handler("csnake")
    plan = h.command_plan("print(1)", 4)
    assert plan.compile == []
    assert plan.run == [
        "sh",
        "-c",
        f"cp {CODE_DIR}/4/main.py /tmp/program.py && python3 /tmp/program.py first-arg",
    ]
    session = open_local("csnake")
    try:
        result = session.run("import sys\nprint('compiled', sys.argv[1:])")
        assert (result.exit_code, result.stdout) == (0, "compiled ['first-arg']\n")
    finally:
        session.close()


def test_overridden_command_methods_are_what_the_session_runs(registered: list[str]) -> None:
    register(registered, "snake-own", SnakeWithOwnCommands)
    h = handler("snake-own")
    build = f"{BUILD_DIR}/7"
    plan = h.command_plan("print(1)", 7)
    assert plan.compile == [
        ["mkdir", "-p", build],
        ["cp", f"{CODE_DIR}/7/main.py", f"{build}/built.py"],
    ]
    assert plan.run == ["python3", f"{build}/built.py"]
    libs = f"{LIBS_DIR}/snake"  # the config's name, not the registered one
    assert h.install_argv(["a"]) == ["echo", "fetching", "a", "for", libs]
    assert h.install_argv(["a", "b@2"]) == [
        "sh",
        "-c",
        f"echo fetching a for {libs} && echo fetching b@2 for {libs}",
    ]
    session = open_local("snake-own")
    try:
        result = session.run("print(__file__.rsplit('/', 1)[1])")
        assert (result.exit_code, result.stdout, result.stderr) == (0, "built.py\n", "")
        installed = session.install(["a", "b@2"])
        assert installed.stdout == f"fetching a for {libs}\nfetching b@2 for {libs}\n"
    finally:
        session.close()


def test_overrides_without_a_runtime_context_parameter_are_called_without_one(
    registered: list[str],
) -> None:
    class Plain(SnakeHandler):
        def get_execution_commands(self, code_file: str) -> list[str]:  # type: ignore[override]
            return [f"python3 {code_file}"]

        def get_library_installation_command(self, library: str) -> str:  # type: ignore[override]
            return f"echo {library}"

    register(registered, "plain", Plain)
    h = handler("plain")
    assert h.command_plan("", 1).run == ["python3", f"{CODE_DIR}/1/main.py"]
    assert h.install_argv(["x"]) == ["echo", "x"]


@pytest.mark.parametrize("returned", [[], "", [1], None])
def test_overridden_execution_commands_must_be_command_lines(
    registered: list[str], returned: object
) -> None:
    class Broken(SnakeHandler):
        def get_execution_commands(
            self, code_file: str, runtime_context: RuntimeContext | None = None
        ) -> list[str]:
            return returned  # type: ignore[return-value]

    register(registered, "broken", Broken)
    with pytest.raises(ConfigurationError, match="get_execution_commands"):
        handler("broken").command_plan("", 1)


def test_no_execution_commands_is_a_clear_error() -> None:
    h = SnakeHandler()
    h.config.execution_commands = []
    with pytest.raises(ConfigurationError, match="no execution_commands"):
        h.command_plan("", 1)
    with pytest.raises(ConfigurationError, match="no execution_commands"):
        h.get_execution_commands("/w/a.py")


def test_is_support_library_installation_false_refuses_installs(registered: list[str]) -> None:
    register(registered, "snake-no-install", NoInstallSnake)
    h = handler("snake-no-install")
    assert h.config.is_support_library_installation is False  # the 5th positional field
    assert not h.is_support_library_installation
    for attempt in (
        lambda: h.install_argv(["numpy"]),
        lambda: h.get_library_installation_command("numpy"),
    ):
        with pytest.raises(LibraryInstallationNotSupportedError, match="not supported"):
            attempt()
    session = open_local("snake-no-install")
    try:
        with pytest.raises(LibraryInstallationNotSupportedError) as refused:
            session.run("print(1)", libraries=["numpy"])
        assert isinstance(refused.value, InvalidPackageError)
        assert "is_support_library_installation=False" in str(refused.value)
        assert session.run("print(1)").stdout == "1\n"
    finally:
        session.close()


def test_the_exception_takes_0_3_s_single_language_argument() -> None:
    error = LibraryInstallationNotSupportedError("java")
    assert str(error) == "Library installation is not supported for java"
    assert error.lang == "java"
    assert isinstance(error, InvalidPackageError)
    long = LibraryInstallationNotSupportedError("cpp", "C++ libraries cannot be installed")
    assert (str(long), long.lang) == ("C++ libraries cannot be installed", "cpp")


def test_a_handler_without_the_0_3_abstract_methods_is_still_a_handler() -> None:
    class Minimal(AbstractLanguageHandler):
        def __init__(self, logger: logging.Logger | None = None) -> None:
            super().__init__(logger)
            self.config = LanguageConfig("minimal", "txt", ["cat {file}"])

    h = Minimal()
    assert h.get_import_patterns("x") == r"(?!)"
    assert re.search(h.get_import_patterns("x"), "import x") is None
    assert (h.get_multiline_comment_patterns(), h.get_inline_comment_patterns()) == ("", "")
    assert h.filter_comments("a # b\n\n  \nc") == "a # b\n\n\nc"
    assert not h.is_support_library_installation  # no package manager
    with pytest.raises(LibraryInstallationNotSupportedError, match="no package manager"):
        h.install_argv(["x"])


# --- LanguageConfig ------------------------------------------------------------------------------


def test_language_config_keeps_0_3_s_fields_in_order_then_adds_ours() -> None:
    fields = [(f.name, f.default) for f in dataclasses.fields(LanguageConfig)]
    assert [name for name, _ in fields[:6]] == [
        "name",
        "file_extension",
        "execution_commands",
        "package_manager",
        "is_support_library_installation",
        "plot_detection",
    ]
    defaults = dict(fields)
    assert defaults["is_support_library_installation"] is True
    assert defaults["plot_detection"] is None
    detection = PlotDetectionConfig([PlotLibrary.MATPLOTLIB], "setup()", "cleanup()")
    config = LanguageConfig("x", "x", ["x {file}"], "pm add", False, detection)
    assert (config.is_support_library_installation, config.plot_detection) == (False, detection)
    assert config.compile_commands == []
    assert config.image is None


def test_plot_detection_config_names_the_plot_libraries() -> None:
    class Plotting(SnakeHandler):
        def __init__(self, logger: logging.Logger | None = None) -> None:
            super().__init__(logger)
            self.config.plot_detection = PlotDetectionConfig([PlotLibrary.PLOTLY], "", "")

    h = Plotting()
    assert h.is_support_plot_detection
    assert h.supported_plot_libraries == [PlotLibrary.PLOTLY]
    assert [m.value for m in PlotLibrary][:3] == ["matplotlib", "plotly", "seaborn"]
    assert len(PlotLibrary) == 10


# --- the built-in languages, asked 0.3.x's questions ------------------------------------------


@pytest.mark.parametrize(
    ("lang", "ext", "installs", "plots", "block", "inline"),
    [
        ("python", "py", True, ["matplotlib", "plotly", "seaborn"], r"'''[\s\S]*?'''", r"#.*$"),
        ("javascript", "js", True, [], r"/\*[\s\S]*?\*/", r"//.*$"),
        # 0.3.x: Java could not install, C++ could (apt-get); here Maven works and apt cannot.
        ("java", "java", True, [], r"/\*[\s\S]*?\*/", r"//.*$"),
        ("cpp", "cpp", False, [], r"/\*[\s\S]*?\*/", r"//.*$"),
        ("go", "go", True, [], r"/\*[\s\S]*?\*/", r"//.*$"),
        ("ruby", "rb", True, [], r"=begin[\s\S]*?=end", r"#.*$"),
        # 0.3.x also listed plotly for R; R's plotly draws no device page, so nothing captures it.
        ("r", "R", True, ["root"], "", r"#.*$"),
    ],
)
def test_built_in_properties_and_comment_patterns(  # noqa: PLR0917 (one table row)
    lang: str, ext: str, installs: bool, plots: list[str], block: str, inline: str
) -> None:
    h = handler(lang)
    assert h.name == lang
    assert type(h.name) is str
    assert h.file_extension == ext
    assert h.is_support_library_installation is installs
    assert h.is_support_plot_detection is bool(plots)
    assert [p.value for p in h.supported_plot_libraries] == plots
    assert (h.get_multiline_comment_patterns(), h.get_inline_comment_patterns()) == (block, inline)
    cls = type(h)
    assert (cls.get_multiline_comment_patterns(), cls.get_inline_comment_patterns()) == (
        block,
        inline,
    )
    assert h.inject_plot_detection_code("print(1)") == "print(1)"  # nothing is injected


@pytest.mark.parametrize(
    ("lang", "code", "filtered"),
    [
        ("python", "x = 1  # c\n# full\n'''doc\nstr'''\ny=2", "x = 1  \n\n\ny=2"),
        ("python", '"""doc"""\n#!shebang\nprint("#x")\n', '"""doc"""\n\nprint("\n'),
        (
            "javascript",
            "a = 'http://x' // c\n/* block\nmore */ b = 2\n\n   \nc // d",
            "a = 'http:\n b = 2\n\n\nc ",
        ),
        ("ruby", "=begin\ndoc\n=end\nputs 1 # hi\n  # only\n", "\nputs 1 \n\n"),
        ("r", 'x <- 1 # c\n#\' roxygen\ny <- "# not"\n', 'x <- 1 \n\ny <- "\n'),
        (
            "cpp",
            "int main() { /* a */ return 0; } // end\n/**/\n",
            "int main() {  return 0; } \n\n",
        ),
        ("go", "/* unterminated\nx", "/* unterminated\nx"),
        ("java", "", ""),
    ],
)
def test_filter_comments_is_0_3_s(lang: str, code: str, filtered: str) -> None:
    assert handler(lang).filter_comments(code) == filtered


# (module, code, matches) per language; each row agrees with 0.3.46's regex.
IMPORTS = {
    "python": [
        ("os", "import os", True),
        ("os", "from os.path import join", True),
        ("os", "  import os.path\n", True),
        ("os", "import osx", False),
        ("sys", "import os, sys", False),
        ("os", "x = 1 # import os", True),  # naive, as it was: comments are filtered first
    ],
    "javascript": [
        ("fs", "import fs from 'fs';", True),
        ("lodash", 'import {a, b} from "lodash"', True),
        ("lodash", 'require( "lodash" )', True),
        ("child_process", "import 'child_process'", True),
        ("fs", "require('fsx')", False),
    ],
    "java": [
        ("java.io", "import java.io.File;", True),
        ("java.io", "import java.io.*;", True),
        ("java.io", "import java.iox;", True),
        ("java.util", "import static java.util.Arrays.asList;", False),
    ],
    "cpp": [
        ("iostream", "#include <iostream>", True),
        ("stdio.h", '#include "stdio.h"', True),
        ("cstdlib", " #include<cstdlib>//c", True),
        ("iostream", "#include <iostream>x", False),
    ],
    "go": [
        ("fmt", 'import f "fmt"', True),
        ("http", 'import _ "net/http"', True),
        ("os", 'import (\n\t"fmt"\n\t"os"\n)', True),
        ("y", 'import "github.com/x/y"', True),
        ("os", 'import "bos"', False),
    ],
    "ruby": [
        ("socket", "require 'socket'", True),
        ("net", "  require 'net/http/persistent'", True),
        ("open3", "require_relative 'open3'", True),
        ("socket", "x=\"require 'socket'\"", False),
    ],
    "r": [
        ("httr", "library(httr)", True),
        ("utils", 'library("utils", quietly = TRUE)', True),
        ("ggplot2", "if (!require(ggplot2)) install.packages('ggplot2')", True),
        ("httr", "mylibrary(httr)", False),
        ("httr", "x <- 1; library(httr)", True),
    ],
}


@pytest.mark.parametrize(
    ("lang", "module", "code", "matches"),
    [(lang, *row) for lang, rows in IMPORTS.items() for row in rows],
)
def test_import_patterns_are_0_3_s(lang: str, module: str, code: str, matches: bool) -> None:
    assert bool(re.search(handler(lang).get_import_patterns(module), code)) is matches


@pytest.mark.parametrize("lang", BUILT_IN)
def test_execution_commands_are_what_a_run_executes(lang: str) -> None:
    """Same shape as 0.3.x (command lines, `{file}` filled; compile first for C++), but our
    commands: `python3`, our build directory, Java and Go compiled first."""
    h = handler(lang)
    code = "public class Main { public static void main(String[] a) {} }" if lang == "java" else ""
    plan = h.command_plan(code, 5)
    [source] = plan.files
    expected = [shlex.join(argv) for argv in [*plan.compile, plan.run]]
    assert h.get_execution_commands(source) == expected
    assert h.get_execution_commands(source, RuntimeContext(workdir="/sandbox")) == expected


@pytest.mark.parametrize(
    ("lang", "commands"),
    [
        ("python", ["python3 /w/f"]),
        ("javascript", ["node /w/f"]),
        ("ruby", ["ruby /w/f"]),
        ("r", ["Rscript /w/f"]),
        (
            "cpp",
            [
                f"mkdir -p {BUILD_DIR}",
                f"g++ -std=c++17 -O2 -pthread -o {BUILD_DIR}/prog /w/f",
                f"{BUILD_DIR}/prog",
            ],
        ),
    ],
)
def test_execution_commands_outside_a_run(lang: str, commands: list[str]) -> None:
    assert handler(lang).get_execution_commands("/w/f") == commands


def test_java_execution_commands_run_the_class_the_file_is_named_after() -> None:
    commands = handler("java").get_execution_commands("/w/Hello.java")
    assert commands[1].startswith("javac ")
    assert commands[1].endswith(" /w/Hello.java")
    assert commands[2].startswith("java ")
    assert commands[2].endswith(" Hello")


@pytest.mark.parametrize(
    ("lang", "library"),
    [("python", "numpy"), ("javascript", "lodash"), ("ruby", "rake"), ("r", "jsonlite")],
)
def test_library_installation_command_is_the_install_argv(lang: str, library: str) -> None:
    h = handler(lang)
    assert h.get_library_installation_command(library) == shlex.join(h.install_argv([library]))
    with pytest.raises(InvalidPackageError):
        h.get_library_installation_command("x; rm -rf /")


def test_cpp_refuses_installs_with_the_0_3_exception() -> None:
    with pytest.raises(LibraryInstallationNotSupportedError, match="custom image"):
        handler("cpp").get_library_installation_command("libfoo-dev")


def test_r_repo_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    h = handler("r")
    monkeypatch.setenv("R_REPO", "https://cran.example.org/")
    assert "https://cran.example.org/" in h.install_argv(["jsonlite"])[2]
    monkeypatch.setenv("R_REPO", "https://x'); system('id")
    with pytest.raises(ConfigurationError, match="R_REPO"):
        h.install_argv(["jsonlite"])
    monkeypatch.delenv("R_REPO")
    assert "https://cloud.r-project.org" in h.install_argv(["jsonlite"])[2]


def test_plot_helpers_that_are_gone_say_where_plots_are() -> None:
    h = handler("python")
    with pytest.raises(NotImplementedError, match="ArtifactSandboxSession"):
        h.extract_plots(object(), "/tmp/sandbox_plots")
    with pytest.raises(NotImplementedError, match="ArtifactSandboxSession"):
        h.run_with_artifacts(object(), "print(1)")


# --- library names and shell lines -------------------------------------------------------------


@pytest.mark.parametrize("name", ["serde", "serde@1.0", "@scope/pkg", "pandas>=2.0", "a:b", "x+y"])
def test_custom_handlers_accept_other_ecosystems_names(name: str) -> None:
    assert SnakeHandler().install_argv([name]) == ["python3", "-m", "pip", "install", name]


@pytest.mark.parametrize("name", ["-r", "a b", "a;b", "$(id)", "a`id`", "", "x\n", "'q'"])
def test_custom_handlers_reject_options_and_shell_syntax(name: str) -> None:
    with pytest.raises(InvalidPackageError):
        SnakeHandler().install_argv([name])


def test_a_shell_package_manager_line_gets_quoted_names() -> None:
    h = SnakeHandler()
    h.config.package_manager = "cd {libs} && pip install"
    argv = h.install_argv(["pandas>=2.0", "numpy"])
    assert argv == ["sh", "-c", f"cd {LIBS_DIR}/snake && pip install 'pandas>=2.0' numpy"]


def test_an_overridden_shell_install_line_refuses_names_a_shell_would_read(
    registered: list[str],
) -> None:
    class ShellInstall(SnakeHandler):
        def get_library_installation_command(
            self, library: str, runtime_context: RuntimeContext | None = None
        ) -> str:
            return f"cd /tmp && pip install {library}"

    h = ShellInstall()
    assert h.install_argv(["numpy"]) == ["sh", "-c", "cd /tmp && pip install numpy"]
    with pytest.raises(InvalidPackageError, match="shell"):
        h.install_argv(["numpy>=2"])


@pytest.mark.parametrize(
    ("line", "shell"),
    [
        ("rustc {file} -o /tmp/p && /tmp/p", True),
        ("a|b", True),
        ("run {file} > out.txt", True),
        ("a; b", True),
        ("python3 {file}", False),
        ("echo 'a && b'", False),
        ("sh -c 'a && b' x", False),
        ("java -cp {libs}/* Main", False),
    ],
)
def test_which_lines_need_a_shell(line: str, shell: bool) -> None:
    assert needs_shell(line) is shell


# --- modules and the factory, as 0.3.x code imports and calls them -------------------------------

COMPAT_MODULES = {
    "python_handler": ("PythonHandler", "python"),
    "javascript_handler": ("JavaScriptHandler", "javascript"),
    "java_handler": ("JavaHandler", "java"),
    "cpp_handler": ("CppHandler", "cpp"),
    "go_handler": ("GoHandler", "go"),
    "ruby_handler": ("RubyHandler", "ruby"),
    "r_handler": ("RHandler", "r"),
}


@pytest.mark.parametrize(("module", "names"), COMPAT_MODULES.items())
def test_0_3_handler_modules_are_aliases(module: str, names: tuple[str, str]) -> None:
    cls_name, lang = names
    alias = importlib.import_module(f"llm_sandbox.language_handlers.{module}")
    cls = getattr(alias, cls_name)
    assert cls is LanguageHandlerFactory.lookup(lang)
    assert not hasattr(alias, "HANDLER")
    package = importlib.import_module("llm_sandbox.language_handlers")
    assert getattr(package, cls_name) is cls
    assert cls_name in package.__all__


def test_compatibility_modules_are_not_languages() -> None:
    for name in (
        "llm_sandbox.language_handlers.runtime_context",
        *(f"llm_sandbox.language_handlers.{module}" for module in COMPAT_MODULES),
    ):
        importlib.import_module(name)
    assert LanguageHandlerFactory.builtin_languages() == BUILT_IN
    assert LanguageHandlerFactory.get_supported_languages() == list(BUILT_IN)
    for name in (*COMPAT_MODULES, "runtime_context", "artifact_detection", "base", "factory"):
        assert LanguageHandlerFactory.lookup(name) is None
        with pytest.raises(LanguageNotSupportedError):
            LanguageHandlerFactory.create_handler(name)


def test_0_3_names_of_the_package_and_base() -> None:
    from llm_sandbox.language_handlers import (  # noqa: F401
        CppHandler,
        GoHandler,
        JavaScriptHandler,
        PlotDetectionConfig,
        PlotLibrary,
        PythonHandler,
        RHandler,
        RubyHandler,
    )
    from llm_sandbox.language_handlers.base import (  # noqa: F401
        AbstractLanguageHandler,
        LanguageConfig,
    )
    from llm_sandbox.language_handlers.r_handler import _get_r_repo

    assert _get_r_repo() == "https://cloud.r-project.org"
    assert RuntimeContext("/sandbox").python_executable_path is None
    assert [f.name for f in dataclasses.fields(RuntimeContext)] == [
        "workdir",
        "python_executable_path",
        "pip_executable_path",
        "pip_cache_dir",
    ]


def test_artifact_detection_snippets_are_absent_with_a_reason() -> None:
    with pytest.raises(ImportError, match="ArtifactSandboxSession"):
        from llm_sandbox.language_handlers.artifact_detection import (  # noqa: F401
            PYTHON_PLOT_DETECTION_CODE,
        )
    with pytest.raises(ImportError, match="ArtifactSandboxSession"):
        from llm_sandbox.language_handlers.artifact_detection import (  # noqa: F401
            R_PLOT_DETECTION_CODE,
        )


class Lang(StrEnum):
    PYTHON = "python"


class OldStyleLang(str, Enum):  # noqa: UP042 (0.3.x's home-made StrEnum was a str, Enum)
    RUBY = "RUBY"


def test_factory_takes_0_3_s_argument_forms(registered: list[str]) -> None:
    logger = logging.getLogger("test-compat")
    h = LanguageHandlerFactory.create_handler(language="PyThOn", logger=logger)
    assert (h.name, h.logger) == ("python", logger)
    assert LanguageHandlerFactory.create_handler(Lang.PYTHON).name == "python"
    assert LanguageHandlerFactory.create_handler(OldStyleLang.RUBY).name == "ruby"
    LanguageHandlerFactory.register_handler(language="Snake", handler_class=SnakeHandler)
    registered.append("snake")
    assert isinstance(LanguageHandlerFactory.create_handler("SNAKE"), SnakeHandler)
    assert LanguageHandlerFactory.get_supported_languages() == sorted([*BUILT_IN, "snake"])
    with pytest.raises(LanguageNotSupportedError, match="'cobol'"):
        LanguageHandlerFactory.create_handler("COBOL")
    with pytest.raises(TypeError):
        LanguageHandlerFactory.create_handler(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        LanguageHandlerFactory.register_handler("x", object)  # type: ignore[arg-type]
