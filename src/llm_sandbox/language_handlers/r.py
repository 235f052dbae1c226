"""R: runs the code as a script with the sandbox's `Rscript`; libraries come from CRAN.

Libraries are CRAN package names only (`install.packages` cannot pin versions). The install is
one `Rscript -e` expression built from validated names, each written as an R string literal:
the name pattern admits nothing that could close the string. `install.packages` only *warns*
when a package cannot be had (an unreachable repository, a misspelt name) and Rscript would exit
0, so the expression checks afterwards that every package is installed and exits with status 1,
naming the missing ones, when it is not.

Packages with C, C++ or Fortran code are built from source on Linux and need a compiler in the
sandbox (the default image has R's run time only); use an image with `r-base-dev` for those.

The repository is `$R_REPO` when that is set in the environment of the process creating the
session (read at each install, as 0.3.x did), else CRAN's cloud mirror.

At run time `R_LIBS_USER` lists the libraries directories (R skips ones that do not exist).
"""

from __future__ import annotations

import logging
import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence

from llm_sandbox.exceptions import ConfigurationError
from llm_sandbox.images.naming import image_name
from llm_sandbox.images.recipes import Recipe
from llm_sandbox.language_handlers.base import (
    CAPTURE_DIR,
    AbstractLanguageHandler,
    LanguageConfig,
    PlotCapture,
    PlotDetectionConfig,
    PlotLibrary,
)
from llm_sandbox.language_handlers.capture import support_file
from llm_sandbox.language_handlers.syntax import ImportForm, SourceRules, Syntax
from llm_sandbox.layout import BAKED_LIBS_DIR

DEFAULT_IMAGE = image_name("r")
#: The plotting library of the image (a Debian package in both builds).
PLOTTING_PACKAGES = ("r-cran-ggplot2",)
BAKED_LIBS = f"{BAKED_LIBS_DIR}/r"
CRAN = "https://cloud.r-project.org"
PROFILE = f"{CAPTURE_DIR}/r/profile.R"
# Prints what plotting needs and lacks: a PNG device (cairo or X11 support) and ggplot2.
_PROBE = (
    'cat(c(if (!capabilities("png")) "png-device", '
    'if (!nzchar(system.file(package = "ggplot2"))) "ggplot2"))'
)

# R's own rule for package names: letters, digits and dots, starting with a letter, not ending
# with a dot, at least two characters.
R_PACKAGE = re.compile(r"^[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]$")
# The library directory and repository URL are ours, but they are pasted into R strings too.
_SAFE_LITERAL = re.compile(r"^(?:(?:https?|file)://)?[A-Za-z0-9/._-]+$")


def cran_repository() -> str:
    """The repository installs use: `$R_REPO` if set and not empty, else `CRAN`."""
    repos = os.environ.get("R_REPO") or CRAN
    if not _SAFE_LITERAL.fullmatch(repos):
        raise ConfigurationError(
            f"R_REPO={repos!r} is not a plain repository URL (http, https or file; letters, "
            "digits, '/', '.', '_' and '-' only)"
        )
    return repos


def install_expression(packages: Sequence[str], lib: str, repos: str = CRAN) -> str:
    """The R code installing `packages` (already validated) into `lib`."""
    for value in (*packages, lib, repos):
        if not _SAFE_LITERAL.fullmatch(value):
            raise ValueError(f"unsafe value for an R string literal: {value!r}")
    names = ", ".join(f'"{name}"' for name in packages)
    return (
        f'lib <- "{lib}"; repos <- "{repos}"; pkgs <- c({names}); '
        "dir.create(lib, recursive = TRUE, showWarnings = FALSE); "
        "install.packages(pkgs, lib = lib, repos = repos); "
        "missing <- pkgs[!nzchar(vapply(pkgs, function(p) "
        'system.file(package = p, lib.loc = lib), ""))]; '
        "if (length(missing) > 0) { "
        'message("llm-sandbox: could not install ", paste(missing, collapse = ", "), '
        '" from ", repos, " (is the repository reachable and the name right?)"); '
        "quit(status = 1) }"
    )


class RHandler(AbstractLanguageHandler):
    source_rules = SourceRules(
        syntax=Syntax(("#",), quotes="\"'", raw_quotes="`"),
        imports=(
            ImportForm(
                re.compile(
                    r"\b(?:library|require|requireNamespace|loadNamespace|attachNamespace)"
                    r"\s*\(\s*(?:package\s*=\s*)?(['\"`]?)([A-Za-z][\w.]*)\1"
                ),
                2,
            ),
            ImportForm(re.compile(r"(?<![\w.])([A-Za-z][\w.]*):::?")),
        ),
    )
    recipe = Recipe(
        language="r",
        debian_packages=("r-base-core", *PLOTTING_PACKAGES),
        online_base="docker.io/library/r-base:latest",
        online_commands=(
            "apt-get update",
            "apt-get install -y --no-install-recommends " + " ".join(PLOTTING_PACKAGES),
            "rm -rf /var/lib/apt/lists/*",
        ),
        optional_debian_packages=("r-recommended",),
        commands=("R", "Rscript"),
    )
    tools = (("Rscript", "install R: apt-get install r-base-core"),)
    package_pattern = R_PACKAGE
    package_rule = (
        "R package {name!r} is not a CRAN package name; use a plain name such as 'jsonlite' or "
        "'data.table' (versions, paths, URLs and R code are not accepted)"
    )
    libraries_noun = "R packages"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        super().__init__(logger)
        # No package manager line: `install.packages` is R code, built by `install_command`.
        self.config = LanguageConfig(
            name="r",
            file_extension="R",
            execution_commands=["Rscript {file}"],
            image=DEFAULT_IMAGE,
            # Base graphics and everything drawing on a device (ggplot2, lattice); not plotly.
            plot_detection=PlotDetectionConfig([PlotLibrary.ROOT]),
        )

    # --- 0.3.x interface: its import regex and comment patterns (see `filter_comments`) --------
    def get_import_patterns(self, module: str) -> str:
        """Matches `library(m)`/`require(m)`, quoted or bare, at the start or after `(!;,{`."""
        name = re.escape(module)
        return rf"(?:^|[(!;,{{])\s*(?:library|require)\s*\(\s*[\"']?{name}[\"']?[^)]*\)"

    @staticmethod
    def get_multiline_comment_patterns() -> str:
        return ""  # R has no block comments

    @staticmethod
    def get_inline_comment_patterns() -> str:
        return r"#.*$"

    def _libs_path(self) -> str:
        return f"{self.libs_dir}:{BAKED_LIBS}"

    def run_env(self, workdir: str) -> dict[str, str]:
        return {"R_LIBS_USER": self._libs_path()}

    def plot_capture(self, run_env: Mapping[str, str]) -> PlotCapture:
        """A user profile making Rscript's default device a numbered PNG file per page."""
        return PlotCapture(
            files={PROFILE: support_file("r_profile.R")},
            env={"R_PROFILE_USER": PROFILE},
            probe=["Rscript", "-e", _PROBE],
        )

    def install_env(self) -> dict[str, str]:
        # Dependencies already installed in an earlier call are found and not fetched again.
        return {"R_LIBS_USER": self._libs_path()}

    def install_command(self, libraries: list[str]) -> list[str]:
        return ["Rscript", "-e", install_expression(libraries, self.libs_dir, cran_repository())]

    def index_hosts(self, env: Mapping[str, str]) -> list[str]:
        host = urllib.parse.urlsplit(cran_repository()).hostname
        return [host] if host else []


HANDLER = RHandler
