"""Ruby: runs the code as a script file with the sandbox's `ruby`; libraries come from RubyGems.

Libraries are written `name` or `name:requirement`, RubyGems' own `gem install` syntax, e.g.
`rake`, `rake:13.0.6`, `rake:~>13.0` or `rake:>=13`. They are installed with
`gem install --install-dir <libs> --no-document <names>`. The names go last and never after
`--`: for `gem install` everything after `--` is passed to extension builds, not read as gems.
Validation guarantees no name starts with `-`, so none can be taken for an option.

At run time `GEM_PATH` lists the libraries directories and ends with `:`, which keeps Ruby's
default gem directories (bundled gems such as `minitest` or `rake`) on the path as well;
`GEM_HOME` points at the libraries directory.
"""

from __future__ import annotations

import logging
import re

from llm_sandbox.images.naming import image_name
from llm_sandbox.images.recipes import Recipe
from llm_sandbox.language_handlers.base import AbstractLanguageHandler, LanguageConfig
from llm_sandbox.language_handlers.syntax import QUOTED_NAME, ImportForm, SourceRules, Syntax
from llm_sandbox.layout import BAKED_LIBS_DIR

DEFAULT_IMAGE = image_name("ruby")
BAKED_LIBS = f"{BAKED_LIBS_DIR}/ruby"
SPEC_CACHE = "/tmp/gem-spec-cache"

# A gem name (letters, digits, ".", "_", "-"; starting with a letter or digit) and an optional
# requirement after ":": an operator and a version such as 1.2.3, 2.0.0.rc1 or 1.0-java.
GEM_SPEC = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(?::(?:=|!=|>=|<=|>|<|~>)?[0-9][0-9A-Za-z.-]*)?$"
)


class RubyHandler(AbstractLanguageHandler):
    aliases = ("rb",)
    source_rules = SourceRules(
        syntax=Syntax(("#",), (("=begin", "=end"),), quotes="'", templates=(('"', "#{"),)),
        imports=(
            ImportForm(
                re.compile(r"\b(?:require|require_relative|load)\b\s*\(?\s*" + QUOTED_NAME), 2
            ),
        ),
        spelling=re.compile(r"\.rb$"),
    )
    recipe = Recipe(
        language="ruby",
        debian_packages=("ruby",),
        online_base="docker.io/library/ruby:3.2",
        commands=("ruby", "gem"),
    )
    tools = (("ruby", "install Ruby: apt-get install ruby"),)
    package_pattern = GEM_SPEC
    package_rule = (
        "gem {name!r} is not a gem name; use a name with an optional requirement after ':', such "
        "as 'rake', 'rake:13.0.6' or 'rake:~>13.0' (paths, URLs, options and spaces are not "
        "accepted)"
    )
    libraries_noun = "gems"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        super().__init__(logger)
        self.config = LanguageConfig(
            name="ruby",
            file_extension="rb",
            execution_commands=["ruby {file}"],
            image=DEFAULT_IMAGE,
        )

    # --- 0.3.x interface: its import regex and comment patterns (see `filter_comments`) --------
    def get_import_patterns(self, module: str) -> str:
        """Matches `require "m"`, `require 'm/sub'`, `require_relative("m")` after a space."""
        quoted = "[\"']" + re.escape(module) + "(?:/[^\"']*)?[\"']"
        return rf"(?<![^\s\"'])(?:^|\s)(?:require_relative|require)\s*\(?\s*{quoted}"

    @staticmethod
    def get_multiline_comment_patterns() -> str:
        return r"=begin[\s\S]*?=end"

    @staticmethod
    def get_inline_comment_patterns() -> str:
        return r"#.*$"

    def _gem_env(self) -> dict[str, str]:
        # The trailing ":" keeps Ruby's default gem directories on the path.
        return {"GEM_HOME": self.libs_dir, "GEM_PATH": f"{self.libs_dir}:{BAKED_LIBS}:"}

    def run_env(self, workdir: str) -> dict[str, str]:
        return self._gem_env()

    def install_env(self) -> dict[str, str]:
        return {**self._gem_env(), "GEM_SPEC_CACHE": SPEC_CACHE}

    def install_command(self, libraries: list[str]) -> list[str]:
        # No "--": gem passes whatever follows it to extension builds.
        return [
            "gem",
            "install",
            "--install-dir",
            self.libs_dir,
            "--no-document",
            "--no-user-install",
            *libraries,
        ]


HANDLER = RubyHandler
