"""The static security policy: bypasses caught, false positives avoided, presets, errors."""

from __future__ import annotations

import copy

import pytest

from llm_sandbox.exceptions import ConfigurationError, InvalidRegexPatternError
from llm_sandbox.security import (
    RestrictedModule,
    SecurityIssueSeverity,
    SecurityPattern,
    SecurityPolicy,
    Violation,
    get_security_policy,
)

HIGH = SecurityIssueSeverity.HIGH


def _policy(*modules: str, patterns: tuple[str, ...] = ()) -> SecurityPolicy:
    return SecurityPolicy(
        severity_threshold=SecurityIssueSeverity.MEDIUM,
        patterns=[SecurityPattern(p, f"pattern {p}", HIGH) for p in patterns],
        restricted_modules=[RestrictedModule(m, f"module {m}", HIGH) for m in modules],
    )


def _modules(violations: list[Violation]) -> set[str]:
    return {v.rule for v in violations if v.kind == "module"}


PYTHON_MODULE_BYPASSES = [
    "import a, os",
    "import os; print(1)",
    "from os import system as s\ns('id')",
    "import os.path",
    "import os as o",
    '__import__("os")',
    'import importlib\nimportlib.import_module("o" + "s")',
    "import importlib as il\nil.import_module(f'{\"o\"}s')",
    'import importlib\nimportlib.import_module("".join(["o", "s"]))',
    'from importlib import import_module\nimport_module("o" "s")',
    'name = "o" + "s"\n__import__(name)',
    'import sys\nsys.modules["os"].system("id")',
    'x = "#"; import os',
    "x = \"'''\"; import os",
    's = \'"""\'\nimport os\nt = \'"""\'',
    'exec("import os")',
    'eval(compile("__import__(\'os\')", "f", "exec"))',
]


@pytest.mark.parametrize("code", PYTHON_MODULE_BYPASSES)
def test_python_restricted_module_bypasses_are_caught(code: str) -> None:
    safe, violations = _policy("os").is_safe(code, "python")
    assert not safe
    assert "os" in _modules(violations)


EVAL = r"\beval\s*\("


@pytest.mark.parametrize(
    "code",
    [
        'getattr(__builtins__, "ev" + "al")("1")',
        'import builtins\ngetattr(builtins, "eval")("1")',
        'f = getattr(__builtins__, "ev" + "al")\nf("1")',
        '__builtins__["eval"]("1")',
        "e = eval\ne('1')",
        "import builtins as b\nb.eval('1')",
    ],
)
def test_python_indirect_calls_are_resolved(code: str) -> None:
    violations = _policy(patterns=(EVAL,)).check(code, "python")
    assert any(v.kind == "pattern" and v.rule == EVAL for v in violations)


def test_aliased_from_import_call_matches_pattern() -> None:
    code = "from os import system as run\nrun('id')"
    violations = _policy(patterns=(r"os\.system\(",)).check(code, "python")
    assert [v.line for v in violations] == [2]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("exec(user_input)", True),
        ("exec(a + b)", True),
        ("eval(compile(src, 'f', 'exec'))", True),
        ("exec('x = 1')", False),
    ],
)
def test_exec_of_built_strings_is_flagged(code: str, expected: bool) -> None:
    violations = _policy(patterns=("<dynamic code>",)).check(code, "python")
    assert bool(violations) is expected


@pytest.mark.parametrize(
    "code",
    [
        "import osmosis",
        "import ossaudiodev",
        "from osmosis import os",
        "x = 'import os'",
        "# import os\nprint(1)",
        '"""\nimport os\n"""',
        "print('os.system(1)')",
        "from . import os",
    ],
)
def test_python_false_positives_are_avoided(code: str) -> None:
    policy = _policy("os", patterns=(r"os\.system",))
    assert policy.is_safe(code, "python") == (True, [])


def test_patterns_skip_strings_and_comments_but_see_code() -> None:
    policy = _policy(patterns=(r"os\.system",))
    code = 'x = "os.system"  # os.system\nimport os\nos.system("id")\n'
    violations = policy.check(code, "python")
    assert [(v.kind, v.line) for v in violations] == [("pattern", 3)]


def test_spec_open_write_pattern_sees_string_arguments() -> None:
    pattern = SecurityPattern(
        r"open\s*\([^)]*['\"][wa]", "File write", SecurityIssueSeverity.MEDIUM
    )
    policy = SecurityPolicy(severity_threshold=SecurityIssueSeverity.MEDIUM, patterns=[pattern])
    assert not policy.is_safe("open('f.txt', 'w').write('x')", "python")[0]
    assert policy.is_safe("print(\"open('f', 'w')\")", "python")[0]


