"""Java: compiles the code with `javac` into the run's build directory, then runs it with `java`.

The source file must be named after its public top-level class (a `javac` rule), and `java` must
be told which class has `main`, so the code is parsed — comments, strings, character literals
and text blocks removed first, then braces counted — to find:

* the public top-level type, which names the file;
* the top-level type declaring `main`, which is run (the public one if it has `main`, else the
  first that does); with a `package` declaration its name is qualified;
* with no public type the file is named after the class that is run, and with no type at all
  both fall back to `Main` (the compiler then reports what is wrong).

Libraries are Maven coordinates `group:artifact:version`, resolved with their runtime
dependencies into jars directly in the libraries directory. The class path is `<libs>/*`: the
argv is never globbed by a shell, and `javac` and `java` expand a `dir/*` entry to the jars in
`dir` themselves (a directory that does not exist yet is simply skipped).

Installing runs Maven's dependency plugin on a throw-away `pom.xml` listing the coordinates (a
pom instead of `dependency:copy`, which would skip transitive dependencies), with its local
repository under the installer's temporary directory, so nothing lands in the work directory. A
sandbox without `mvn` fails at once with a message saying so (the default images have none).
"""

from __future__ import annotations

import functools
import logging
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from llm_sandbox.exceptions import InvalidPackageError
from llm_sandbox.images.naming import image_name
from llm_sandbox.images.recipes import Recipe
from llm_sandbox.language_handlers.base import AbstractLanguageHandler, LanguageConfig
from llm_sandbox.language_handlers.syntax import ImportForm, SourceRules, Syntax
from llm_sandbox.layout import BAKED_LIBS_DIR

DEFAULT_IMAGE = image_name("java")
BAKED_LIBS = f"{BAKED_LIBS_DIR}/java"
DEFAULT_CLASS = "Main"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"

# Maven coordinates: group and artifact ids are dotted words, the version an exact version
# (1.2.3, 2.0.0-M1, 33.0.0-jre, 1.0+build). No ranges, classifiers or packaging: a fixed, plain
# form that cannot smuggle XML or options into the generated pom.
_ID = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
COORDINATES = re.compile(rf"^({_ID}):({_ID}):([A-Za-z0-9_][A-Za-z0-9_.+-]*)$")

_NOISE = re.compile(
    r"//[^\n]*"  # line comment
    r"|/\*.*?\*/"  # block comment
    r'|"""(?:\\.|[^\\])*?"""'  # text block
    r'|"(?:\\.|[^"\\\n])*"'  # string
    r"|'(?:\\.|[^'\\\n])*'",  # character literal
    re.DOTALL,
)
_IDENT = r"(?:[^\W\d]|\$)[\w$]*"
_TYPE = re.compile(
    r"(?<![\w$.])((?:(?:public|protected|private|abstract|final|static|strictfp|sealed"
    rf"|non-sealed)\s+|@{_IDENT}\s+)*)(?:class|interface|enum|record)\s+({_IDENT})"
)
_MAIN = re.compile(r"\bvoid\s+main\s*\(")
_PACKAGE = re.compile(rf"^\s*package\s+({_IDENT}(?:\s*\.\s*{_IDENT})*)\s*;", re.MULTILINE)


@dataclass(frozen=True)
class JavaSource:
    """What the code declares: the file's class name and the class to run (qualified)."""

    file_class: str
    main_class: str


@dataclass(frozen=True)
class _Type:
    name: str
    public: bool
    has_main: bool


def strip_noise(code: str) -> str:
    """The code without comments, strings, character literals and text blocks."""
    return _NOISE.sub(lambda m: " " if m.group().startswith("/") else '""', code)


def _depths(text: str) -> list[int]:
    """The brace depth at every position of `text`."""
    depths = []
    depth = 0
    for char in text:
        if char == "}":
            depth = max(depth - 1, 0)
        depths.append(depth)
        if char == "{":
            depth += 1
    return depths


def _is_public(modifiers: str) -> bool:
    return re.search(r"(?<![\w$-])public\b", modifiers) is not None


def _top_level_types(text: str) -> list[_Type]:
    depths = _depths(text)
    types = []
    for match in _TYPE.finditer(text):
        if depths[match.start(2)] != 0:
            continue
        open_brace = text.find("{", match.end())
        if open_brace < 0:
            types.append(_Type(match.group(2), _is_public(match.group(1)), False))
            continue
        end = open_brace + 1
        while end < len(text) and depths[end] > 0:
            end += 1
        has_main = any(depths[main.start()] == 1 for main in _MAIN.finditer(text, open_brace, end))
        types.append(_Type(match.group(2), _is_public(match.group(1)), has_main))
    return types


@functools.lru_cache(maxsize=64)
def analyse(code: str) -> JavaSource:
    """Find the class naming the file and the class whose `main` runs."""
    text = strip_noise(code)
    types = _top_level_types(text)
    public = next((t for t in types if t.public), None)
    with_main = [t for t in types if t.has_main]
    main: _Type | None
    if public is not None and public.has_main:
        main = public
    elif with_main:
        main = with_main[0]
    else:
        main = public or (types[0] if types else None)
    main_name = main.name if main else DEFAULT_CLASS
    file_class = public.name if public else main_name
    package = _PACKAGE.search(text)
    if package:
        main_name = re.sub(r"\s+", "", package.group(1)) + "." + main_name
    return JavaSource(file_class=file_class, main_class=main_name)


