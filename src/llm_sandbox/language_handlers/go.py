"""Go: builds the code with `go build` into the run's build directory, then runs the program.

A plain `package main` needs no set-up: `go build -o <build>/prog <file>` builds a file given on
the command line as its own package, which works outside any module when it imports only the
standard library.

Installed modules live in one module of ours, `<libs>/module` (`go.mod`, `go.sum`), with the
module cache beside it in `<libs>/modcache`:

* install: `go mod init` that module if it does not exist yet, then `go get <module>@<version>`
  in it, with `GOMODCACHE=<libs>/modcache` and `GOFLAGS=-modcacherw` (so the cache can be
  deleted without chmod); `GOPROXY` and `GOSUMDB` keep their defaults, so downloads are checked
  against the checksum database;
* build: when that module exists the build runs *from inside it*: a command-line file outside
  the module's directory is still built in the module's context, so its imports resolve through
  the module's `go.mod` and the read-only cache. Without it the build runs in the work
  directory. Choosing needs a condition, so the build step is a fixed `sh -c` script whose
  paths are positional arguments, never pasted into the script.

Builds never touch the network: `GOPROXY=off` turns an import of a module that was not installed
into an immediate, clear error ("no required module provides package ...; to add it: go get
..."), and the default read-only `-mod` mode keeps the installed module unchanged (`-mod=mod`
would try to rewrite it). `CGO_ENABLED=0` builds pure Go programs, so no C compiler is needed
(Go before 1.21 does not fall back by itself), and `GOTOOLCHAIN=local` keeps Go from
downloading a newer toolchain.

Caches live in `/tmp` (`GOCACHE`, `GOPATH`), not in the work directory; installs use caches of
their own, because in containers they run as root and a root-owned build cache would make later
builds by the code's user fail.
"""

from __future__ import annotations

import logging
import re

from llm_sandbox.images.naming import image_name
from llm_sandbox.images.recipes import Recipe
from llm_sandbox.language_handlers.base import AbstractLanguageHandler, LanguageConfig
from llm_sandbox.language_handlers.syntax import QUOTED_NAME, ImportForm, SourceRules, Syntax

DEFAULT_IMAGE = image_name("go")
GOCACHE = "/tmp/go-cache"
GOPATH = "/tmp/go"
INSTALL_GOCACHE = "/tmp/go-install-cache"
INSTALL_GOPATH = "/tmp/go-install"
LIBS_MODULE_PATH = "llm-sandbox/libs"

# A module or package path: a lowercase host with a dot, then slash-separated elements that do
# not start or end with a dot; an optional version: a semantic version or prefix (v1, v1.2,
# v1.2.3-pre+meta, pseudo-versions), `latest`, `upgrade`, `patch`, or a commit hash. Never `none`
# (that removes a module), never a leading "-".
_HOST = r"(?=[^/]*\.)[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?"
_ELEMENT = r"[A-Za-z0-9_~-](?:[A-Za-z0-9._~-]*[A-Za-z0-9_~-])?"
_SEMVER = r"v\d+(?:\.\d+(?:\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)?)?"
MODULE_SPEC = re.compile(
    rf"^{_HOST}(?:/{_ELEMENT})*(?:@(?:{_SEMVER}|latest|upgrade|patch|[0-9a-f]{{7,40}}))?$"
)

# $1: our module's directory, $2: the program to write, $3: the source file.
_BUILD_SCRIPT = 'if [ -f "$1/go.mod" ]; then cd "$1" || exit 1; fi; exec go build -o "$2" "$3"'
# $1: our module's directory, then the modules to get.
_INSTALL_SCRIPT = (
    'mkdir -p "$1" && cd "$1" || exit 1\n'
    f"if [ ! -f go.mod ]; then go mod init {LIBS_MODULE_PATH} || exit 1; fi\n"
    'shift\nexec go get -- "$@"\n'
)


