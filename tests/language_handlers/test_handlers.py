"""The language handlers as pure descriptions, plus a smoke check of the host's real toolchains.

Most tests only look at what a handler returns: files, argv lists, environments, validation and
import patterns. The tests marked `slow` run the generated argv with the toolchains found on this
machine (each skipped when its tool is missing), with a temporary directory standing in for the
sandbox's paths.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.parse
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from llm_sandbox.exceptions import InvalidPackageError
from llm_sandbox.images.builder import image_for
from llm_sandbox.language_handlers import base
from llm_sandbox.language_handlers.base import BUILD_DIR, CODE_DIR, AbstractLanguageHandler
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory
from llm_sandbox.language_handlers.java import analyse, pom_for
from llm_sandbox.language_handlers.javascript import uses_module_syntax
from llm_sandbox.language_handlers.r import install_expression
from llm_sandbox.layout import BAKED_LIBS_DIR, LIBS_DIR
from llm_sandbox.security import RestrictedModule, SecurityIssueSeverity, SecurityPolicy

LANGUAGES = ("javascript", "java", "cpp", "go", "ruby", "r")
HIGH = SecurityIssueSeverity.HIGH


def handler(lang: str) -> AbstractLanguageHandler:
    return LanguageHandlerFactory.create_handler(lang)


# --- registration and configuration ----------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_language_is_registered_with_its_image_and_tools(lang: str) -> None:
    h = handler(lang)
    assert lang in LanguageHandlerFactory.get_supported_languages()
    assert h.name == lang
    assert h.config.image == image_for(lang)
    needs = h.runtime_needs()
    assert needs.image == image_for(lang)
    assert needs.tools, "the local backend must know which programs to look for"
    for program, hint in needs.tools:
        assert program
        assert "apt-get install" in hint
    assert h.libs_dir == f"{LIBS_DIR}/{lang}"


def test_built_in_languages_are_found_in_their_own_modules() -> None:
    assert LanguageHandlerFactory.builtin_languages() == tuple(sorted({"python", *LANGUAGES}))
    for lang in LanguageHandlerFactory.builtin_languages():
        cls = LanguageHandlerFactory.lookup(lang)
        assert cls is not None
        assert cls().name == lang
        # Everything else about the language is declared by the same class.
        assert cls.source_rules is not None
        assert cls.recipe is not None
        assert cls.recipe.language == lang
        assert cls.recipe.image == image_for(lang)
    assert LanguageHandlerFactory.lookup("cobol") is None


def test_handlers_import_neither_the_security_analysis_nor_the_image_builder() -> None:
    """The analysis and the builder ask the registry for a language's data, never the reverse."""
    package = Path(base.__file__).parent
    for module in sorted(package.glob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        imported = [
            node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        ]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        for name in imported:
            forbidden = name.startswith("llm_sandbox.security") or name in {
                "llm_sandbox.images",
                "llm_sandbox.images.builder",
            }
            assert not forbidden, f"{module.name} imports {name}"
    # ...and the image modules they do import (the Recipe type, the name) leave the builder out.
    code = "import sys, llm_sandbox.language_handlers.python as p; print(p.HANDLER.recipe.image)"
    code += "; assert 'llm_sandbox.images.builder' not in sys.modules"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{image_for('python')}\n"


@pytest.mark.parametrize(
    ("alias", "lang"),
    [
        ("py", "python"),
        ("python3", "python"),
        ("js", "javascript"),
        ("node", "javascript"),
        ("nodejs", "javascript"),
        ("c++", "cpp"),
        ("cxx", "cpp"),
        ("golang", "go"),
        ("rb", "ruby"),
        (" JS ", "javascript"),
        ("r", "r"),
        ("cobol", "cobol"),
    ],
)
def test_aliases_are_declared_by_the_handlers(alias: str, lang: str) -> None:
    assert LanguageHandlerFactory.canonical_name(alias) == lang


@pytest.mark.parametrize("lang", ["python", *LANGUAGES])
def test_a_package_manager_line_is_exactly_what_install_runs(lang: str) -> None:
    """`package_manager` is no description: where a handler has one, it is the install argv."""
    h = handler(lang)
    line = h.config.package_manager
    # The others build their install themselves (R's is R code, Go's and Java's a script) or,
    # C++, have none.
    assert (line is None) == (lang in {"java", "cpp", "go", "ruby", "r"})
    if line is None:
        return
    words = [w.replace("{libs}", h.libs_dir) for w in shlex.split(line)]
    assert h.install_argv(["x1"]) == [*words, "--", "x1"]


@pytest.mark.parametrize(
    ("lang", "source", "compile_programs", "run"),
    [
        ("javascript", "main.js", [], ["node", "{file}"]),
        ("cpp", "main.cpp", ["mkdir", "g++"], ["{build}/prog"]),
        ("go", "main.go", ["mkdir", "sh"], ["{build}/prog"]),
        ("ruby", "main.rb", [], ["ruby", "{file}"]),
        ("r", "main.R", [], ["Rscript", "{file}"]),
    ],
)
def test_command_plans(lang: str, source: str, compile_programs: list[str], run: list[str]) -> None:
    plan = handler(lang).command_plan("code", 7)
    file = f"{CODE_DIR}/7/{source}"
    build = f"{BUILD_DIR}/7"
    assert plan.files == {file: b"code"}
    assert [step[0] for step in plan.compile] == compile_programs
    if compile_programs:
        assert plan.compile[0] == ["mkdir", "-p", build]
    assert plan.run == [w.replace("{file}", file).replace("{build}", build) for w in run]


def test_cpp_compiles_into_the_runs_own_build_directory() -> None:
    h = handler("cpp")
    first, second = h.command_plan("int main(){}", 1), h.command_plan("int main(){}", 2)
    assert first.compile[1] == [
        "g++",
        "-std=c++17",
        "-O2",
        "-pthread",
        "-o",
        f"{BUILD_DIR}/1/prog",
        f"{CODE_DIR}/1/main.cpp",
    ]
    assert first.run == [f"{BUILD_DIR}/1/prog"]
    assert second.run == [f"{BUILD_DIR}/2/prog"]
    assert set(first.files).isdisjoint(second.files)


def test_go_builds_from_the_library_module_when_there_is_one() -> None:
    h = handler("go")
    plan = h.command_plan("package main\nfunc main() {}", 3)
    sh, dash_c, script, arg0, module, program, source = plan.compile[1]
    assert (sh, dash_c, arg0) == ("sh", "-c", "go-build")
    assert (module, program, source) == (
        f"{LIBS_DIR}/go/module",
        f"{BUILD_DIR}/3/prog",
        f"{CODE_DIR}/3/main.go",
    )
    # Paths are positional arguments, never part of the script.
    assert "/" not in script.replace('"$1/go.mod"', "")
    assert 'go build -o "$2" "$3"' in script
    env = h.run_env("/sandbox")
    assert env["GOPROXY"] == "off"
    assert env["GOMODCACHE"] == f"{LIBS_DIR}/go/modcache"
    assert env["GOTOOLCHAIN"] == "local"
    assert env["CGO_ENABLED"] == "0"
    assert not env["GOCACHE"].startswith("/sandbox")
    assert not env["GOPATH"].startswith("/sandbox")
    install = h.install_env()
    assert install["GOFLAGS"] == "-modcacherw"
    assert install["GOMODCACHE"] == env["GOMODCACHE"]
    # Root-run container installs must not create the build cache the code's user writes.
    assert install["GOCACHE"] != env["GOCACHE"]
    assert install["GOPATH"] != env["GOPATH"]
    assert "GOPROXY" not in install


def test_java_plan_names_the_file_and_the_main_class() -> None:
    code = "public class Greeter {\n  public static void main(String[] a) {}\n}"
    plan = handler("java").command_plan(code, 4)
    source = f"{CODE_DIR}/4/Greeter.java"
    build = f"{BUILD_DIR}/4"
    classpath = f"{LIBS_DIR}/java/*:{BAKED_LIBS_DIR}/java/*"
    assert list(plan.files) == [source]
    mkdir, javac = plan.compile
    assert mkdir == ["mkdir", "-p", build]
    assert javac[0] == "javac"
    assert javac[javac.index("-d") + 1] == build
    # One argv word, left for javac to expand: no shell ever globs it.
    assert javac[javac.index("-cp") + 1] == classpath
    assert javac[-1] == source
    assert plan.run[0] == "java"
    assert plan.run[plan.run.index("-cp") + 1] == f"{build}:{classpath}"
    assert plan.run[-1] == "Greeter"
    assert "-Dsun.stdout.encoding=UTF-8" in plan.run


def test_javascript_environments_keep_caches_out_of_the_workdir() -> None:
    h = handler("javascript")
    assert h.run_env("/sandbox") == {
        "NODE_PATH": f"{LIBS_DIR}/javascript/node_modules:{BAKED_LIBS_DIR}/javascript/node_modules"
    }
    assert h.install_env()["npm_config_cache"] == "/tmp/npm-cache"


def test_ruby_and_r_environments_point_at_the_libraries() -> None:
    ruby = handler("ruby").run_env("/sandbox")
    assert ruby["GEM_HOME"] == f"{LIBS_DIR}/ruby"
    assert ruby["GEM_PATH"].split(":")[0] == f"{LIBS_DIR}/ruby"
    assert ruby["GEM_PATH"].endswith(":"), "keeps Ruby's default gem directories"
    assert "GEM_SPEC_CACHE" in handler("ruby").install_env()
    r_env = handler("r").run_env("/sandbox")
    assert r_env["R_LIBS_USER"].split(":")[0] == f"{LIBS_DIR}/r"


# --- JavaScript modules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "esm"),
    [
        ("console.log(1)", False),
        ("const x = require('x');", False),
        ("// import x from 'y'\nconsole.log(1)", False),
        ("import fs from 'node:fs';", True),
        ("import { a, b } from './x.js'", True),
        ("import * as m from 'm'", True),
        ("import 'side-effect'", True),
        ("export default 42;", True),
        ("console.log(import.meta.url)", True),
        ("const m = await import('m')", False),
    ],
)
def test_javascript_module_detection(code: str, esm: bool) -> None:
    assert uses_module_syntax(code) is esm
    h = handler("javascript")
    assert h.source_name(code) == ("main.mjs" if esm else "main.js")


