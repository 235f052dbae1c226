"""Every route to the builtins namespace is what `getattr(__builtins__, ...)` is.

Reaching the namespace counts as importing `builtins`; what is looked up in it is resolved
(keys folded as for `getattr`), so `eval` reached through `print.__self__.__dict__` meets an
`eval` pattern and `__import__('socket')` meets a restricted `socket`. A key that cannot be
folded is `<dynamic builtins access>`; `__subclasses__`, `__globals__`, `__builtins__`,
`f_globals` and `f_builtins` are `<interpreter internals>`. The line: an ordinary object's
`__dict__`, `vars(obj)`, `globals()` of a benign name, `getattr(obj, computed)` are not flagged.
"""

from __future__ import annotations

import ast

import pytest

from llm_sandbox.security import (
    RestrictedModule,
    SecurityIssueSeverity,
    SecurityPattern,
    SecurityPolicy,
    get_security_policy,
)
from llm_sandbox.security.python_code import fold

HIGH = SecurityIssueSeverity.HIGH
EVAL = r"\b(?:eval|exec)\s*\("
IMPORT = r"\b__import__\s*\("


def _findings(code: str, policy: SecurityPolicy) -> set[tuple[str, str]]:
    return {(v.kind, v.rule) for v in policy.check(code, "python")}


def _restricting(*modules: str, patterns: tuple[str, ...] = ()) -> SecurityPolicy:
    return SecurityPolicy(
        severity_threshold=SecurityIssueSeverity.MEDIUM,
        patterns=[SecurityPattern(p, p, HIGH) for p in patterns],
        restricted_modules=[RestrictedModule(m, m, HIGH) for m in modules],
    )


# (code, what it imports through builtins) -- __import__ reached without writing it.
IMPORTS_THROUGH_BUILTINS = [
    # the issue's three examples
    "import builtins\nbuiltins.__dict__['__imp' + 'ort__']('socket')",
    "globals()['__builtins__'].__dict__['__imp' + 'ort__']('socket')",
    "print.__self__.__dict__['__imp' + 'ort__']('socket')",
    # aliases of the namespace
    "import builtins\nb = builtins\nb.__dict__['__import__']('socket')",
    "import builtins as bi\nd = vars(bi)\nd['__imp' + 'ort__']('socket')",
    "b = __builtins__\nb.__dict__['__import__']('socket')",
    "(b := len.__self__).__import__('socket')",
    "from builtins import __dict__ as d\nd['__import__']('socket')",
    "ns: dict[str, object] = vars(print.__self__)\nns['__import__']('socket')",
    # keys built from constants
    "k = 'port'\nprint.__self__.__dict__[f'__im{k}__']('socket')",
    "len.__self__.__dict__[''.join(['__imp', 'ort__'])]('socket')",
    "print.__self__.__dict__['__tropmi__'[::-1]]('socket')",
    "print.__self__.__dict__['__{}__'.format('import')]('socket')",
    "print.__self__.__dict__['__%s__' % 'import']('socket')",
    "print.__self__.__dict__['_' * 2 + 'import' + '_' * 2]('socket')",
    "print.__self__.__dict__[chr(95) * 2 + 'import__']('socket')",
    "print.__self__.__dict__['__IMPORT__'.lower()]('socket')",
    # lookups that are not subscripts
    "print.__self__.__dict__.get('__import__')('socket')",
    "print.__self__.__dict__.__getitem__('__import__')('socket')",
    "dict.get(vars(print.__self__), '__import__')('socket')",
    "import operator\noperator.itemgetter('__import__')(vars(print.__self__))('socket')",
    "from operator import attrgetter\nattrgetter('__self__.__import__')(print)('socket')",
    "getattr(getattr(print, '__self__'), '__import__')('socket')",
    "object.__getattribute__(print, '__se' + 'lf__').__import__('socket')",
    "print.__self__.__getattribute__('__import__')('socket')",
    # other doors to the namespace
    "__import__('builtins').__dict__['__imp' + 'ort__']('socket')",
    "import importlib\nimportlib.import_module('buil' + 'tins').__import__('socket')",
    "import sys\nsys.modules['builtins'].__dict__['__import__']('socket')",
    "import sys\nsys.modules.get('builtins').__import__('socket')",
    "vars()['__builtins__'].__import__('socket')",
    "globals().get('__builtins__').__import__('socket')",
    "import json\njson.__builtins__['__import__']('socket')",
    "(lambda: 0).__globals__['__builtins__']['__import__']('socket')",
    "import sys\nsys._getframe().f_builtins['__import__']('socket')",
    "import sys\nsys._getframe(0).f_globals['__builtins__'].__import__('socket')",
]


