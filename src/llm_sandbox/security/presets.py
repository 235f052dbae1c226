"""Named starting points: `get_security_policy("production")` returns a fresh, editable copy."""

from __future__ import annotations

from collections.abc import Callable

from llm_sandbox.exceptions import ConfigurationError
from llm_sandbox.security.model import (
    RestrictedModule,
    SecurityIssueSeverity,
    SecurityPattern,
    SecurityPolicy,
)

HIGH, MEDIUM, LOW = (
    SecurityIssueSeverity.HIGH,
    SecurityIssueSeverity.MEDIUM,
    SecurityIssueSeverity.LOW,
)

_PROCESS = "process execution"
_NETWORK = "network access"
_NATIVE = "native code / memory access"

# (language, module, description, severity) for production; strict adds _STRICT_MODULES.
_MODULES: list[tuple[str, str, str, SecurityIssueSeverity]] = [
    ("python", "os", "operating system access", HIGH),
    ("python", "subprocess", _PROCESS, HIGH),
    ("python", "pty", _PROCESS, HIGH),
    ("python", "multiprocessing", _PROCESS, MEDIUM),
    ("python", "socket", _NETWORK, HIGH),
    ("python", "ctypes", _NATIVE, HIGH),
    ("python", "cffi", _NATIVE, HIGH),
    ("python", "shutil", "file tree operations", MEDIUM),
    ("python", "importlib", "dynamic imports", HIGH),
    ("python", "builtins", "access to the builtins namespace", HIGH),
    ("python", "signal", "signal handling", MEDIUM),
    ("python", "resource", "resource limits", MEDIUM),
    ("python", "marshal", "code object loading", MEDIUM),
    ("python", "pickle", "arbitrary code on load", MEDIUM),
    ("python", "<dynamic import>", "import of a computed module name", HIGH),
    ("javascript", "child_process", _PROCESS, HIGH),
    ("javascript", "cluster", _PROCESS, HIGH),
    ("javascript", "worker_threads", _PROCESS, MEDIUM),
    ("javascript", "vm", "dynamic code execution", HIGH),
    ("javascript", "net", _NETWORK, HIGH),
    ("javascript", "dgram", _NETWORK, HIGH),
    ("javascript", "dns", _NETWORK, MEDIUM),
    ("javascript", "http", _NETWORK, MEDIUM),
    ("javascript", "https", _NETWORK, MEDIUM),
    ("javascript", "tls", _NETWORK, MEDIUM),
    ("java", "java.net", _NETWORK, HIGH),
    ("java", "java.lang.reflect", "reflection", MEDIUM),
    ("java", "sun.misc", _NATIVE, HIGH),
    ("cpp", "sys/socket", _NETWORK, HIGH),
    ("cpp", "sys/ptrace", "process tracing", HIGH),
    ("cpp", "dlfcn", "dynamic loading", HIGH),
    ("go", "os/exec", _PROCESS, HIGH),
    ("go", "syscall", "raw system calls", HIGH),
    ("go", "unsafe", _NATIVE, HIGH),
    ("go", "net", _NETWORK, HIGH),
    ("ruby", "open3", _PROCESS, HIGH),
    ("ruby", "pty", _PROCESS, HIGH),
    ("ruby", "socket", _NETWORK, HIGH),
    ("ruby", "fiddle", _NATIVE, HIGH),
    ("r", "processx", _PROCESS, HIGH),
    ("r", "sys", _PROCESS, HIGH),
    ("r", "callr", _PROCESS, HIGH),
]
_STRICT_MODULES: list[tuple[str, str, str, SecurityIssueSeverity]] = [
    ("python", "sys", "interpreter internals", MEDIUM),
    ("python", "urllib", _NETWORK, MEDIUM),
    ("python", "http", _NETWORK, MEDIUM),
    ("python", "requests", _NETWORK, MEDIUM),
    ("python", "threading", "threads", LOW),
    ("python", "tempfile", "file system access", LOW),
    ("javascript", "fs", "file system access", MEDIUM),
    ("javascript", "os", "operating system access", MEDIUM),
    ("go", "os", "operating system access", MEDIUM),
    ("cpp", "unistd", "POSIX system calls", MEDIUM),
    ("r", "httr", _NETWORK, MEDIUM),
]
# (languages, regex, description, severity)
_PATTERNS: list[tuple[tuple[str, ...], str, str, SecurityIssueSeverity]] = [
    (("python",), r"\bos\.(?:system|popen|exec\w*|spawn\w*|fork\w*|kill\w*)\s*\(", _PROCESS, HIGH),
    (("python",), r"\b(?:eval|exec|compile)\s*\(", "dynamic code execution", HIGH),
    (("python",), r"\b__import__\s*\(", "dynamic import", HIGH),
    (("python",), r"<dynamic code>", "execution of a computed string", HIGH),
    (("python",), r"<dynamic builtins access>", "a computed name looked up in builtins", HIGH),
    (("python",), r"<interpreter internals>", "reach into interpreter internals", HIGH),
    (("python",), r"<unanalysable code>", "code too deeply nested to analyse", HIGH),
    (("javascript",), r"\beval\s*\(|\bnew\s+Function\s*\(", "dynamic code execution", HIGH),
    (("javascript",), r"\bprocess\s*\.\s*(?:binding|dlopen)\s*\(", _NATIVE, HIGH),
    (("java",), r"\bRuntime\s*\.\s*getRuntime\s*\(\s*\)\s*\.\s*exec\b", _PROCESS, HIGH),
    (("java",), r"\bProcessBuilder\b", _PROCESS, HIGH),
    (("cpp",), r"\b(?:system|popen|fork|vfork|exec[lv]p?e?)\s*\(", _PROCESS, HIGH),
    (("go",), r"\bsyscall\s*\.\s*(?:Exec|ForkExec|RawSyscall)\b", _PROCESS, HIGH),
    (("ruby",), r"\b(?:system|exec|spawn|fork)\b|`|%x", _PROCESS, HIGH),
    (("r",), r"\b(?:system2?|shell)\s*\(", _PROCESS, HIGH),
]
_STRICT_PATTERNS: list[tuple[tuple[str, ...], str, str, SecurityIssueSeverity]] = [
    (("python",), r"\bopen\s*\(", "file access", MEDIUM),
    (
        ("python", "javascript", "ruby"),
        r"\b(?:getattr|setattr|globals|locals)\s*\(",
        "reflection",
        MEDIUM,
    ),
]