def test_javascript_modules_get_the_library_resolve_hook() -> None:
    h = handler("javascript")
    plain = h.command_plan("console.log(1)", 1)
    assert plain.run == ["node", f"{CODE_DIR}/1/main.js"]
    for code in ("import x from 'x'; console.log(x)", "import('x').then(console.log)"):
        plan = h.command_plan(code, 2)
        assert plan.run[:2] == ["node", "--import"]
        assert plan.run[2].startswith("data:text/javascript,")
        assert plan.run[-1] == next(iter(plan.files))
        hook = urllib.parse.unquote(urllib.parse.unquote(plan.run[2]))
        assert f"file://{LIBS_DIR}/javascript/" in hook
        assert "ERR_MODULE_NOT_FOUND" in hook


# --- Java class detection ----------------------------------------------------------------------


@dataclass(frozen=True)
class JavaCase:
    code: str
    file_class: str
    main_class: str


JAVA_CASES = {
    "simple": JavaCase(
        "public class Hello { public static void main(String[] args) {} }", "Hello", "Hello"
    ),
    "public class without main, helper with main": JavaCase(
        "class Runner { public static void main(String[] a) {} }\npublic class Api { }",
        "Api",
        "Runner",
    ),
    "nested public classes": JavaCase(
        "public class Outer {\n"
        "  public static class Inner { public static void main(String[] a) {} }\n"
        "  public static class Other { }\n"
        "  public static void main(String[] args) { }\n"
        "}\n"
        "class Helper { }",
        "Outer",
        "Outer",
    ),
    "main only in a nested class does not count": JavaCase(
        "public class Shell {\n  static class Inner { public static void main(String[] a) {} }\n}",
        "Shell",
        "Shell",
    ),
    "class in comments and strings": JavaCase(
        "// public class Wrong { public static void main(String[] a) {} }\n"
        "/* public class Bad {\n public static void main(String[] a) {} } */\n"
        "public class Right {\n"
        '  static String s = "public class Nope { void main( {";\n'
        "  static char c = '{';\n"
        '  static String t = """\n    public class TextBlock {\n    """;\n'
        "  public static void main(String[] args) { System.out.println(s); }\n"
        "}",
        "Right",
        "Right",
    ),
    "no public class": JavaCase(
        "class Solution {\n  static int f() { return 1; }\n}\n"
        "class Program {\n  public static void main(String[] args) {}\n}",
        "Program",
        "Program",
    ),
    "no class at all": JavaCase("System.out.println(1);", "Main", "Main"),
    "no main anywhere": JavaCase("public class Lib { int x; }", "Lib", "Lib"),
    "package and modifiers": JavaCase(
        "package com.example.app;\n\nimport java.util.*;\n\n"
        '@SuppressWarnings("unchecked")\npublic final class App<T> extends Object {\n'
        "  static public void main(final String... args) {}\n}",
        "App",
        "com.example.app.App",
    ),
    "class literal and interface main": JavaCase(
        "public interface Tool {\n"
        "  static void main(String[] a) { System.out.println(Tool.class.getName()); }\n}",
        "Tool",
        "Tool",
    ),
    "record and enum": JavaCase(
        "record Point(int x, int y) { }\n"
        "public enum Color { RED, GREEN; public static void main(String[] a) {} }",
        "Color",
        "Color",
    ),
    "unicode class name": JavaCase(
        "public class Grüße { public static void main(String[] a) {} }", "Grüße", "Grüße"
    ),
}


