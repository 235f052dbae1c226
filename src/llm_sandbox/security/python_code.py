"""Python, analysed on its syntax tree.

Imports are read from the tree, including the indirect forms (`__import__("os")`,
`importlib.import_module("o"+"s")`, `sys.modules["os"]`). Calls are resolved through import
aliases, simple assignments, `getattr(obj, <constant>)` and lookups in namespaces, and recorded
in a canonical spelling (`from os import system as s; s(...)` gives `os.system(`), so user
patterns see through the indirection. Constant strings handed to `exec`/`eval`/`compile` are
analysed as code too. Comments and strings are found with `tokenize`; code that does not parse
falls back to the generic scanner and import forms of the Python handler's `SourceRules`.

Every route to the builtins namespace is one: `__builtins__`, `builtins`, their `__dict__`,
`vars(...)` of them, a builtin function's `__self__`, `globals()["__builtins__"]`, a module's,
function's or frame's `__builtins__`/`f_builtins`, `sys.modules["builtins"]`, ... Reaching it
counts as importing `builtins`; a name looked up in it (by subscript, `.get`, `getattr`,
`__getattribute__`, `operator.itemgetter`/`attrgetter`) is resolved like `getattr`, the key
folded from constants; a key that cannot be folded is derived as `<dynamic builtins access>`.
`__subclasses__`, `__globals__`, `__builtins__`, `f_globals` and `f_builtins` are derived as
`<interpreter internals>.<name>`. Ordinary objects' `__dict__`, `vars(obj)`, `globals()` and
`getattr(obj, computed)` are not flagged.

Folding trusts a name only if it is bound once in the program and nothing writes a namespace
(`globals()[k] = ...`, `setattr(module, ...)`), so a rebound name is never taken for a constant.
"""

from __future__ import annotations

import ast
import builtins
import io
import re
import string
import tokenize
import types

from llm_sandbox.language_handlers.syntax import SourceRules, Syntax
from llm_sandbox.security import scanning
from llm_sandbox.security.scanning import Analysis, Found, Masked, scan

_IMPORTERS = {"__import__", "importlib.import_module", "importlib.__import__"}
_EXECUTORS = {"exec", "eval", "compile"}
_MAX_DEPTH = 3


def analyse_python(code: str, rules: SourceRules) -> Analysis:
    """Python's analysis; `rules` (the Python handler's) serve code that does not parse."""
    try:
        tree = ast.parse(code)
        visitor = _Visitor(tree, line_offset=0, depth=0)
        visitor.visit(tree)
    except (SyntaxError, ValueError):
        return scan(code, rules)
    except RecursionError:
        # Too deep to parse or walk (thousands of chained `+`): scanned, and said so.
        found = scan(code, rules)
        found.derived.append(Found(UNANALYSABLE_MARK, 1))
        return found
    return Analysis(mask_python(code, rules.syntax), visitor.imports, visitor.derived)


def mask_python(code: str, syntax: Syntax) -> Masked:
    """Comments blanked, string spans recorded, using Python's own tokenizer (the generic
    scanner with `syntax` where it fails)."""
    starts = [0] + [i + 1 for i, ch in enumerate(code) if ch == "\n"]
    strings: list[tuple[int, int]] = []
    comments: list[tuple[int, int]] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type not in (tokenize.STRING, tokenize.COMMENT) and not _fstring_part(token):
                continue
            span = (_offset(starts, token.start), _offset(starts, token.end))
            (comments if token.type == tokenize.COMMENT else strings).append(span)
    except (tokenize.TokenError, SyntaxError):
        return scanning.mask(code, syntax)
    text = code
    for start, end in comments:
        text = scanning.blank(text, start, end)
    return Masked(text, strings + comments)


def _fstring_part(token: tokenize.TokenInfo) -> bool:
    return tokenize.tok_name.get(token.type) == "FSTRING_MIDDLE"


def _offset(starts: list[int], point: tuple[int, int]) -> int:
    row, col = point
    return starts[row - 1] + col if row - 1 < len(starts) else starts[-1]


_FOLD_LIMIT = 10_000  # longest string constant folding builds (source constants stay small)