def test_unparsable_python_falls_back_to_scanning() -> None:
    policy = _policy("os", patterns=(r"os\.system",))
    code = "def broken(:\n    pass\nimport os\nx = 'os.system'\n"
    violations = policy.check(code, "python")
    assert [(v.kind, v.rule, v.line) for v in violations] == [("module", "os", 3)]


OTHER_LANGUAGE_CASES = [
    ("javascript", "child_process", "const cp = require('child_process');"),
    ("javascript", "child_process", 'const cp = require("node:child_process");'),
    ("javascript", "child_process", "const cp = require(`child_process`);"),
    ("javascript", "child_process", "import { exec } from 'child_process';"),
    ("javascript", "child_process", 'import * as cp from "node:child_process";'),
    ("javascript", "child_process", "const cp = await import('child_process');"),
    ("javascript", "child_process", "const s = `${require('child_process')}`;"),
    ("javascript", "child_process", "const s = '//'; require('child_process');"),
    ("r", "processx", "x <- 1; library(processx)"),
    ("r", "processx", 'if (TRUE) require("processx")'),
    ("r", "processx", 'requireNamespace("processx")'),
    ("r", "processx", 'processx::run("id")'),
    ("java", "java.net", "import java.net.Socket;\nclass Main {}"),
    ("java", "java.net.Socket", "import java.net.*;\nclass Main {}"),
    ("cpp", "sys/socket", "#include <sys/socket.h>\nint main() {}"),
    ("cpp", "mylib", '#include "mylib.h"\nint main() {}'),
    ("go", "os/exec", 'package main\nimport "os/exec"\n'),
    ("go", "os/exec", 'package main\nimport (\n\t"fmt"\n\tx "os/exec"\n)\n'),
    ("go", "os/exec", "package main\nimport (\n\t`os/exec`\n)\n"),
    ("ruby", "open3", "require 'open3'"),
    ("ruby", "open3", 'require("open3.rb")'),
    ("ruby", "helper", "require_relative 'helper'"),
]


@pytest.mark.parametrize(("lang", "module", "code"), OTHER_LANGUAGE_CASES)
def test_other_language_imports_are_caught(lang: str, module: str, code: str) -> None:
    safe, violations = _policy(module).is_safe(code, lang)
    assert not safe
    assert module in _modules(violations)


@pytest.mark.parametrize(
    ("lang", "module", "code"),
    [
        ("javascript", "child_process", "// require('child_process')\nconsole.log(1);"),
        ("javascript", "child_process", "/* import('child_process') */ let a = 1;"),
        ("javascript", "child_process", "const s = \"require('child_process')\";"),
        ("javascript", "child_process", "const s = `require('child_process')`;"),
        ("javascript", "child_process", "require('child_process_helper');"),
        ("r", "processx", "# library(processx)\nprint(1)"),
        ("r", "processx", 'print("library(processx)")'),
        ("java", "java.net", "// import java.net.Socket;\nclass Main {}"),
        ("cpp", "sys/socket", "// #include <sys/socket.h>\nint main() {}"),
        ("go", "os/exec", 'package main\n// import "os/exec"\nvar s = "import \\"os/exec\\""\n'),
        ("ruby", "open3", "# require 'open3'\nputs 'require \"open3\"'"),
    ],
)
def test_other_language_false_positives_are_avoided(lang: str, module: str, code: str) -> None:
    assert _policy(module).is_safe(code, lang) == (True, [])


def test_other_language_patterns_skip_strings_and_comments() -> None:
    policy = _policy(patterns=(r"\beval\s*\(",))
    code = "// eval(x)\nconst s = 'eval(x)';\n/* eval(x) */\neval(x);\n"
    assert [v.line for v in policy.check(code, "javascript")] == [4]


def test_language_aliases() -> None:
    assert not _policy("child_process").is_safe("require('child_process')", "js")[0]


def test_severity_ordering_and_threshold() -> None:
    low, medium = SecurityIssueSeverity.LOW, SecurityIssueSeverity.MEDIUM
    assert SecurityIssueSeverity.SAFE < low < medium < HIGH
    policy = SecurityPolicy(
        severity_threshold=HIGH, restricted_modules=[RestrictedModule("json", "json", medium)]
    )
    safe, violations = policy.is_safe("import json", "python")
    assert safe
    assert violations[0].severity == medium
    assert violations[0].line == 1