def _modules(rows: list[tuple[str, str, str, SecurityIssueSeverity]]) -> list[RestrictedModule]:
    return [RestrictedModule(name, why, sev, (lang,)) for lang, name, why, sev in rows]


def _patterns(
    rows: list[tuple[tuple[str, ...], str, str, SecurityIssueSeverity]],
) -> list[SecurityPattern]:
    return [SecurityPattern(rx, why, sev, langs) for langs, rx, why, sev in rows]


def _minimal() -> SecurityPolicy:
    return SecurityPolicy(severity_threshold=HIGH)


def _development() -> SecurityPolicy:
    """Everything is reported; only native-code access and process spawning block."""
    return SecurityPolicy(HIGH, _patterns(_PATTERNS), _demote(_modules(_MODULES)))


def _demote(modules: list[RestrictedModule]) -> list[RestrictedModule]:
    keep = {_NATIVE, _PROCESS}
    return [
        m if m.description in keep else RestrictedModule(m.name, m.description, LOW, m.languages)
        for m in modules
    ]


def _production() -> SecurityPolicy:
    return SecurityPolicy(MEDIUM, _patterns(_PATTERNS), _modules(_MODULES))


def _strict() -> SecurityPolicy:
    return SecurityPolicy(
        LOW,
        _patterns(_PATTERNS + _STRICT_PATTERNS),
        _modules(_MODULES + _STRICT_MODULES),
    )


_PRESETS: dict[str, Callable[[], SecurityPolicy]] = {
    "minimal": _minimal,
    "development": _development,
    "production": _production,
    "strict": _strict,
}


def get_security_policy(name: str) -> SecurityPolicy:
    """A fresh copy of preset `name` (minimal, development, production, strict)."""
    factory = _PRESETS.get(name.strip().lower()) if isinstance(name, str) else None
    if factory is None:
        raise ConfigurationError(
            f"unknown security policy preset {name!r}; presets: {', '.join(_PRESETS)}"
        )
    return factory()


def preset_names() -> list[str]:
    return list(_PRESETS)