@pytest.mark.parametrize("case", JAVA_CASES.values(), ids=list(JAVA_CASES))
def test_java_class_detection(case: JavaCase) -> None:
    source = analyse(case.code)
    assert (source.file_class, source.main_class) == (case.file_class, case.main_class)
    h = handler("java")
    assert h.source_name(case.code) == f"{case.file_class}.java"
    assert h.placeholders(case.code) == {"main": case.main_class}


# --- library names -----------------------------------------------------------------------------

INJECTIONS = [
    "",
    " ",
    "x; rm -rf /",
    "$(reboot)",
    "`id`",
    "--registry=http://evil",
    "--index-url=http://evil",
    "-e .",
    "-e",
    "../x",
    "./x",
    "/etc/passwd",
    "~/x",
    "git+https://github.com/a/b",
    "https://evil.example/x.tgz",
    "http://evil",
    "file:../x",
    "name with spaces",
    "a\nb",
    "a\tb",
    "x && y",
    "x|y",
    "x>y z",
    "trailing-newline\n",
    "rake\n",
    "jsonlite\n",
    "github.com/google/uuid\n",
    "com.google.code.gson:gson:2.10.1\n",
    "\x00",
]

VALID = {
    "javascript": [
        "lodash",
        "lodash@4.17.21",
        "lodash@^4.17.0",
        "lodash@~4.17",
        "lodash@>=4",
        "lodash@latest",
        "lodash@4.x",
        "@types/node",
        "@types/node@20.1.0",
        "@babel/core@^7",
        "JSONStream",
        "is-number@7.0.0",
    ],
    "java": [
        "com.google.code.gson:gson:2.10.1",
        "org.apache.commons:commons-lang3:3.14.0",
        "com.google.guava:guava:33.0.0-jre",
        "org.junit.jupiter:junit-jupiter-api:5.10.0-M1",
        "io.netty:netty_all:4.1.100.Final",
    ],
    "go": [
        "github.com/google/uuid",
        "github.com/google/uuid@v1.6.0",
        "golang.org/x/text@latest",
        "golang.org/x/text/language",
        "gopkg.in/yaml.v3@v3.0.1",
        "github.com/x/y@v0.0.0-20230101120000-abcdef123456",
        "github.com/x/y@v2.0.0+incompatible",
        "github.com/x/y@v1",
        "github.com/x/y@abcdef1",
        "example.com/a_b/c~d",
    ],
    "ruby": ["rake", "rake:13.0.6", "rake:~>13.0", "rake:>=13", "nokogiri:1.15.0.rc1", "a_b-c"],
    "r": ["jsonlite", "data.table", "ggplot2", "R6", "Rcpp"],
}

