"""Every public name of the previous generation (0.3.x) imports from the same module path.

Written from that generation's documented API (module by module). Names it had that we do
not provide are listed in `ABSENT` with the reason the README's migration section gives.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

NAMES: dict[str, tuple[str, ...]] = {
    "llm_sandbox": (
        "ArtifactSandboxSession",
        "BackendCapabilities",
        "BackendDefinition",
        "ConsoleOutput",
        "ContainerError",
        "DefaultImage",
        "ExecutionResult",
        "FileType",
        "LocalSandboxConfig",
        "PlotOutput",
        "ResourceError",
        "SandboxBackend",
        "SandboxError",
        "SandboxSession",
        "SeccompPolicy",
        "SecurityError",
        "SecurityIssueSeverity",
        "SecurityPattern",
        "SecurityPolicy",
        "SessionConfig",
        "StreamCallback",
        "SupportedLanguage",
        "ValidationError",
        "create_session",
        "get_backend",
        "list_backends",
        "register_backend",
    ),
    "llm_sandbox.const": (
        "StrEnum",
        "SandboxBackend",
        "SupportedLanguage",
        "DefaultImage",
        "EncodingErrorsType",
    ),
    "llm_sandbox.data": (
        "FileType",
        "PlotOutput",
        "ConsoleOutput",
        "ExecutionResult",
        "StreamCallback",
    ),
    "llm_sandbox.exceptions": (
        "SandboxError",
        "ContainerError",
        "SecurityError",
        "ResourceError",
        "ValidationError",
        "ExtraArgumentsError",
        "LanguageNotSupportedError",
        "NotOpenSessionError",
        "LibraryInstallationNotSupportedError",
        "CommandEmptyError",
        "CommandFailedError",
        "PackageManagerError",
        "UnsupportedBackendError",
        "MissingDependencyError",
        "LanguageNotSupportPlotError",
        "InvalidRegexPatternError",
        "LanguageHandlerNotInitializedError",
        "SecurityViolationError",
        "SandboxTimeoutError",
    ),
    "llm_sandbox.session": ("ArtifactSandboxSession", "SandboxSession", "create_session"),
    "llm_sandbox.backends": (
        "BackendCapabilities",
        "BackendDefinition",
        "register_backend",
        "get_backend",
        "list_backends",
    ),
    "llm_sandbox.core.config": ("SessionConfig",),
    "llm_sandbox.core.session_base": ("BaseSession",),
    "llm_sandbox.docker": ("SandboxDockerSession",),
    "llm_sandbox.podman": ("SandboxPodmanSession",),
    "llm_sandbox.kubernetes": ("SandboxKubernetesSession",),
    "llm_sandbox.micromamba": ("MicromambaSession",),
    "llm_sandbox.bubblewrap": ("BubblewrapSession",),
    "llm_sandbox.nsjail": ("NsjailSession",),
    "llm_sandbox.local.config": ("LocalSandboxConfig",),
    "llm_sandbox.security": (
        "RestrictedModule",
        "SecurityIssueSeverity",
        "SecurityPattern",
        "SecurityPolicy",
    ),
    "llm_sandbox.language_handlers.factory": ("LanguageHandlerFactory",),
    "llm_sandbox.language_handlers.base": ("AbstractLanguageHandler", "LanguageConfig"),
}

ABSENT: dict[str, str] = {
    "llm_sandbox.WindowsMxcConfig": "Windows",
    "llm_sandbox.windows_mxc": "Windows",
    "llm_sandbox.wsl2_bubblewrap": "Windows",
    "llm_sandbox.core.mixins": "internal",
    "llm_sandbox.k8s_utils": "internal",
}
"""Names of 0.3.x left out, each with the keyword of its reason in the README."""


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, ns in NAMES.items() for n in ns])
def test_name_imports_from_the_same_path(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name), f"{module}.{name}"


def test_top_level_all_lists_the_previous_generations_names() -> None:
    import llm_sandbox

    assert set(NAMES["llm_sandbox"]) <= set(llm_sandbox.__all__)


@pytest.mark.parametrize("name", sorted(ABSENT))
def test_absent_names_are_explained_in_the_migration_section(name: str) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("## Migrating from llm-sandbox 0.3") :]
    assert name.rsplit(".", 1)[-1] in section
