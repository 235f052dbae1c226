"""Names users pass as options: backends, languages, default images (the previous generation's
module `llm_sandbox.const`, which code written for it imports).

The enums are strings: `SandboxBackend.DOCKER == "docker"`, `str()` gives the value, and lookup by
value ignores case (`SupportedLanguage("Python")`).
"""

from __future__ import annotations

import enum
from typing import Literal

from llm_sandbox.images.naming import image_name


class StrEnum(enum.StrEnum):
    """A string enum whose lookup by value ignores case."""

    @classmethod
    def _missing_(cls, value: object) -> StrEnum | None:
        if isinstance(value, str):
            for member in cls:
                if member.value == value.lower():
                    return member
        return None


class SandboxBackend(StrEnum):
    """Backends by name. `SandboxSession(backend=...)` also accepts any registered name.

    `LOCAL` (alias `BUBBLEWRAP`) is the embedded backend. `MICROMAMBA`, `NSJAIL`,
    `WINDOWS_MXC` and `WSL2_BUBBLEWRAP` are the previous generation's names for backends this
    version does not have: choosing one raises an error that says what to use instead.
    """

    LOCAL = "local"
    DOCKER = "docker"
    PODMAN = "podman"
    KUBERNETES = "kubernetes"
    BUBBLEWRAP = "bubblewrap"
    MICROMAMBA = "micromamba"
    NSJAIL = "nsjail"
    WINDOWS_MXC = "windows-mxc"
    WSL2_BUBBLEWRAP = "wsl2-bubblewrap"


class SupportedLanguage(StrEnum):
    """The built-in languages (any registered language name works too)."""

    PYTHON = "python"
    JAVA = "java"
    JAVASCRIPT = "javascript"
    CPP = "cpp"
    GO = "go"
    RUBY = "ruby"
    R = "r"


class DefaultImage:
    """The default container image of each built-in language (built on first use)."""

    PYTHON = image_name("python")
    JAVA = image_name("java")
    JAVASCRIPT = image_name("javascript")
    CPP = image_name("cpp")
    GO = image_name("go")
    RUBY = image_name("ruby")
    R = image_name("r")


EncodingErrorsType = Literal[
    "strict", "replace", "ignore", "surrogateescape", "backslashreplace", "xmlcharrefreplace"
]
"""How output bytes that are not UTF-8 are decoded (`encoding_errors=`)."""