class GoHandler(AbstractLanguageHandler):
    aliases = ("golang",)
    source_rules = SourceRules(
        syntax=Syntax(("//",), (("/*", "*/"),), quotes="\"'", raw_quotes="`"),
        imports=(
            ImportForm(re.compile(r"\bimport\s+(?:[\w.]+\s+)?" + QUOTED_NAME), 2),
            # An `import ( ... )` block: one module per line, each optionally named.
            ImportForm(
                re.compile(r"\bimport\s*\(([^)]*)\)"),
                entries=re.compile(r"(?:[\w.]+\s+)?" + QUOTED_NAME),
                entry_group=2,
            ),
        ),
    )
    recipe = Recipe(
        language="go",
        debian_packages=("golang-go",),
        online_base="docker.io/library/golang:1.23",
        # No module proxy may be reachable: never try to download a newer toolchain. No C
        # compiler in the offline image: without CGO_ENABLED=0 Go 1.19 fails to build anything
        # importing net (it does not fall back to pure Go by itself).
        env={"GOTOOLCHAIN": "local", "CGO_ENABLED": "0"},
        rootfs_commands=(
            'goroot="$(go env GOROOT)"',
            # Archives of the go tool's own packages (140 MB), used only to rebuild it.
            'rm -rf "$goroot"/pkg/*/cmd',
            # Debian ships the standard library precompiled with cgo; with CGO_ENABLED=0 net,
            # os/user and all their dependants (net/http...) would be stale and be recompiled
            # into every sandbox's fresh GOCACHE (seconds, and 20 MB of tmpfs).
            "CGO_ENABLED=0 GOCACHE=/tmp/go-build GOPATH=/tmp/go go install std",
            "rm -rf /tmp/go-build /tmp/go",
        ),
        commands=("go",),
    )
    tools = (("go", "install Go: apt-get install golang-go"),)
    package_pattern = MODULE_SPEC
    package_rule = (
        "Go module {name!r} is not a module path; use host/path with an optional @version, such "
        "as 'github.com/google/uuid' or 'github.com/google/uuid@v1.6.0' (relative paths, URLs, "
        "options, and @none are not accepted)"
    )
    libraries_noun = "Go modules"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        super().__init__(logger)
        self.config = LanguageConfig(
            name="go",
            file_extension="go",
            compile_commands=[
                f"sh -c '{_BUILD_SCRIPT}' go-build {{libs}}/module {{build}}/prog {{file}}"
            ],
            execution_commands=["{build}/prog"],
            image=DEFAULT_IMAGE,
        )

    # --- 0.3.x interface: its import regex and comment patterns (see `filter_comments`) --------
    def get_import_patterns(self, module: str) -> str:
        """Matches `import [alias] "…/m"` and an `import ( … )` block naming `"…/m"`."""
        path = '"(?:[^"]*?/)?' + re.escape(module) + '"'
        alias = r"(?:(?:[A-Za-z_][A-Za-z0-9_]*|\.)\s+)?"
        return rf"(?:import\s+{alias}{path}|import\s*\([^)]*?{path}[^)]*\))"

    @staticmethod
    def get_multiline_comment_patterns() -> str:
        return r"/\*[\s\S]*?\*/"

    @staticmethod
    def get_inline_comment_patterns() -> str:
        return r"//.*$"

    @property
    def module_dir(self) -> str:
        return f"{self.libs_dir}/module"

    @property
    def modcache(self) -> str:
        return f"{self.libs_dir}/modcache"

    def run_env(self, workdir: str) -> dict[str, str]:
        return {
            "GOCACHE": GOCACHE,
            "GOPATH": GOPATH,
            "GOMODCACHE": self.modcache,
            "GOTOOLCHAIN": "local",
            "GOPROXY": "off",
            "CGO_ENABLED": "0",
        }

    def install_env(self) -> dict[str, str]:
        # Caches of their own: container installs run as root, and a build cache they created
        # would not be writable by the code's user.
        return {
            "GOCACHE": INSTALL_GOCACHE,
            "GOPATH": INSTALL_GOPATH,
            "GOMODCACHE": self.modcache,
            "GOTOOLCHAIN": "local",
            "GOFLAGS": "-modcacherw",
        }

    def install_command(self, libraries: list[str]) -> list[str]:
        return ["sh", "-c", _INSTALL_SCRIPT, "go-get", self.module_dir, *libraries]


HANDLER = GoHandler