def pom_for(coordinates: Sequence[str]) -> str:
    """A minimal pom whose dependencies are `coordinates` (already validated)."""
    dependencies = []
    for coordinate in coordinates:
        match = COORDINATES.fullmatch(coordinate)
        if match is None:
            raise InvalidPackageError(f"{coordinate!r} is not group:artifact:version")
        group, artifact, version = (escape(part) for part in match.groups())
        dependencies.append(
            f"    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
            f"<version>{version}</version></dependency>"
        )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>llm-sandbox</groupId><artifactId>libraries</artifactId>"
        "<version>1</version><packaging>pom</packaging>\n"
        "  <dependencies>\n" + "\n".join(dependencies) + "\n  </dependencies>\n</project>\n"
    )


# $1: the libraries directory, $2: the pom. Maven writes its repository and the pom under the
# installer's temporary directory; a missing `mvn` is reported at once.
_INSTALL_SCRIPT = f"""\
if ! command -v mvn >/dev/null 2>&1; then
  echo "llm-sandbox: installing Java libraries needs Maven (mvn), which this sandbox does not \
have; install it (Debian: apt-get install maven) or use an image that has it" >&2
  exit 127
fi
work="${{TMPDIR:-/tmp}}/llm-sandbox-maven"
mkdir -p "$work" "$1" || exit 1
printf '%s' "$2" > "$work/pom.xml" || exit 1
exec mvn -B -q -Dstyle.color=never -f "$work/pom.xml" -Dmaven.repo.local="$work/repository" \
{DEPENDENCY_PLUGIN}:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$1"
"""


class JavaHandler(AbstractLanguageHandler):
    source_rules = SourceRules(
        syntax=Syntax(("//",), (("/*", "*/"),), quotes="\"'", triple=('"""',)),
        imports=(ImportForm(re.compile(r"\bimport\s+(?:static\s+)?([\w$.\s]+?(?:\.\s*\*)?)\s*;")),),
        wildcard=".*",
    )
    recipe = Recipe(
        language="java",
        debian_packages=("openjdk-17-jdk-headless",),
        online_base="docker.io/library/eclipse-temurin:17",
        # The JDK's module files are jlink's input only (javac and java read lib/modules):
        # 80 MB nobody in a sandbox needs.
        rootfs_commands=("rm -rf /usr/lib/jvm/*/jmods",),
        commands=("java", "javac"),
    )
    tools = (
        ("javac", "install a JDK: apt-get install openjdk-17-jdk-headless"),
        ("java", "install a JDK: apt-get install openjdk-17-jdk-headless"),
    )
    package_pattern = COORDINATES
    package_rule = (
        "Java library {name!r} is not Maven coordinates; use group:artifact:version with an "
        "exact version, such as 'com.google.code.gson:gson:2.10.1' (ranges, classifiers, paths, "
        "URLs and options are not accepted)"
    )
    libraries_noun = "Java libraries"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        super().__init__(logger)
        classpath = f"{{libs}}/*:{BAKED_LIBS}/*"
        self.config = LanguageConfig(
            name="java",
            file_extension="java",
            compile_commands=[
                "javac -J-XX:+UseSerialGC -J-XX:TieredStopAtLevel=1 -encoding UTF-8"
                f" -d {{build}} -cp {classpath} {{file}}"
            ],
            execution_commands=[
                "java -XX:+UseSerialGC -Dfile.encoding=UTF-8 -Dsun.stdout.encoding=UTF-8"
                " -Dsun.stderr.encoding=UTF-8 -Dstdout.encoding=UTF-8 -Dstderr.encoding=UTF-8"
                f" -cp {{build}}:{classpath} {{main}}"
            ],
            image=DEFAULT_IMAGE,
        )

    def source_name(self, code: str) -> str:
        return f"{analyse(code).file_class}.java"

    def placeholders(self, code: str) -> dict[str, str]:
        return {"main": analyse(code).main_class}

    def file_placeholders(self, code_file: str) -> dict[str, str]:
        # Without the code, the class to run is the one the file is named after.
        return {"main": posixpath.splitext(posixpath.basename(code_file))[0] or DEFAULT_CLASS}

    # --- 0.3.x interface: its import regex and comment patterns (see `filter_comments`) --------
    def get_import_patterns(self, module: str) -> str:
        """Matches `import m.Class;`, `import m.*;` (and `import m;`, `import mX;`)."""
        return rf"(?:^|\s)import\s+{re.escape(module)}(?:\.\*|\.\w+|\w*);"

    @staticmethod
    def get_multiline_comment_patterns() -> str:
        return r"/\*[\s\S]*?\*/"

    @staticmethod
    def get_inline_comment_patterns() -> str:
        return r"//.*$"

    def install_command(self, libraries: list[str]) -> list[str]:
        return ["sh", "-c", _INSTALL_SCRIPT, "llm-sandbox-maven", self.libs_dir, pom_for(libraries)]


HANDLER = JavaHandler
