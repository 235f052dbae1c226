"""How a language's source text reads: the data a handler gives the static security analysis.

Pure data. A handler declares `source_rules = SourceRules(...)`; `llm_sandbox.security` asks the
handler registry for it and runs its one scanner and import finder over any language with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Syntax:
    """Lexical rules of one family of languages.

    `quotes` are string delimiters with backslash escapes; `raw_quotes` have no escapes;
    `triple` are multi-character delimiters tried first (Python's ''' and \"\"\", Java's text
    blocks); `templates` map a delimiter to the opener of an embedded expression (JS `${`,
    Ruby `#{`): the expression inside is code. A comment marker starting with "=" (Ruby's
    `=begin`) counts only at the start of a line.
    """

    line_comments: tuple[str, ...] = ()
    block_comments: tuple[tuple[str, str], ...] = ()
    quotes: str = ""
    raw_quotes: str = ""
    triple: tuple[str, ...] = ()
    templates: tuple[tuple[str, str], ...] = ()


QUOTED_NAME = r"(['\"`])\s*([^'\"`\s]+?)\s*\1"
"""A module name in quotes (any of ' \" `), the name in group 2 of this fragment."""


@dataclass(frozen=True)
class ImportForm:
    """One way the language imports a module.

    `pattern` is searched in the source with comments blanked out, and a match counts only when
    it starts in code (not in a string or a comment). Its group `group` is the module name (read
    from the original text, whitespace dropped: `java . io` is `java.io`). With `entries` that
    group is a list instead (Go's `import ( ... )` block, Python's `import a, b`): each match of
    `entries` inside it names one module, in its group `entry_group`.
    """

    pattern: re.Pattern[str]
    group: int = 1
    entries: re.Pattern[str] | None = None
    entry_group: int = 0


@dataclass(frozen=True)
class SourceRules:
    """What the static security analysis knows about a language's source.

    `syntax` tells code from strings and comments; `imports` are the statements that import a
    module. Module names are compared once `spelling` is removed from them (a part of a name that
    does not change which module it is: JavaScript's `node:` prefix, a C header's `.h`); a name
    covers the names that continue it after one of `separators` (its submodules); an imported
    name ending in `wildcard` (Java's `.*`) imports a whole package.
    """

    syntax: Syntax
    imports: tuple[ImportForm, ...] = ()
    spelling: re.Pattern[str] | None = None
    separators: tuple[str, ...] = (".", "/")
    wildcard: str | None = None