def fold(node: ast.AST, constants: dict[str, str]) -> str | None:
    """The string value of `node` if it is built only from constants, else None.

    Understood: literals, names bound to constants, `+`, `*` by an int, f-strings, `%s`
    formatting, `"{}".format(...)`, `"".join([...])`, slices (`"lave"[::-1]`), `chr(101)`,
    `str(...)` and the case/strip/replace methods.
    """
    value = _fold(node, constants)
    return value if value is None or len(value) <= _FOLD_LIMIT else None


def _fold(node: ast.AST, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if isinstance(node, ast.BinOp):
        return _fold_binop(node, constants)
    if isinstance(node, ast.JoinedStr):
        parts = [fold(value, constants) for value in node.values]
        return None if any(p is None for p in parts) else "".join(p or "" for p in parts)
    if isinstance(node, ast.FormattedValue) and node.format_spec is None:
        return fold(node.value, constants)
    if isinstance(node, ast.Subscript):
        return _fold_slice(node, constants)
    if isinstance(node, ast.Call):
        return _fold_call(node, constants)
    return None


def _fold_binop(node: ast.BinOp, constants: dict[str, str]) -> str | None:
    left = fold(node.left, constants)
    if left is None:
        return None
    if isinstance(node.op, ast.Add):
        right = fold(node.right, constants)
        return None if right is None else left + right
    if isinstance(node.op, ast.Mult):
        times = _int(node.right)
        return None if times is None or len(left) * times > _FOLD_LIMIT else left * times
    if isinstance(node.op, ast.Mod) and re.fullmatch(r"(?:[^%]|%s|%%)*", left):
        items = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
        args = [fold(item, constants) for item in items]
        if any(a is None for a in args):
            return None
        try:
            return left % tuple(args)
        except (TypeError, ValueError):
            return None
    return None


def _int(node: ast.AST) -> int | None:
    if isinstance(node, ast.Constant) and type(node.value) is int and node.value >= 0:
        return node.value
    return None


def _fold_slice(node: ast.Subscript, constants: dict[str, str]) -> str | None:
    text = fold(node.value, constants)
    if text is None:
        return None
    part = node.slice
    if isinstance(part, ast.Slice):
        parts = (part.lower, part.upper, part.step)
        bounds = [_signed(p) if p is not None else None for p in parts]
        if any(b is False for b in bounds) or bounds[2] == 0:
            return None
        lower, upper, step = (b if isinstance(b, int) else None for b in bounds)
        return text[lower:upper:step]
    index = _signed(part)
    if isinstance(index, bool) or not -len(text) <= index < len(text):
        return None
    return text[index]


def _signed(node: ast.AST) -> int | bool:
    """A constant int, or False if `node` is not one."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _int(node.operand)
        return False if value is None else -value
    value = _int(node)
    return False if value is None else value


def _fold_call(node: ast.Call, constants: dict[str, str]) -> str | None:
    func = node.func
    if node.keywords:
        return None
    if isinstance(func, ast.Name) and len(node.args) == 1:
        if func.id == "chr":
            code = _int(node.args[0])
            return chr(code) if code is not None and code < 0x110000 else None
        if func.id == "str":
            return fold(node.args[0], constants)
        return None
    if not isinstance(func, ast.Attribute):
        return None
    if func.attr == "join" and len(node.args) == 1:
        return _fold_join(func.value, node.args[0], constants)
    text = fold(func.value, constants)
    args = [fold(arg, constants) for arg in node.args]
    if text is None or any(a is None for a in args):
        return None
    strings = [a or "" for a in args]
    if func.attr in {"lower", "upper", "strip", "lstrip", "rstrip", "title", "swapcase"}:
        return getattr(text, func.attr)(*strings) if len(strings) <= 1 else None
    if func.attr == "replace" and len(strings) == 2:
        return text.replace(strings[0], strings[1])
    if func.attr == "format" and _plain_fields(text):
        try:
            return text.format(*strings)
        except (IndexError, KeyError, ValueError):
            return None
    return None


def _plain_fields(template: str) -> bool:
    """Whether every field of a format template is `{}` or `{N}` (no spec, no conversion)."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return False
    return all(
        name is None or ((name == "" or name.isdigit()) and not spec and conversion is None)
        for _, name, spec, conversion in fields
    )


def _fold_join(separator_node: ast.AST, items: ast.AST, constants: dict[str, str]) -> str | None:
    separator = fold(separator_node, constants)
    if separator is None or not isinstance(items, ast.List | ast.Tuple):
        return None
    parts = [fold(item, constants) for item in items.elts]
    return None if any(p is None for p in parts) else separator.join(p or "" for p in parts)


# What names resolve to, besides dotted names: the builtins namespace (the `builtins` module,
# `__builtins__`, its `__dict__`, `vars()` of it, the `__self__` of a builtin function, ...)
# and a module's globals dict (`globals()`, `vars()`, `f.__globals__`, `frame.f_globals`).
BUILTINS = "builtins"
_GLOBALS = "globals()"
_BUILTIN_FUNCTIONS = frozenset(
    name for name, value in vars(builtins).items() if isinstance(value, types.BuiltinFunctionType)
)
_LOOKUPS = {"get", "__getitem__", "pop", "setdefault"}
INTERNALS = frozenset({"__subclasses__", "__globals__", "__builtins__", "f_globals", "f_builtins"})
"""Attributes that reach interpreter internals: every class alive, a function's or a frame's
globals, the builtins namespace. Reading one is derived as `<interpreter internals>.<name>`."""
INTERNALS_MARK = "<interpreter internals>"
DYNAMIC_BUILTINS_MARK = "<dynamic builtins access>"
"""Derived for a lookup of a computed (unfoldable) name in the builtins namespace."""
UNANALYSABLE_MARK = "<unanalysable code>"
"""Derived when the syntax tree is too deep to walk; only the generic scanner ran."""


def canonical(dotted: str) -> str | None:
    """A dotted name with every route to the builtins namespace spelled `builtins`:
    `__builtins__.__dict__` and `builtins.__dict__` are `builtins`, `builtins.eval` is `eval`."""
    head, *rest = dotted.split(".")
    name: str | None = BUILTINS if head == "__builtins__" else head
    for attr in rest:
        name = attribute(name, attr)
    return name


def attribute(base: str | None, attr: str) -> str | None:
    """What `<base>.<attr>` refers to."""
    if attr in {"__builtins__", "f_builtins"}:
        return BUILTINS  # every module, function and frame knows the builtins namespace
    if attr in {"__globals__", "f_globals"}:
        return _GLOBALS  # whatever it is read from
    if base is None:
        return None
    if base == BUILTINS:
        return BUILTINS if attr == "__dict__" else attr
    if attr == "__self__":
        if base in _BUILTIN_FUNCTIONS:
            return BUILTINS  # print.__self__ is the builtins module
        owner, dot, _ = base.rpartition(".")
        return owner if dot else None  # a bound method's object, a C function's module
    return f"{base}.{attr}"


def lookup(base: str | None, key: str | None) -> str | None:
    """What `<base>[<key>]` (or `<base>.get(<key>)`) refers to, if `base` is a namespace."""
    if key is None:
        return None
    if key == "__builtins__":
        return BUILTINS  # any globals dict's "__builtins__" entry
    if base in {"sys.modules", BUILTINS, _GLOBALS}:
        return canonical(key)
    if base is not None and base.endswith(".__dict__"):
        return attribute(base.removesuffix(".__dict__"), key)
    return None


_NAMESPACE_CALLS = {"globals", "vars", "locals", "__import__", "import_module"}
_NAMESPACE_ATTRIBUTES = {"__dict__", "__globals__", "f_globals", "f_locals", "modules"}
_WRITERS = {"update", "__setitem__", "__delitem__", "setdefault", "pop", "popitem", "clear"}


def bindings(tree: ast.AST) -> tuple[dict[str, int], bool]:
    """How often each name is bound in `tree` (assignments, loops, parameters, imports, ...),
    and whether the program may rebind names behind the analyser's back (it writes a namespace:
    `globals()[k] = ...`, `vars().update(...)`, `setattr(sys.modules[__name__], ...)`).

    Folding trusts a name as a constant only if it is bound once and nothing rewrites namespaces.
    """
    counts: dict[str, int] = {}
    namespaces: set[str] = set()  # names bound to a namespace (g = globals()) or a module
    assigned: list[tuple[list[str], bool, set[str]]] = []  # targets, value's shape
    receivers: list[ast.AST] = []  # what the program writes into
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if not isinstance(node.ctx, ast.Load):
                counts[node.id] = counts.get(node.id, 0) + 1
        elif isinstance(node, ast.Attribute | ast.Subscript):
            if not isinstance(node.ctx, ast.Load):
                receivers.append(node.value)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in _WRITERS:
                receivers.append(func.value)
            elif isinstance(func, ast.Name) and func.id in {"setattr", "delattr"} and node.args:
                receivers.append(node.args[0])
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.NamedExpr):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if names and node.value is not None:
                assigned.append((names, *_shape(node.value)))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            namespaces.update(a.asname or a.name.split(".")[0] for a in node.names)
        else:
            for name in _bound(node):
                counts[name] = counts.get(name, 0) + 1
    unsettled = _spread(namespaces, assigned)
    shapes = [_shape(receiver) for receiver in receivers]
    rewrites = unsettled or any(intrinsic or names & namespaces for intrinsic, names in shapes)
    return counts, rewrites