def test_invalid_regex_is_a_configuration_error() -> None:
    expected = r"Invalid regex pattern: \(unclosed\[ \("
    with pytest.raises(InvalidRegexPatternError, match=expected) as info:
        SecurityPattern("(unclosed[", "broken", HIGH)
    assert isinstance(info.value, ConfigurationError)
    assert info.value.pattern == "(unclosed["


def test_policies_are_unchanged_by_checks() -> None:
    policy = get_security_policy("production")
    before = copy.deepcopy(policy)
    for code in PYTHON_MODULE_BYPASSES:
        policy.check(code, "python")
        policy.is_safe(code, "python")
    assert policy == before


@pytest.mark.parametrize("name", ["minimal", "development", "production", "strict"])
def test_presets_exist_and_are_fresh_copies(name: str) -> None:
    first = get_security_policy(name)
    first.add_pattern(SecurityPattern("x", "x", HIGH))
    assert get_security_policy(name) != first


def test_unknown_preset_lists_presets() -> None:
    with pytest.raises(ConfigurationError, match="minimal, development, production, strict"):
        get_security_policy("paranoid")


@pytest.mark.parametrize(
    ("lang", "code"),
    [
        ("python", "import subprocess\nsubprocess.run(['id'])"),
        ("python", "import socket"),
        ("python", "import ctypes"),
        ("python", "import os\nos.system('id')"),
        ("javascript", "require('child_process').execSync('id')"),
        ("go", 'package main\nimport "os/exec"\n'),
    ],
)
def test_production_blocks_dangerous_code(lang: str, code: str) -> None:
    assert not get_security_policy("production").is_safe(code, lang)[0]


@pytest.mark.parametrize(
    ("lang", "code"),
    [
        ("python", "import math\nprint(math.sqrt(2))"),
        ("python", "print('import os; os.system(1)')  # subprocess"),
        ("javascript", "console.log([1, 2].map((x) => x * 2));"),
        ("go", 'package main\nimport "fmt"\nfunc main() { fmt.Println(1) }\n'),
        ("r", "print(mean(c(1, 2)))"),
    ],
)
def test_production_allows_ordinary_code(lang: str, code: str) -> None:
    assert get_security_policy("production").is_safe(code, lang) == (True, [])


def test_strict_is_stricter_than_production() -> None:
    code = "import sys\nprint(sys.argv)"
    assert get_security_policy("production").is_safe(code, "python")[0]
    assert not get_security_policy("strict").is_safe(code, "python")[0]


def test_minimal_allows_everything_ordinary() -> None:
    assert get_security_policy("minimal").is_safe("import os", "python")[0]


def test_spec_example_policy_runs_verbatim() -> None:
    policy = SecurityPolicy(
        severity_threshold=SecurityIssueSeverity.MEDIUM,
        patterns=[
            SecurityPattern(
                pattern=r"os\.system",
                description="System command execution",
                severity=SecurityIssueSeverity.HIGH,
            ),
            SecurityPattern(
                pattern=r"open\s*\([^)]*['\"][wa]",
                description="File write operation",
                severity=SecurityIssueSeverity.MEDIUM,
            ),
        ],
        restricted_modules=[
            RestrictedModule(
                name="subprocess",
                description="Process execution",
                severity=SecurityIssueSeverity.HIGH,
            )
        ],
    )
    assert not policy.is_safe("import subprocess", "python")[0]
    assert policy.is_safe("print('hi')", "python")[0]


def test_spec_layered_policy_runs_verbatim() -> None:
    base_policy = get_security_policy("production")
    base_policy.add_pattern(
        SecurityPattern(
            pattern=r"requests\.get\s*\(.*internal",
            description="Internal network access",
            severity=SecurityIssueSeverity.HIGH,
        )
    )
    safe, violations = base_policy.is_safe("requests.get('http://internal/x')", "python")
    assert not safe
    assert violations[0].description == "Internal network access"


def test_add_rejects_wrong_types() -> None:
    policy = SecurityPolicy(severity_threshold=HIGH)
    with pytest.raises(ConfigurationError):
        policy.add_pattern("os.system")  # type: ignore[arg-type]
    policy.add_restricted_module(RestrictedModule("os", "os", HIGH))
    assert not policy.is_safe("import os", "python")[0]