INVALID = {
    "javascript": [
        *INJECTIONS,
        "lodash@npm:evil",
        "user/repo",
        "github:user/repo",
        "evil.tgz",
        "x@1.0.tgz",
        "_private",
        ".hidden",
        "@Scope/name",
        "@scope",
        "@scope/",
        "a@b@c",
        "lodash@ 4",
        "lodash#main",
        "x" * 215,
    ],
    "java": [
        *INJECTIONS,
        "gson",
        "com.google.code.gson:gson",
        "com.google.code.gson:gson:",
        "com.google:gson:2.10.1:jar:sources",
        "com.google:gson:[2.0,3.0)",
        "a:b:<version>",
        "a:b:1&amp;",
        "-Dx=y:b:1",
        "a:b:1 -Dexec=x",
    ],
    "go": [
        *INJECTIONS,
        "std",
        "fmt",
        "uuid",
        "github.com/google/uuid@none",
        "github.com/google/uuid@master; rm",
        "GitHub.com/x/y",
        "github.com/../x",
        "github.com/.x",
        "github.com/x/",
        "github.com//x",
        "-modfile=x.mod",
        "github.com/x@v1.2.3@v1",
    ],
    "ruby": [
        *INJECTIONS,
        "rake:13.0 --source http://evil",
        "rake:abc",
        "rake:",
        ":1.0",
        "rake:13.0.6:1",
        "rake==13.0.6",
        "rake -v 13",
    ],
    "r": [
        *INJECTIONS,
        "x",
        "1x",
        "x.",
        "data_table",
        'x"); system("id',
        "jsonlite==1.8",
        "jsonlite@1.8",
        "pkg)",
    ],
}


@pytest.mark.parametrize(
    ("lang", "name"), [(lang, name) for lang, names in VALID.items() for name in names]
)
def test_valid_library_names_are_accepted(lang: str, name: str) -> None:
    h = handler(lang)
    h.validate_library(name)
    assert h.install_argv([name])


@pytest.mark.parametrize(
    ("lang", "name"), [(lang, name) for lang, names in INVALID.items() for name in names]
)
def test_invalid_library_names_are_rejected(lang: str, name: str) -> None:
    h = handler(lang)
    with pytest.raises(InvalidPackageError):
        h.validate_library(name)
    with pytest.raises(InvalidPackageError):
        h.install_argv([VALID[lang][0], name])


@pytest.mark.parametrize("lang", LANGUAGES)
def test_non_strings_and_empty_lists_are_rejected(lang: str) -> None:
    h = handler(lang)
    with pytest.raises(InvalidPackageError):
        h.validate_library(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidPackageError):
        h.install_argv([])


@pytest.mark.parametrize("name", [*VALID["ruby"], *INJECTIONS, "boost", "libfoo-dev"])
def test_cpp_cannot_install_libraries_and_names_the_alternative(name: str) -> None:
    with pytest.raises(InvalidPackageError, match="custom image"):
        handler("cpp").install_argv([name])


# --- install argv shapes -----------------------------------------------------------------------


def test_npm_install_argv() -> None:
    argv = handler("javascript").install_argv(["lodash@4", "@types/node"])
    assert argv[:4] == ["npm", "install", "--prefix", f"{LIBS_DIR}/javascript"]
    assert {"--no-audit", "--no-fund", "--ignore-scripts"} <= set(argv)
    assert argv[-3:] == ["--", "lodash@4", "@types/node"]