def _spread(namespaces: set[str], assigned: list[tuple[list[str], bool, set[str]]]) -> bool:
    """Add to `namespaces` the names assigned a namespace, transitively; True if that did not
    settle in a few rounds (then the caller trusts no name)."""
    for _ in range(8):
        grown = False
        for targets, intrinsic, names in assigned:
            if (intrinsic or names & namespaces) and not namespaces.issuperset(targets):
                namespaces.update(targets)
                grown = True
        if not grown:
            return False
    return True


def _shape(expr: ast.AST) -> tuple[bool, set[str]]:
    """Whether `expr` evidently yields a namespace (`globals()`, `x.__dict__`, `sys.modules`,
    an imported module), and the names it mentions (it may be one of them)."""
    names: set[str] = set()
    for node in ast.walk(expr):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in _NAMESPACE_ATTRIBUTES:
            return True, names
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in _NAMESPACE_CALLS:
                return True, names
    return False, names


def _bound(node: ast.AST) -> list[str]:
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.alias) and node.name != "*":
        return [node.asname or node.name.split(".")[0]]
    if isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
        return [node.name]
    if isinstance(node, ast.MatchMapping) and node.rest:
        return [node.rest]
    return []


class _Visitor(ast.NodeVisitor):
    """Collects imports and canonical call spellings while walking the tree in source order."""

    def __init__(self, tree: ast.AST, line_offset: int, depth: int) -> None:
        self.line_offset = line_offset
        self.depth = depth
        self.aliases: dict[str, str] = {}
        self.constants: dict[str, str] = {}
        counts, self.rewrites_namespaces = bindings(tree)
        self.rebound = {name for name, count in counts.items() if count > 1}
        self.imports: list[Found] = []
        self.derived: list[Found] = []
        self._resolved: dict[int, str | None] = {}  # each node is resolved at its own visit

    def _line(self, node: ast.AST) -> int:
        return self.line_offset or getattr(node, "lineno", 1)

    def _import(self, name: str, node: ast.AST) -> None:
        self.imports.append(Found(name, self._line(node)))

    def _derive(self, text: str, node: ast.AST) -> None:
        self.derived.append(Found(text, self._line(node)))

    def _route(self, node: ast.AST) -> None:
        """Reaching the builtins namespace counts as importing `builtins`."""
        if self.resolve(node) == BUILTINS:
            self._import(BUILTINS, node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._import(alias.name, node)
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                head = alias.name.split(".")[0]
                self.aliases[head] = head

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module:
            return
        self._import(node.module, node)
        for alias in node.names:
            full = f"{node.module}.{alias.name}"
            self._import(full, node)
            self._derive(full, node)
            self.aliases[alias.asname or alias.name] = full
            if alias.name in INTERNALS:
                self._derive(f"{INTERNALS_MARK}.{alias.name}", node)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        for target in node.targets:
            self._bind(target, node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.generic_visit(node)
        if node.value is not None:
            self._bind(node.target, node.value)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.generic_visit(node)
        self._bind(node.target, node.value)

    def _bind(self, target: ast.AST, value_node: ast.AST) -> None:
        if not isinstance(target, ast.Name):
            return
        value = fold(value_node, self.constants)
        resolved = self.resolve(value_node)
        trusted = not self.rewrites_namespaces and target.id not in self.rebound
        if value is not None and trusted:
            self.constants[target.id] = value
        if resolved is not None and not isinstance(value_node, ast.Constant):
            self.aliases[target.id] = resolved

    def visit_Name(self, node: ast.Name) -> None:
        if node.id == "__builtins__":
            self._import(BUILTINS, node)
        elif node.id in {"__loader__", "__spec__"}:
            self._import("importlib", node)  # a loader imports whatever it is asked to
        self._referenced(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.generic_visit(node)
        self._internal(node.attr, self.resolve(node), node)
        self._route(node)
        self._referenced(node)

    def _internal(self, attr: str, reached: str | None, node: ast.AST) -> None:
        """Derive `<interpreter internals>.<attr>` if reading `attr` reaches internals (a
        builtin function's `__self__` is the builtins module)."""
        if attr in INTERNALS or (attr == "__self__" and reached == BUILTINS):
            self._derive(f"{INTERNALS_MARK}.{attr}", node)

    def _referenced(self, node: ast.Name | ast.Attribute) -> None:
        """`exec`, `eval`, `__import__`, ... count as called wherever they are named (`[eval][0]`
        calls it without `eval(` appearing)."""
        if isinstance(node.ctx, ast.Load):
            name = self.resolve(node)
            if name in _EXECUTORS or name in _IMPORTERS:
                self._derive(f"{name}(", node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        self.generic_visit(node)
        self._looked_up(self.resolve(node.value), node.slice, node)
        resolved = self.resolve(node)
        if resolved is not None:
            self._derive(resolved + "(", node)
        self._route(node)

    def _looked_up(self, base: str | None, key_node: ast.AST, node: ast.AST) -> None:
        key = fold(key_node, self.constants)
        if key == "__builtins__":
            self._derive(f"{INTERNALS_MARK}.__builtins__", node)
        if base == "sys.modules":
            if key is not None:
                self._import(key, node)
            elif not (isinstance(key_node, ast.Name) and key_node.id == "__name__"):
                self._import("<dynamic import>", node)  # any module, by a computed name
        elif base == BUILTINS and key is None:
            self._derive(DYNAMIC_BUILTINS_MARK, node)

    def visit_For(self, node: ast.For) -> None:
        self.generic_visit(node)
        self._module_table(node.iter, node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self.generic_visit(node)
        self._module_table(node.iter, node)

    def _module_table(self, node: ast.AST, at: ast.AST) -> None:
        """`sys.modules` handed around whole (iterated, copied, passed on) yields any module."""
        if self.resolve(node) == "sys.modules":
            self._import("<dynamic import>", at)

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        name = self.resolve(node.func)
        if isinstance(node.func, ast.Attribute) and node.func.attr in {"values", "items", "copy"}:
            self._module_table(node.func.value, node)
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            self._module_table(arg, node)
        indirect = self._indirect(node)
        resolved = self.resolve(node)
        if indirect and resolved is not None:
            self._derive(resolved + "(", node)
        self._route(node)
        if name is None:
            return
        self._derive(name + "(", node)
        if name in _IMPORTERS and node.args:
            self._dynamic_import(node)
        elif name in _EXECUTORS and node.args:
            self._executed(node)

    def _indirect(self, node: ast.Call) -> bool:
        """Record what a lookup or attribute call (`getattr`, `.get`, ...) reaches; True if
        `node` is one."""
        found = self._key_lookup(node)
        if found is not None:
            base, key_node = found
            self._looked_up(base, key_node, node)
            return True
        reached = self._attribute_lookup(node)
        if reached is None:
            return False
        obj, name_node = reached
        name = fold(name_node, self.constants)
        base = self.resolve(obj)
        if name is None:
            if base in {BUILTINS, *_BUILTIN_FUNCTIONS}:
                self._derive(DYNAMIC_BUILTINS_MARK, node)
            return True
        for attr in name.split("."):
            base = attribute(base, attr)
            self._internal(attr, base, node)
            if base == BUILTINS:
                self._import(BUILTINS, node)  # a route on the way (attrgetter("__self__.x"))
        return True

    def _key_lookup(self, node: ast.Call) -> tuple[str | None, ast.AST] | None:
        """(namespace, key) of `ns.get(key)`, `dict.get(ns, key)`, `itemgetter(key)(ns)`, ..."""
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _LOOKUPS and node.args:
            owner = self.resolve(func.value)
            if owner == "dict":
                return (self.resolve(node.args[0]), node.args[1]) if len(node.args) > 1 else None
            return owner, node.args[0]
        if (
            isinstance(func, ast.Call)
            and self.resolve(func.func) == "operator.itemgetter"
            and len(func.args) == 1
            and len(node.args) == 1
        ):
            return self.resolve(node.args[0]), func.args[0]
        return None

    def _attribute_lookup(self, node: ast.Call) -> tuple[ast.AST, ast.AST] | None:
        """(object, name) of `getattr(o, name)`, `o.__getattribute__(name)`,
        `object.__getattribute__(o, name)` and `attrgetter(name)(o)`."""
        func = node.func
        if self.resolve(func) == "getattr" and len(node.args) >= 2:
            return node.args[0], node.args[1]
        if isinstance(func, ast.Attribute) and func.attr == "__getattribute__":
            if len(node.args) == 2:
                return node.args[0], node.args[1]
            if len(node.args) == 1:
                return func.value, node.args[0]
        if (
            isinstance(func, ast.Call)
            and self.resolve(func.func) == "operator.attrgetter"
            and len(func.args) == 1
            and len(node.args) == 1
        ):
            return node.args[0], func.args[0]
        return None

    def _dynamic_import(self, node: ast.Call) -> None:
        module = fold(node.args[0], self.constants)
        self._import(module if module is not None else "<dynamic import>", node)

    def _executed(self, node: ast.Call) -> None:
        source = fold(node.args[0], self.constants)
        if source is None or self.depth >= _MAX_DEPTH:
            self._derive("<dynamic code>(", node)
            return
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            return
        inner = _Visitor(tree, self._line(node), self.depth + 1)
        inner.visit(tree)
        self.imports.extend(inner.imports)
        self.derived.extend(inner.derived)
        # What the executed code binds is no constant out here any more.
        counts, rewrites = bindings(tree)
        self.rebound.update(counts)
        self.rewrites_namespaces |= rewrites
        for name in counts if not rewrites else list(self.constants):
            self.constants.pop(name, None)
        for line in source.splitlines():
            self._derive(line, node)

    def resolve(self, node: ast.AST) -> str | None:
        """The canonical dotted name `node` refers to (`builtins` for the builtins namespace),
        or None if it cannot be named."""
        key = id(node)
        if key not in self._resolved:
            self._resolved[key] = self._resolve(node)
        return self._resolved[key]

    def _resolve(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return canonical(self.aliases.get(node.id, node.id))
        if isinstance(node, ast.Attribute):
            return attribute(self.resolve(node.value), node.attr)
        if isinstance(node, ast.Subscript):
            return lookup(self.resolve(node.value), fold(node.slice, self.constants))
        if isinstance(node, ast.NamedExpr):
            return self.resolve(node.value)
        if isinstance(node, ast.Call):
            return self._resolve_call(node)
        return None

    def _resolve_call(self, node: ast.Call) -> str | None:
        found = self._key_lookup(node)
        if found is not None:
            base, key_node = found
            return lookup(base, fold(key_node, self.constants))
        attr = self._attribute_lookup(node)
        if attr is not None:
            obj, name_node = attr
            name = fold(name_node, self.constants)
            if name is None:
                return None
            base = self.resolve(obj)
            for part in name.split("."):
                base = attribute(base, part)
            return base
        func = self.resolve(node.func)
        if func in _IMPORTERS and node.args:
            module = fold(node.args[0], self.constants)
            return None if module is None else canonical(module)
        if func in {"globals", "locals", "vars"} and not node.args:
            return _GLOBALS
        if func == "vars" and node.args:
            return attribute(self.resolve(node.args[0]), "__dict__")
        return None
