"""Python, analysed on its syntax tree.

Imports are read from the tree, including the indirect forms (`__import__("os")`,
`importlib.import_module("o"+"s")`, `sys.modules["os"]`). Calls are resolved through import
aliases, simple assignments, `getattr(obj, <constant>)` and `__builtins__[...]`, and recorded in a
canonical spelling (`from os import system as s; s(...)` gives `os.system(`), so user patterns
see through the indirection. Constant strings handed to `exec`/`eval`/`compile` are analysed as
code too. Comments and strings are found with `tokenize`; code that does not parse falls back to
the generic scanner and import forms of the Python handler's `SourceRules`.
"""

from __future__ import annotations

import ast
import io
import tokenize

from llm_sandbox.language_handlers.syntax import SourceRules, Syntax
from llm_sandbox.security import scanning
from llm_sandbox.security.scanning import Analysis, Found, Masked, scan

_BUILTINS = {"__builtins__", "builtins"}
_IMPORTERS = {"__import__", "importlib.import_module", "importlib.__import__"}
_EXECUTORS = {"exec", "eval", "compile"}
_MAX_DEPTH = 3


def analyse_python(code: str, rules: SourceRules) -> Analysis:
    """Python's analysis; `rules` (the Python handler's) serve code that does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return scan(code, rules)
    visitor = _Visitor(line_offset=0, depth=0)
    visitor.visit(tree)
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


def fold(node: ast.AST, constants: dict[str, str]) -> str | None:
    """The string value of `node` if it is built only from constants, else None."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = fold(node.left, constants), fold(node.right, constants)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.JoinedStr):
        parts = [fold(value, constants) for value in node.values]
        return None if any(p is None for p in parts) else "".join(p or "" for p in parts)
    if isinstance(node, ast.FormattedValue) and node.format_spec is None:
        return fold(node.value, constants)
    if isinstance(node, ast.Call):
        return _fold_join(node, constants)
    return None


def _fold_join(node: ast.Call, constants: dict[str, str]) -> str | None:
    func = node.func
    if not (isinstance(func, ast.Attribute) and func.attr == "join" and len(node.args) == 1):
        return None
    separator = fold(func.value, constants)
    items = node.args[0]
    if separator is None or not isinstance(items, (ast.List, ast.Tuple)):
        return None
    parts = [fold(item, constants) for item in items.elts]
    return None if any(p is None for p in parts) else separator.join(p or "" for p in parts)


class _Visitor(ast.NodeVisitor):
    """Collects imports and canonical call spellings while walking the tree in source order."""

    def __init__(self, line_offset: int, depth: int) -> None:
        self.line_offset = line_offset
        self.depth = depth
        self.aliases: dict[str, str] = {}
        self.constants: dict[str, str] = {}
        self.imports: list[Found] = []
        self.derived: list[Found] = []

    def _line(self, node: ast.AST) -> int:
        return self.line_offset or getattr(node, "lineno", 1)

    def _import(self, name: str, node: ast.AST) -> None:
        self.imports.append(Found(name, self._line(node)))

    def _derive(self, text: str, node: ast.AST) -> None:
        self.derived.append(Found(text, self._line(node)))

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

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        value = fold(node.value, self.constants)
        target = self.resolve(node.value)
        for name in (t.id for t in node.targets if isinstance(t, ast.Name)):
            if value is not None:
                self.constants[name] = value
            if target is not None and not isinstance(node.value, ast.Constant):
                self.aliases[name] = target

    def visit_Name(self, node: ast.Name) -> None:
        if node.id == "__builtins__":
            self._import("builtins", node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        self.generic_visit(node)
        if self.resolve(node.value) == "sys.modules":
            key = fold(node.slice, self.constants)
            self._import(key if key is not None else "sys.modules", node)
        resolved = self.resolve(node)
        if resolved is not None:
            self._derive(resolved + "(", node)

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        name = self.resolve(node.func)
        if name is None:
            return
        self._derive(name + "(", node)
        if name in _IMPORTERS and node.args:
            self._dynamic_import(node)
        elif name in _EXECUTORS and node.args:
            self._executed(node)
        elif name == "getattr":
            resolved = self.resolve(node)
            if resolved is not None:
                self._derive(resolved + "(", node)

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
        inner = _Visitor(self._line(node), self.depth + 1)
        inner.visit(tree)
        self.imports.extend(inner.imports)
        self.derived.extend(inner.derived)
        for line in source.splitlines():
            self._derive(line, node)

    def resolve(self, node: ast.AST) -> str | None:
        """The canonical dotted name `node` refers to, or None if it cannot be named."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            return _join(self.resolve(node.value), node.attr)
        if isinstance(node, ast.Subscript):
            return self._resolve_subscript(node)
        if isinstance(node, ast.Call):
            return self._resolve_call(node)
        return None

    def _resolve_subscript(self, node: ast.Subscript) -> str | None:
        base = self.resolve(node.value)
        key = fold(node.slice, self.constants)
        if key is None or base is None:
            return None
        if base == "sys.modules":
            return key
        if base in _BUILTINS or base in {f"{b}.__dict__" for b in _BUILTINS}:
            return key
        if base in {"globals", "locals", "vars"}:
            return key
        return None

    def _resolve_call(self, node: ast.Call) -> str | None:
        func = self.resolve(node.func)
        if func == "getattr" and len(node.args) >= 2:
            attr = fold(node.args[1], self.constants)
            return None if attr is None else _join(self.resolve(node.args[0]), attr)
        if func in _IMPORTERS and node.args:
            return fold(node.args[0], self.constants)
        if func in {"globals", "locals", "vars"} and not node.args:
            return "globals"
        if func == "vars" and node.args:
            return self.resolve(node.args[0])
        return None


def _join(base: str | None, attr: str) -> str | None:
    if base is None:
        return None
    if base in _BUILTINS:
        return attr
    return f"{base}.{attr}"
