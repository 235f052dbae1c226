"""Every language on every backend: output, exit codes, errors, Unicode, stdin, timeouts.

One session per (language, backend) is shared by the tests of a language, so compiler caches
warm up once; each test still checks one behaviour. A language whose toolchain is missing on
the embedded backend is skipped locally and fails under CI (the test command installs them).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.exceptions import (
    BackendUnavailableError,
    PackageInstallError,
    SandboxTimeoutError,
)
from llm_sandbox.images import image_for
from support import IN_CI, open_or_skip


@dataclass(frozen=True)
class Programs:
    hello: str
    streams: str  # prints "out" to stdout, "err" to stderr, exits with 3
    crash: str  # an uncaught runtime error
    crash_marker: str  # text the runtime puts in stderr for it
    echo_stdin: str  # prints its stdin upper-cased
    spin: str  # never ends
    broken: str | None = None  # does not compile (compiled languages)


PROGRAMS = {
    "python": Programs(
        hello='print("Hello, 世界")',
        streams='import sys\nprint("out")\nprint("err", file=sys.stderr)\nsys.exit(3)',
        crash="def f():\n    raise ValueError('boom')\nf()",
        crash_marker="ValueError: boom",
        echo_stdin="import sys\nprint(sys.stdin.read().upper(), end='')",
        spin="while True:\n    pass",
    ),
    "javascript": Programs(
        hello='console.log("Hello, 世界");',
        streams='console.log("out"); console.error("err"); process.exit(3);',
        crash="function f() { null.boom(); }\nf();",
        crash_marker="TypeError",
        echo_stdin=(
            "let d = ''; process.stdin.on('data', c => d += c)"
            ".on('end', () => process.stdout.write(d.toUpperCase()));"
        ),
        spin="while (true) {}",
    ),
    "java": Programs(
        hello=(
            "public class Greeter {\n  public static void main(String[] args) {\n"
            '    System.out.println("Hello, 世界");\n  }\n}'
        ),
        streams=(
            "public class Streams {\n  public static void main(String[] args) {\n"
            '    System.out.println("out"); System.err.println("err"); System.exit(3);\n  }\n}'
        ),
        crash=(
            "public class Crash {\n  public static void main(String[] args) {\n"
            "    Object o = null; o.toString();\n  }\n}"
        ),
        crash_marker="NullPointerException",
        echo_stdin=(
            "import java.io.*;\npublic class Echo {\n"
            "  public static void main(String[] args) throws IOException {\n"
            '    String s = new String(System.in.readAllBytes(), "UTF-8");\n'
            "    System.out.print(s.toUpperCase());\n  }\n}"
        ),
        spin=(
            "public class Spin {\n  public static void main(String[] args) {\n"
            "    while (true) {}\n  }\n}"
        ),
        broken="public class Broken {\n  public static void main(String[] a) { int x = }\n}",
    ),
    "cpp": Programs(
        hello='#include <iostream>\nint main() { std::cout << "Hello, 世界" << std::endl; }',
        streams=(
            "#include <iostream>\nint main() {\n"
            '  std::cout << "out" << std::endl; std::cerr << "err" << std::endl; return 3;\n}'
        ),
        crash=('#include <stdexcept>\nint main() { throw std::runtime_error("boom"); }'),
        crash_marker="boom",
        echo_stdin=(
            "#include <iostream>\n#include <string>\n#include <cctype>\nint main() {\n"
            "  std::string s((std::istreambuf_iterator<char>(std::cin)), {});\n"
            "  for (auto &c : s) c = std::toupper(c);\n  std::cout << s;\n}"
        ),
        spin="int main() { volatile unsigned long i = 0; while (true) { ++i; } }",
        broken="int main() { return undefined_name; }",
    ),
    "go": Programs(
        hello='package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("Hello, 世界") }',
        streams=(
            'package main\n\nimport (\n\t"fmt"\n\t"os"\n)\n\nfunc main() {\n'
            '\tfmt.Println("out")\n\tfmt.Fprintln(os.Stderr, "err")\n\tos.Exit(3)\n}'
        ),
        crash='package main\n\nfunc main() { panic("boom") }',
        crash_marker="panic: boom",
        echo_stdin=(
            'package main\n\nimport (\n\t"fmt"\n\t"io"\n\t"os"\n\t"strings"\n)\n\n'
            "func main() {\n\tb, _ := io.ReadAll(os.Stdin)\n"
            "\tfmt.Print(strings.ToUpper(string(b)))\n}"
        ),
        spin="package main\n\nfunc main() {\n\tfor {\n\t}\n}",
        broken="package main\n\nfunc main() { undefinedName() }",
    ),
    "ruby": Programs(
        hello='puts "Hello, 世界"',
        streams='puts "out"\n$stderr.puts "err"\nexit 3',
        crash='def f\n  raise "boom"\nend\nf',
        crash_marker="boom (RuntimeError)",
        echo_stdin="print STDIN.read.upcase",
        spin="loop { }",
    ),
    "r": Programs(
        hello='cat("Hello, 世界\\n")',
        streams='cat("out\\n")\nmessage("err")\nquit(status = 3)',
        crash='f <- function() stop("boom")\nf()',
        crash_marker="boom",
        echo_stdin='x <- readLines(file("stdin"))\ncat(toupper(x), sep = "\\n")',
        spin="while (TRUE) {}",
    ),
}


@pytest.fixture(scope="module", params=sorted(PROGRAMS))
def lang(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def lang_session(lang: str, backend: str) -> Iterator[SandboxSession]:
    session = SandboxSession(lang=lang, backend=backend, execution_timeout=120)
    yield open_or_skip(session, f"{lang} on {backend}")
    session.close()


def test_hello_world_with_unicode(lang_session: SandboxSession, lang: str) -> None:
    result = lang_session.run(PROGRAMS[lang].hello)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Hello, 世界\n"


def test_streams_are_separate_and_exit_code_exact(lang_session: SandboxSession, lang: str) -> None:
    result = lang_session.run(PROGRAMS[lang].streams)
    assert result.stdout == "out\n"
    assert result.stderr.strip().endswith("err")
    assert result.exit_code == 3
    assert not result.compile_failed


def test_runtime_error_keeps_its_trace(lang_session: SandboxSession, lang: str) -> None:
    result = lang_session.run(PROGRAMS[lang].crash)
    assert result.exit_code != 0
    assert PROGRAMS[lang].crash_marker in result.stderr
    assert not result.compile_failed
    assert result.verdict.value == "error"


def test_stdin_reaches_the_program(lang_session: SandboxSession, lang: str) -> None:
    result = lang_session.run(PROGRAMS[lang].echo_stdin, stdin="abc\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "ABC"


def test_runaway_program_is_killed_at_the_timeout(lang_session: SandboxSession, lang: str) -> None:
    lang_session.run(PROGRAMS[lang].hello)  # warm compiler caches: compile time counts too
    started = time.monotonic()
    with pytest.raises(SandboxTimeoutError):
        lang_session.run(PROGRAMS[lang].spin, timeout=4)
    assert time.monotonic() - started < 15
    assert lang_session.run(PROGRAMS[lang].hello).stdout == "Hello, 世界\n"


def test_compile_failure_is_a_result_not_a_crash(lang_session: SandboxSession, lang: str) -> None:
    broken = PROGRAMS[lang].broken
    if broken is None:
        pytest.skip(f"{lang} is not compiled")
    result = lang_session.run(broken)
    assert result.compile_failed
    assert result.verdict.value == "compile_error"
    assert result.exit_code != 0
    assert result.stderr.strip()
    assert result.stdout == ""


def test_runs_do_not_clobber_each_other(lang_session: SandboxSession, lang: str) -> None:
    first = lang_session.run(PROGRAMS[lang].hello)
    second = lang_session.run(PROGRAMS[lang].streams)
    third = lang_session.run(PROGRAMS[lang].hello)
    assert (first.stdout, second.exit_code, third.stdout) == ("Hello, 世界\n", 3, first.stdout)


# --- libraries --------------------------------------------------------------------------------


@pytest.mark.slow
def test_npm_install_then_require(backend: str) -> None:
    # A Kubernetes pod without network cannot install (test_install.py); give it the network.
    with SandboxSession(
        lang="javascript", backend=backend, network=backend == "kubernetes"
    ) as session:
        session.install(["is-number@7.0.0"])
        result = session.run("console.log(require('is-number')(5))")
    assert result.stdout == "true\n", result.stderr


@pytest.mark.parametrize(
    ("language", "library"),
    [
        ("ruby", "rake"),
        ("r", "jsonlite"),
        ("go", "github.com/google/uuid@v1.6.0"),
        ("java", "com.google.code.gson:gson:2.10.1"),
    ],
)
def test_unreachable_registry_is_a_clear_error(backend: str, language: str, library: str) -> None:
    """RubyGems, CRAN, the Go proxy and Maven Central are not reachable here: fail fast and say
    so (the java image has no Maven at all, which must be just as clear)."""
    # A Kubernetes pod without network refuses to install at all (test_install.py): give it the
    # pod network, which cannot reach those registries either.
    session = SandboxSession(lang=language, backend=backend, network=backend == "kubernetes")
    try:
        session.open()
    except BackendUnavailableError as exc:
        if IN_CI:
            pytest.fail(f"{language} on {backend} cannot start under CI: {exc}")
        pytest.skip(str(exc))
    started = time.monotonic()
    try:
        with pytest.raises(PackageInstallError) as info:
            session.install([library], timeout=120)
    finally:
        session.close()
    assert time.monotonic() - started < 120
    assert info.value.exit_code != 0


def test_custom_handler_runs_on_every_backend(backend: str) -> None:
    from llm_sandbox.language_handlers import AbstractLanguageHandler, LanguageConfig
    from llm_sandbox.language_handlers.factory import LanguageHandlerFactory

    class ShellHandler(AbstractLanguageHandler):
        def __init__(self, logger: object = None) -> None:
            super().__init__(None)
            self.config = LanguageConfig(
                name="shell-test",
                file_extension="sh",
                execution_commands=["sh {file}"],
                package_manager=None,
            )

        def get_import_patterns(self, module: str) -> str:
            return rf"\.\s+{module}"

    LanguageHandlerFactory.register_handler("shell-test", ShellHandler)
    options = {} if backend == "local" else {"image": image_for("python")}
    try:
        with SandboxSession(lang="shell-test", backend=backend, **options) as session:  # type: ignore[arg-type]
            result = session.run("echo custom $((20 + 22))")
    finally:
        LanguageHandlerFactory.unregister_handler("shell-test")
    assert result.stdout == "custom 42\n"