@pytest.mark.parametrize("code", IMPORTS_THROUGH_BUILTINS)
def test_imports_through_builtins_are_imports(code: str) -> None:
    ast.parse(code)  # every case is valid Python
    assert ("module", "socket") in _findings(code, _restricting("socket"))
    assert ("pattern", IMPORT) in _findings(code, _restricting(patterns=(IMPORT,)))
    assert ("module", "builtins") in _findings(code, _restricting("builtins"))
    assert not get_security_policy("production").is_safe(code, "python")[0]
    assert not get_security_policy("development").is_safe(code, "python")[0]


EVALS_THROUGH_BUILTINS = [
    "import builtins\nd = vars(builtins)\nd['ev' + 'al']('1')",
    "getattr(print, '__self__').__dict__['eval']('1')",
    "__builtins__.__dict__['ev' + 'al']('1')",
    "print.__self__.__dict__['ex' + 'ec']('x = 1')",
    "e = print.__self__.__dict__['eval']\ne('1')",
    "[print.__self__.eval][0]('1')",
    "[eval][0]('1')",
    "fns = {'run': eval}\nfns['run']('1')",
]


@pytest.mark.parametrize("code", EVALS_THROUGH_BUILTINS)
def test_eval_through_builtins_meets_an_eval_pattern(code: str) -> None:
    assert ("pattern", EVAL) in _findings(code, _restricting(patterns=(EVAL,)))
    assert not get_security_policy("production").is_safe(code, "python")[0]


def test_code_executed_through_builtins_is_analysed() -> None:
    code = "print.__self__.__dict__['ex' + 'ec']('import socket')"
    assert ("module", "socket") in _findings(code, _restricting("socket"))


@pytest.mark.parametrize(
    "code",
    [
        "print.__self__",
        "x = len.__self__",
        "getattr(print, '__self__')",
        "vars(abs.__self__)",
        "globals()['__builtins__']",
        "import sys\nsys.modules['builtins']",
        "import importlib\nimportlib.import_module('builtins')",
        "__import__('builtins')",
    ],
)
def test_reaching_the_namespace_counts_as_importing_builtins(code: str) -> None:
    assert _findings(code, _restricting("builtins")) == {("module", "builtins")}
    assert not get_security_policy("production").is_safe(code, "python")[0]


DYNAMIC = "<dynamic builtins access>"


@pytest.mark.parametrize(
    "code",
    [
        "n = input()\nprint.__self__.__dict__[n]('socket')",
        "import builtins\ngetattr(builtins, input())('1')",
        "getattr(len, input()).eval('1')",
        "print.__self__.__dict__.get(input())('x')",
        "k = '__imp'\nk += 'ort__'\nprint.__self__.__dict__[k]('socket')",
    ],
)
def test_computed_names_in_builtins_are_flagged(code: str) -> None:
    policy = get_security_policy("production")
    assert ("pattern", DYNAMIC) in _findings(code, policy)
    assert not policy.is_safe(code, "python")[0]
    assert not get_security_policy("development").is_safe(code, "python")[0]


INTERNALS = "<interpreter internals>"


@pytest.mark.parametrize(
    ("code", "attr"),
    [
        ("().__class__.__base__.__subclasses__()", "__subclasses__"),
        ("[].__class__.__mro__[-1].__subclasses__()[0]", "__subclasses__"),
        ("def f():\n    pass\nf.__globals__['x']", "__globals__"),
        ("getattr(help, '__glo' + 'bals__')", "__globals__"),
        ("from operator import attrgetter\nattrgetter('__call__.__globals__')(f)", "__globals__"),
        ("import json\njson.__builtins__", "__builtins__"),
        ("import sys\nsys._getframe().f_globals", "f_globals"),
        ("import inspect\ninspect.currentframe().f_back.f_builtins", "f_builtins"),
        ("print.__self__", "__self__"),
        ("getattr(len, '__se' + 'lf__')", "__self__"),
        ("globals()['__builtins__']", "__builtins__"),
        ("vars().get('__builtins__')", "__builtins__"),
    ],
)
def test_interpreter_internals_are_flagged(code: str, attr: str) -> None:
    violations = get_security_policy("production").check(code, "python")
    matched = {v.matched for v in violations if v.rule == INTERNALS}
    assert matched == {f"{INTERNALS}.{attr}"}
    assert all(v.severity == HIGH for v in violations if v.rule == INTERNALS)
    assert not get_security_policy("development").is_safe(code, "python")[0]


@pytest.mark.parametrize(
    "code",
    [
        "import sys\n[m for m in sys.modules.values() if m.__name__ == 'builtins'][0].eval('1')",
        "import sys\nfor name in sys.modules:\n    print(name)",
        "import sys\ndict(sys.modules)['socket']",
        "import sys\nsys.modules[input()]",
        "import sys\nsys.modules.get(input())",
        "import sys as s\nt = s.modules\nlist(t.items())",
    ],
)
def test_the_module_table_handed_around_is_a_dynamic_import(code: str) -> None:
    assert ("module", "<dynamic import>") in _findings(code, get_security_policy("production"))


def test_a_loader_counts_as_importlib() -> None:
    code = "__loader__.load_module('socket')"
    assert ("module", "importlib") in _findings(code, get_security_policy("production"))