def test_npm_install_scripts_can_be_enabled_by_a_subclass() -> None:
    from llm_sandbox.language_handlers.javascript import JavaScriptHandler

    class WithScripts(JavaScriptHandler):
        run_install_scripts = True

    assert "--ignore-scripts" not in WithScripts().install_argv(["x"])
    assert "--ignore-scripts" not in (WithScripts().config.package_manager or "")
    assert "--ignore-scripts" in (handler("javascript").config.package_manager or "")


def test_gem_install_argv_puts_names_last_without_a_double_dash() -> None:
    argv = handler("ruby").install_argv(["rake:13.0.6", "json"])
    assert argv[:2] == ["gem", "install"]
    assert argv[argv.index("--install-dir") + 1] == f"{LIBS_DIR}/ruby"
    assert "--no-document" in argv
    assert "--" not in argv, "gem passes everything after -- to extension builds"
    assert argv[-2:] == ["rake:13.0.6", "json"]


def test_go_install_argv() -> None:
    argv = handler("go").install_argv(["github.com/google/uuid@v1.6.0", "golang.org/x/text"])
    assert argv[:2] == ["sh", "-c"]
    script = argv[2]
    assert argv[3:] == [
        "go-get",
        f"{LIBS_DIR}/go/module",
        "github.com/google/uuid@v1.6.0",
        "golang.org/x/text",
    ]
    assert "go mod init" in script
    assert 'go get -- "$@"' in script
    assert "github.com" not in script, "names are arguments, never part of the script"


def test_maven_install_argv_builds_a_pom_from_validated_coordinates() -> None:
    coordinates = ["com.google.code.gson:gson:2.10.1", "org.slf4j:slf4j-api:2.0.9"]
    argv = handler("java").install_argv(coordinates)
    assert argv[:2] == ["sh", "-c"]
    script, arg0, libs, pom = argv[2:]
    assert (arg0, libs) == ("llm-sandbox-maven", f"{LIBS_DIR}/java")
    assert pom == pom_for(coordinates)
    assert "<groupId>com.google.code.gson</groupId><artifactId>gson</artifactId>" in pom
    assert "<version>2.0.9</version>" in pom
    assert "command -v mvn" in script
    assert "copy-dependencies" in script
    assert 'DoutputDirectory="$1"' in script
    assert "-Dmaven.repo.local=" in script
    assert "TMPDIR" in script
    assert "gson" not in script


def test_r_install_expression_quotes_only_validated_names() -> None:
    argv = handler("r").install_argv(["jsonlite", "data.table"])
    assert argv[:2] == ["Rscript", "-e"]
    expression = argv[2]
    assert 'pkgs <- c("jsonlite", "data.table")' in expression
    assert f'lib <- "{LIBS_DIR}/r"' in expression
    assert 'repos <- "https://cloud.r-project.org"' in expression
    assert "quit(status = 1)" in expression
    with pytest.raises(ValueError, match="unsafe"):
        install_expression(['x"); system("id'], "/lib")
    with pytest.raises(ValueError, match="unsafe"):
        install_expression(["ok"], '/lib"; q()')


# --- import forms ------------------------------------------------------------------------------

IMPORTS: dict[tuple[str, str], tuple[list[str], list[str]]] = {
    ("javascript", "child_process"): (
        [
            "const cp = require('child_process');",
            'const { exec } = require("node:child_process")',
            "import { exec } from 'child_process';",
            'import cp from "node:child_process"',
            "import * as cp from 'child_process'",
            "import 'child_process';",
            "const m = await import('child_process')",
            "export { exec } from 'child_process'",
        ],
        ["require('child_process_extra')", "// child_process", "import x from 'not-child_process'"],
    ),
    ("javascript", "fs"): (
        ["import { readFile } from 'fs/promises'", "require('node:fs')"],
        ["require('fsx')", "const fs = 1"],
    ),
    ("java", "java.io"): (
        ["import java.io.File;", "  import java.io.*;", "import static java.io.File.separator;"],
        ["import java.iox.Y;", "// java.io.File f;", "java.io.File f = null;"],
    ),
    ("cpp", "fstream"): (
        ["#include <fstream>", '  #  include "fstream"'],
        ["#include <fstreamx>", "// fstream", "std::fstream f;"],
    ),
    ("cpp", "sys/socket"): (["#include <sys/socket.h>"], ["#include <sys/sockets.h>"]),
    ("go", "os/exec"): (
        [
            'import "os/exec"',
            'import x "os/exec"',
            'import (\n\t"fmt"\n\t"os/exec"\n)',
            'import (\n\t_ "os/exec"\n)',
        ],
        ['import "os/execute"', '// "os" is fine', 'import "fmt"'],
    ),
    ("ruby", "open3"): (
        ["require 'open3'", 'require "open3"', "require('open3')", "  load 'open3.rb'"],
        ["require 'open3x'", "# open3", "Open3.popen3('ls')"],
    ),
    ("r", "processx"): (
        ["library(processx)", 'require("processx")', "processx::run('ls')", "library(processx, x)"],
        ["library(processxy)", "# processx", "my_processx <- 1"],
    ),
}


