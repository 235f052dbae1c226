"""C++: compiles the code with `g++` (C++17) into the run's build directory, then runs it.

Each run compiles into its own fresh build directory, so runs in one session never overwrite
each other's program. Libraries cannot be installed: C++ has no package manager to call, and
system development packages need root and a package index. Use an image that has them instead
(`SandboxSession(lang="cpp", image=...)`, e.g. one built `FROM` the default image with
`apt-get install libfoo-dev`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from llm_sandbox.exceptions import LibraryInstallationNotSupportedError
from llm_sandbox.images.naming import image_name
from llm_sandbox.images.recipes import Recipe
from llm_sandbox.language_handlers.base import AbstractLanguageHandler, LanguageConfig
from llm_sandbox.language_handlers.syntax import ImportForm, SourceRules, Syntax

DEFAULT_IMAGE = image_name("cpp")


class CppHandler(AbstractLanguageHandler):
    aliases = ("c++", "cxx")
    source_rules = SourceRules(
        syntax=Syntax(("//",), (("/*", "*/"),), quotes="\"'"),
        imports=(ImportForm(re.compile(r"#\s*include\s*[<\"]([^>\"\n]+)[>\"]")),),
        spelling=re.compile(r"\.(?:h|hh|hpp|hxx)$"),
    )
    recipe = Recipe(
        language="cpp",
        debian_packages=("g++", "make"),
        online_base="docker.io/library/gcc:12",
        # GCC's LTO debugging tool (32 MB); compiling and linking never run it.
        rootfs_commands=("rm -f /usr/bin/*lto-dump*",),
        commands=("g++", "gcc", "c++"),
    )
    tools = (("g++", "install the GNU C++ compiler: apt-get install g++"),)

    def __init__(self, logger: logging.Logger | None = None) -> None:
        super().__init__(logger)
        self.config = LanguageConfig(
            name="cpp",
            file_extension="cpp",
            compile_commands=["g++ -std=c++17 -O2 -pthread -o {build}/prog {file}"],
            execution_commands=["{build}/prog"],
            package_manager=None,
            is_support_library_installation=False,
            image=DEFAULT_IMAGE,
        )

    # --- 0.3.x interface: its import regex and comment patterns (see `filter_comments`) --------
    def get_import_patterns(self, module: str) -> str:
        """Matches `#include <m>` and `#include "m"` (m with its extension, if it has one)."""
        name = re.escape(module)
        return rf'(?:^|\s)#include\s*(?:<{name}>|"{name}")(?=$|//|/\*|[\s;(#])'

    @staticmethod
    def get_multiline_comment_patterns() -> str:
        return r"/\*[\s\S]*?\*/"

    @staticmethod
    def get_inline_comment_patterns() -> str:
        return r"//.*$"

    def validate_library(self, name: str) -> None:
        raise _not_supported([name])

    def install_argv(self, libraries: Sequence[str]) -> list[str]:
        raise _not_supported(libraries)


def _not_supported(libraries: Sequence[str]) -> LibraryInstallationNotSupportedError:
    asked = ", ".join(repr(name) for name in libraries) or "nothing"
    return LibraryInstallationNotSupportedError(
        "cpp",
        f"C++ libraries cannot be installed (asked for {asked}): there is no C++ package "
        "manager to call; use a custom image that has the library's development package, "
        "e.g. SandboxSession(lang='cpp', image='my-image') with an image built FROM the "
        "default one plus `apt-get install libfoo-dev`",
    )


HANDLER = CppHandler