ORDINARY = [
    "class A:\n    pass\na = A()\na.__dict__['x'] = 1\nprint(vars(a), a.__dict__.get('x'))",
    "class A:\n    def f(self):\n        return self.__dict__.get('x', vars(self))",
    "x = 1\nprint(globals()['x'], globals().get('x'), 'x' in globals(), locals())",
    "class A:\n    y = 1\nname = input()\nprint(getattr(A, name, None))",
    "print(type(1).__name__, (1).__class__.__name__, int.__mro__, int.__bases__)",
    "print(type(print).__self__)",  # a descriptor of the function type, not the namespace
    "class A:\n    def m(self):\n        pass\nprint(A().m.__self__)",
    "d = {'a': 1}\nprint(d.get('a'), d['a'], dict.get(d, 'a'))",
    "import json\nprint(json.dumps({'__builtins__': 1}))",
    "import operator\nprint(operator.itemgetter('a')({'a': 1}))",
    "import math\nprint(vars(math)['pi'], getattr(math, 'sqrt')(4))",
    "print('print.__self__.__dict__[x]')  # print.__self__",
    "def f(*args, **kwargs):\n    return f.__name__, f.__doc__, f.__defaults__",
    "import functools\nprint(functools.reduce(lambda a, b: a + b, [1, 2]))",
    "import sys\nprint(sys.modules[__name__].__doc__, 'numpy' in sys.modules, sys.argv)",
]


@pytest.mark.parametrize("code", ORDINARY)
def test_ordinary_code_is_not_flagged(code: str) -> None:
    assert get_security_policy("production").is_safe(code, "python") == (True, [])
    strict = {v.rule for v in get_security_policy("strict").check(code, "python")}
    assert not strict & {INTERNALS, DYNAMIC, "builtins"}


# --- constants are trusted only when nothing can rebind them -----------------------------------

DYNAMIC_CODE = "<dynamic code>"


@pytest.mark.parametrize(
    "code",
    [
        "src = 'x = 1'\nsrc = input()\nexec(src)",
        "src = 'x = 1'\nfor src in [input()]:\n    exec(src)",
        "src = 'x = 1'\ndef f(src):\n    exec(src)\nf(input())",
        "k = 'x = 1'\nglobals()['k'] = input()\nexec(k)",
        "k = 'x = 1'\ng = globals()\nh = g\nh['k'] = input()\nexec(k)",
        "k = 'x = 1'\nvars().update(k=input())\nexec(k)",
        "k = 'x = 1'\nexec('k = input()')\nexec(k)",
        "import sys\nk = 'x = 1'\nsetattr(sys.modules[__name__], 'k', input())\nexec(k)",
        "import __main__\nk = 'x = 1'\n__main__.k = input()\nexec(k)",
    ],
)
def test_rebindable_names_are_not_constants(code: str) -> None:
    policy = _restricting(patterns=(DYNAMIC_CODE,))
    assert ("pattern", DYNAMIC_CODE) in _findings(code, policy)


def test_a_name_bound_once_is_a_constant() -> None:
    code = "src = 'import socket'\nexec(src)"
    assert _findings(code, _restricting("socket", patterns=(DYNAMIC_CODE,))) == {
        ("module", "socket")
    }


def test_code_too_deep_to_walk_is_flagged_not_crashed() -> None:
    code = "x = " + " + ".join(['"a"'] * 3000) + "\nimport socket\n"
    policy = get_security_policy("production")
    violations = policy.check(code, "python")
    assert {v.rule for v in violations} >= {"<unanalysable code>", "socket"}
    assert not policy.is_safe(code, "python")[0]


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("'ab'[::-1]", "ba"),
        ("'abc'[1:]", "bc"),
        ("'abc'[-1]", "c"),
        ("'{}-{0}'.format('x')", None),  # mixes automatic and manual numbering: refused
        ("'{0}{1}'.format('a', 'b')", "ab"),
        ("'{:>999999999}'.format('x')", None),  # a format spec could allocate anything
        ("'{0.__class__}'.format('x')", None),
        ("'%999999999s' % 'x'", None),
        ("'%s%s' % ('a', 'b')", "ab"),
        ("'a' * 999999999", None),
        ("'ab' * 2", "abab"),
        ("chr(97) + str('b')", "ab"),
        ("chr(-1)", None),
        ("'A B'.lower().replace(' ', '')", "ab"),
        ("'a'.join(x)", None),
    ],
)
def test_folding(expr: str, value: str | None) -> None:
    node = ast.parse(expr, mode="eval").body
    assert fold(node, {}) == value


def test_findings_keep_their_lines() -> None:
    code = "x = 1\nd = vars(print.__self__)\ny = 2\nd['ev' + 'al']('1')\n"
    violations = _restricting("builtins", patterns=(EVAL,)).check(code, "python")
    assert [(v.kind, v.line) for v in violations] == [("module", 2), ("pattern", 4)]