@pytest.mark.parametrize(("lang", "module"), list(IMPORTS))
def test_import_forms_reach_the_security_policy(lang: str, module: str) -> None:
    """Each handler's import forms are what the security analysis finds imports with."""
    policy = SecurityPolicy(restricted_modules=[RestrictedModule(module, "restricted", HIGH)])
    matching, other = IMPORTS[lang, module]
    for code in matching:
        assert [v.rule for v in policy.check(code, lang)] == [module], code
    for code in other:
        assert policy.check(code, lang) == [], code


# --- smoke checks with this machine's toolchains -----------------------------------------------


@dataclass
class Sandbox:
    """Temporary stand-ins for the sandbox's paths, and a runner for a handler's argv."""

    root: Path

    @property
    def workdir(self) -> Path:
        return self.root / "work"

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        # The handlers' caches under /tmp go to the temporary directory as well.
        moved = {name: ":".join(map(self._move, value.split(":"))) for name, value in extra.items()}
        return {**os.environ, "HOME": str(self.workdir), "LANG": "C.UTF-8", **moved}

    def _move(self, path: str) -> str:
        if path.startswith("/tmp/") and not path.startswith(f"{self.root}/"):
            return f"{self.root}{path}"
        return path

    def execute(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        stdin: str | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            env=self.env(env),
            cwd=cwd or self.workdir,
            input=stdin or "",
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )

    def run(
        self, h: AbstractLanguageHandler, code: str, run_id: int = 1, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        plan = h.command_plan(code, run_id)
        for path, data in plan.files.items():
            file = Path(path)
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(data)
            file.chmod(0o444)
        env = h.run_env(str(self.workdir))
        for argv in plan.compile:
            result = self.execute(argv, env)
            if result.returncode != 0:  # like a session: the failed compile step is the result
                return result
        return self.execute(plan.run, env, stdin)

    def install(
        self, h: AbstractLanguageHandler, libraries: list[str], **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return self.execute(h.install_argv(libraries), {**h.install_env(), **extra})


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    monkeypatch.setattr(base, "CODE_DIR", str(tmp_path / "code"))
    monkeypatch.setattr(base, "BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setattr(base, "LIBS_DIR", str(tmp_path / "libs"))
    (tmp_path / "work").mkdir()
    (tmp_path / "tmp").mkdir()
    yield Sandbox(tmp_path)
    # Module caches are written read-only by some tools; make everything removable.
    for path in tmp_path.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


def needs(*programs: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    missing = [program for program in programs if shutil.which(program) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed here: {', '.join(missing)}")


HELLO = "Hello, 世界"


@pytest.mark.slow
@needs("node")
def test_node_runs_commonjs_and_modules_with_libraries(sandbox: Sandbox) -> None:
    h = handler("javascript")
    package = Path(h.libs_dir) / "node_modules" / "greet"
    package.mkdir(parents=True)
    (package / "package.json").write_text('{"name": "greet", "main": "index.js"}')
    (package / "index.js").write_text("module.exports = (n) => `hi ${n}`;")
    result = sandbox.run(h, f'console.log("{HELLO}"); console.error("err"); process.exit(3)')
    assert (result.stdout, result.stderr.strip(), result.returncode) == (HELLO + "\n", "err", 3)
    result = sandbox.run(h, "console.log(require('greet')('cjs'))", 2)
    assert result.stdout == "hi cjs\n", result.stderr
    result = sandbox.run(h, "import greet from 'greet';\nconsole.log(greet('esm'));", 3)
    assert result.stdout == "hi esm\n", result.stderr
    result = sandbox.run(h, "import('greet').then((m) => console.log(m.default('dyn')))", 4)
    assert result.stdout == "hi dyn\n", result.stderr
    result = sandbox.run(h, "import missing from 'no-such-package';", 5)
    assert result.returncode != 0
    assert "no-such-package" in result.stderr


@pytest.mark.slow
@needs("node", "npm")
def test_npm_installs_into_the_libraries_directory(sandbox: Sandbox) -> None:
    h = handler("javascript")
    result = sandbox.install(h, ["is-number@7.0.0"])
    if result.returncode != 0 and re.search(r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED", result.stderr):
        pytest.skip("the npm registry is not reachable here")
    assert result.returncode == 0, result.stderr
    assert (Path(h.libs_dir) / "node_modules" / "is-number" / "package.json").is_file()
    assert not (sandbox.workdir / ".npm").exists()
    assert sandbox.run(h, "console.log(require('is-number')(5))").stdout == "true\n"
    assert sandbox.run(h, "import n from 'is-number'; console.log(n('x'))", 2).stdout == "false\n"


@pytest.mark.slow
@needs("javac", "java", "jar")
def test_java_compiles_and_runs_with_jars_on_the_class_path(sandbox: Sandbox) -> None:
    h = handler("java")
    library = sandbox.root / "lib-src"
    (library / "com" / "ex").mkdir(parents=True)
    (library / "com" / "ex" / "Greeter.java").write_text(
        'package com.ex;\npublic class Greeter { public static String hi() { return "hi ✓"; } }'
    )
    classes = sandbox.root / "lib-classes"
    subprocess.run(["javac", "-d", classes, library / "com/ex/Greeter.java"], check=True)
    Path(h.libs_dir).mkdir(parents=True)
    jar = Path(h.libs_dir) / "greeter.jar"
    subprocess.run(["jar", "cf", jar, "-C", classes, "."], check=True)
    code = (
        "package app.main;\nimport com.ex.Greeter;\n"
        "class Helper { }\n"
        "public class Program {\n"
        '  // public class Decoy { }\n  static String s = "class Nope";\n'
        "  public static void main(String[] args) throws Exception {\n"
        f'    System.out.println(Greeter.hi() + " {HELLO}");\n'
        '    System.err.println("err");\n'
        '    System.out.print(new String(System.in.readAllBytes(), "UTF-8").toUpperCase());\n'
        "    System.exit(3);\n  }\n}"
    )
    result = sandbox.run(h, code, stdin="abc\n")
    assert result.stdout == f"hi ✓ {HELLO}\nABC\n", result.stderr
    assert (result.stderr.strip(), result.returncode) == ("err", 3)
    # A failed compile is the compile step's non-zero exit, with javac's diagnostics.
    failed = sandbox.run(h, "public class Broken { int x = }", 2)
    assert failed.returncode != 0
    assert "Broken.java" in failed.stderr


@pytest.mark.slow
@needs("sh")
def test_maven_install_without_mvn_is_a_clear_immediate_error(sandbox: Sandbox) -> None:
    h = handler("java")
    bin_dir = sandbox.root / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "mkdir"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    started = time.monotonic()
    result = sandbox.install(h, ["com.google.code.gson:gson:2.10.1"], PATH=str(bin_dir))
    assert time.monotonic() - started < 10
    assert result.returncode == 127
    assert "needs Maven (mvn)" in result.stderr


@pytest.mark.slow
@needs("mvn")
def test_maven_install_fails_clearly_when_central_is_unreachable(sandbox: Sandbox) -> None:
    h = handler("java")
    started = time.monotonic()
    result = sandbox.install(h, ["com.google.code.gson:gson:2.10.1"], TMPDIR=str(sandbox.root))
    jars = list(Path(h.libs_dir).glob("*.jar"))
    if result.returncode == 0:  # Maven Central reachable after all: then it must have worked
        assert [jar.name for jar in jars] == ["gson-2.10.1.jar"]
        return
    assert time.monotonic() - started < 120
    assert "maven-dependency-plugin" in result.stdout + result.stderr
    assert not list(sandbox.workdir.iterdir()), "nothing lands in the work directory"


@pytest.mark.slow
@needs("g++")
def test_cpp_runs_do_not_clobber_each_other(sandbox: Sandbox) -> None:
    h = handler("cpp")
    first = '#include <iostream>\nint main() { std::cout << "one\\n"; }'
    second = (
        "#include <iostream>\n#include <string>\nint main() {\n  std::string s;\n"
        '  std::getline(std::cin, s);\n  std::cout << "two " << s << "\\n";\n'
        '  std::cerr << "err\\n";\n  return 3;\n}'
    )
    assert sandbox.run(h, first, 1).stdout == "one\n"
    result = sandbox.run(h, second, 2, stdin=f"{HELLO}\n")
    assert (result.stdout, result.stderr, result.returncode) == (f"two {HELLO}\n", "err\n", 3)
    # Run 1's program is still there and still run 1's.
    rerun = subprocess.run(
        h.command_plan(first, 1).run, capture_output=True, text=True, check=False
    )
    assert rerun.stdout == "one\n"


def _write_go_module(proxy: Path, path: str, version: str, files: dict[str, str]) -> None:
    """One module version in the layout of a file-based Go module proxy."""
    gomod = files["go.mod"]
    directory = proxy / path / "@v"
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "list").open("a") as listing:
        listing.write(version + "\n")
    (directory / f"{version}.info").write_text(
        f'{{"Version": "{version}", "Time": "2024-01-01T00:00:00Z"}}'
    )
    (directory / f"{version}.mod").write_text(gomod)
    with zipfile.ZipFile(directory / f"{version}.zip", "w") as archive:
        for name, content in files.items():
            archive.writestr(f"{path}@{version}/{name}", content)


@pytest.mark.slow
@needs("go")
def test_go_plain_main_and_installed_modules(sandbox: Sandbox) -> None:
    h = handler("go")
    hello = (
        'package main\n\nimport (\n\t"fmt"\n\t"os"\n)\n\n'
        f'func main() {{\n\tfmt.Println("{HELLO}")\n\tfmt.Fprintln(os.Stderr, "err")\n'
        "\tos.Exit(3)\n}"
    )
    result = sandbox.run(h, hello)
    assert (result.stdout, result.stderr.strip(), result.returncode) == (HELLO + "\n", "err", 3)
    uses_module = (
        'package main\n\nimport (\n\t"fmt"\n\t"example.com/greet"\n)\n\n'
        "func main() { fmt.Println(greet.Hello()) }"
    )
    missing = sandbox.run(h, uses_module, 2)  # not installed: the build says what is missing
    assert missing.returncode != 0
    assert "example.com/greet" in missing.stderr
    # Install from a file-based proxy (the real one is not reachable), dependency included.
    proxy = sandbox.root / "proxy"
    _write_go_module(
        proxy,
        "example.com/dep",
        "v0.1.0",
        {
            "go.mod": "module example.com/dep\n\ngo 1.18\n",
            "dep.go": 'package dep\n\nfunc Word() string { return "world" }\n',
        },
    )
    _write_go_module(
        proxy,
        "example.com/greet",
        "v1.0.0",
        {
            "go.mod": "module example.com/greet\n\ngo 1.18\n\nrequire example.com/dep v0.1.0\n",
            "greet.go": 'package greet\n\nimport "example.com/dep"\n\n'
            'func Hello() string { return "hello " + dep.Word() }\n',
        },
    )
    installed = sandbox.install(
        h, ["example.com/greet@v1.0.0"], GOPROXY=f"file://{proxy}", GOSUMDB="off"
    )
    assert installed.returncode == 0, installed.stderr
    assert (Path(h.libs_dir) / "module" / "go.mod").is_file()
    assert not any(sandbox.workdir.iterdir()), "nothing lands in the work directory"
    # Builds read the installed module and cache without writing to them.
    for path in Path(h.libs_dir).rglob("*"):
        path.chmod(path.stat().st_mode & 0o555)
    result = sandbox.run(h, uses_module, 3)
    assert result.stdout == "hello world\n", result.stderr


@pytest.mark.slow
@needs("go")
def test_go_install_from_an_unreachable_proxy_fails_fast(sandbox: Sandbox) -> None:
    h = handler("go")
    started = time.monotonic()
    result = sandbox.install(h, ["github.com/google/uuid@v1.6.0"], GOPROXY="http://127.0.0.1:9")
    assert time.monotonic() - started < 60
    assert result.returncode != 0
    assert "github.com/google/uuid" in result.stderr


@pytest.mark.slow
@needs("ruby")
def test_ruby_runs(sandbox: Sandbox) -> None:
    h = handler("ruby")
    code = f'puts "{HELLO}"\nputs STDIN.read.upcase\n$stderr.puts "err"\nexit 3'
    result = sandbox.run(h, code, stdin="abc")
    assert (result.stdout, result.stderr, result.returncode) == (f"{HELLO}\nABC\n", "err\n", 3)


@pytest.mark.slow
@needs("ruby", "gem")
def test_gem_installs_name_and_requirement_syntax(sandbox: Sandbox) -> None:
    h = handler("ruby")
    source = sandbox.root / "gem-src"
    (source / "lib").mkdir(parents=True)
    (source / "lib" / "hellogem.rb").write_text(
        'module Hellogem\n  def self.hi\n    "hi gem"\n  end\nend\n'
    )
    (source / "hellogem.gemspec").write_text(
        'Gem::Specification.new do |s|\n  s.name = "hellogem"\n  s.version = "1.2.3"\n'
        '  s.summary = "test"\n  s.authors = ["test"]\n  s.files = ["lib/hellogem.rb"]\nend\n'
    )
    built = sandbox.execute(["gem", "build", "hellogem.gemspec"], {}, cwd=source)
    assert built.returncode == 0, built.stderr
    # `--local` (ours, for the test) makes gem take the .gem file in the current directory.
    argv = [*h.install_argv(["hellogem:~>1.2"]), "--local"]
    installed = sandbox.execute(argv, h.install_env(), cwd=source)
    assert installed.returncode == 0, installed.stderr
    result = sandbox.run(h, 'require "hellogem"\nputs Hellogem.hi')
    assert result.stdout == "hi gem\n", result.stderr


@pytest.mark.slow
@needs("Rscript")
def test_r_runs_and_an_unreachable_repository_is_an_error(sandbox: Sandbox) -> None:
    h = handler("r")
    code = f'cat("{HELLO}\\n")\ncat(toupper(readLines(file("stdin"))), sep = "\\n")\n'
    code += 'message("err")\nquit(status = 3)'
    result = sandbox.run(h, code, stdin="abc\n")
    assert (result.stdout, result.returncode) == (f"{HELLO}\nABC\n", 3), result.stderr
    assert result.stderr.strip().endswith("err")
    # A repository that answers but has no such package: install.packages only warns.
    empty_repository = sandbox.root / "empty-cran"
    (empty_repository / "src" / "contrib").mkdir(parents=True)
    (empty_repository / "src" / "contrib" / "PACKAGES").write_text("")
    expression = install_expression(["jsonlite"], h.libs_dir, f"file://{empty_repository}")
    started = time.monotonic()
    failed = sandbox.execute(["Rscript", "-e", expression], h.install_env())
    assert time.monotonic() - started < 60
    assert failed.returncode == 1
    assert "could not install jsonlite" in failed.stderr
