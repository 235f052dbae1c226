"""Comment- and string-aware scanning of source text: one small tokenizer for every language.

The lexical rules are data: each language's handler declares its `Syntax`. The result is a
`Masked` text: comments are blanked (newlines kept, so offsets and line numbers do not move) and
the spans of string literals and comments are remembered, so a regex match can be accepted only
when it starts in real code.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from llm_sandbox.language_handlers.syntax import SourceRules, Syntax


@dataclass
class Masked:
    """Source text with comments blanked and the non-code spans (strings, comments) recorded."""

    text: str
    spans: list[tuple[int, int]] = field(default_factory=list)
    _line_starts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.spans.sort()
        self._starts: list[int] = [start for start, _ in self.spans]
        self._line_starts = [0] + [i + 1 for i, ch in enumerate(self.text) if ch == "\n"]

    def in_code(self, pos: int) -> bool:
        """Whether offset `pos` is real code (not inside a string literal or a comment)."""
        index = bisect.bisect_right(self._starts, pos) - 1
        return index < 0 or pos >= self.spans[index][1]

    def line_of(self, pos: int) -> int:
        return bisect.bisect_right(self._line_starts, pos)


def blank(text: str, start: int, end: int) -> str:
    """`text` with [start, end) replaced by spaces, newlines kept."""
    middle = "".join("\n" if ch == "\n" else " " for ch in text[start:end])
    return text[:start] + middle + text[end:]


def mask(text: str, syntax: Syntax) -> Masked:
    """Scan `text` with `syntax`; return it with comments blanked and non-code spans known."""
    strings, comments = _Scanner(text, syntax).run()
    blanked = text
    for start, end in comments:
        blanked = blank(blanked, start, end)
    return Masked(blanked, strings + comments)


class _Scanner:
    """A single pass over the text; template expressions nest through a stack of brace depths."""

    def __init__(self, text: str, syntax: Syntax) -> None:
        self.text = text
        self.syntax = syntax
        self.strings: list[tuple[int, int]] = []
        self.comments: list[tuple[int, int]] = []
        self.resume: list[tuple[int, str, str]] = []  # (brace depth, delimiter, opener)
        self.depth = 0

    def run(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        pos = 0
        while pos < len(self.text):
            pos = self._step(pos)
        return self.strings, self.comments

    def _step(self, pos: int) -> int:
        text, syntax = self.text, self.syntax
        ch = text[pos]
        if ch == "{":
            self.depth += 1
        elif ch == "}":
            if self.resume and self.resume[-1][0] == self.depth:
                _, delimiter, opener = self.resume.pop()
                self.depth -= 1
                return self._template(pos, delimiter, opener)
            self.depth -= 1
        for marker in syntax.line_comments:
            if text.startswith(marker, pos) and self._comment_allowed(marker, pos):
                end = text.find("\n", pos)
                return self._record(self.comments, pos, len(text) if end < 0 else end)
        for opener, closer in syntax.block_comments:
            if text.startswith(opener, pos) and self._comment_allowed(opener, pos):
                end = text.find(closer, pos + len(opener))
                stop = len(text) if end < 0 else end + len(closer)
                return self._record(self.comments, pos, stop)
        return self._string_or_code(pos)

    def _comment_allowed(self, marker: str, pos: int) -> bool:
        # Ruby's =begin/=end only count at the start of a line.
        return not marker.startswith("=") or pos == 0 or self.text[pos - 1] == "\n"

    def _string_or_code(self, pos: int) -> int:
        text, syntax = self.text, self.syntax
        for delimiter in syntax.triple:
            if text.startswith(delimiter, pos):
                return self._quoted(pos, delimiter, escapes=True)
        for delimiter, opener in syntax.templates:
            if text.startswith(delimiter, pos):
                return self._template(pos, delimiter, opener)
        if text[pos] in syntax.quotes:
            return self._quoted(pos, text[pos], escapes=True)
        if text[pos] in syntax.raw_quotes:
            return self._quoted(pos, text[pos], escapes=False)
        return pos + 1

    def _quoted(self, pos: int, delimiter: str, *, escapes: bool) -> int:
        index = pos + len(delimiter)
        while index < len(self.text):
            if escapes and self.text[index] == "\\":
                index += 2
                continue
            if self.text.startswith(delimiter, index):
                return self._record(self.strings, pos, index + len(delimiter))
            if self.text[index] == "\n" and len(delimiter) == 1 and delimiter in "\"'":
                break  # an unterminated one-line string ends at the line's end
            index += 1
        return self._record(self.strings, pos, min(index, len(self.text)))

    def _template(self, pos: int, delimiter: str, opener: str) -> int:
        """Scan template text from `pos` (its delimiter or the `}` closing an expression)."""
        index = pos + 1
        while index < len(self.text):
            if self.text[index] == "\\":
                index += 2
                continue
            if self.text.startswith(delimiter, index):
                return self._record(self.strings, pos, index + len(delimiter))
            if self.text.startswith(opener, index):
                self._record(self.strings, pos, index + len(opener))
                self.depth += 1
                self.resume.append((self.depth, delimiter, opener))
                return index + len(opener)
            index += 1
        return self._record(self.strings, pos, len(self.text))

    @staticmethod
    def _record(spans: list[tuple[int, int]], start: int, end: int) -> int:
        spans.append((start, end))
        return end


@dataclass(frozen=True)
class Found:
    """A piece of text found in the program (a module name or derived code) and its line."""

    text: str
    line: int


@dataclass
class Analysis:
    masked: Masked
    imports: list[Found] = field(default_factory=list)
    derived: list[Found] = field(default_factory=list)


def scan(code: str, rules: SourceRules) -> Analysis:
    """The analysis of `code` by `rules` alone: masked with its syntax, imports by its forms."""
    masked = mask(code, rules.syntax)
    return Analysis(masked, find_imports(masked, code, rules))


def find_imports(masked: Masked, code: str, rules: SourceRules) -> list[Found]:
    """Module names imported by `code`; only forms that start in real code count.

    Module names are string literals in most languages, so the name is read from the original
    text while the form's position is checked against the masked one.
    """
    found = []
    for form in rules.imports:
        for match in form.pattern.finditer(masked.text):
            if not masked.in_code(match.start()):
                continue
            if form.entries is None:
                names = [(match.start(form.group), match.end(form.group), match.start())]
            else:
                entries = form.entries.finditer(
                    masked.text, match.start(form.group), match.end(form.group)
                )
                group = form.entry_group
                names = [(e.start(group), e.end(group), e.start(group)) for e in entries]
            for start, end, at in names:
                found.append(Found(re.sub(r"\s+", "", code[start:end]), masked.line_of(at)))
    return found
