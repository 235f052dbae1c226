"""LLM Sandbox: run untrusted, model-written code safely.

```python
from llm_sandbox import SandboxSession

with SandboxSession(lang="python") as session:
    print(session.run("print('hello')").stdout)
```
"""

from typing import TYPE_CHECKING

from llm_sandbox.artifact_session import ArtifactSandboxSession
from llm_sandbox.backend_sessions import create_session
from llm_sandbox.backends.registry import (
    BackendCapabilities,
    BackendDefinition,
    get_backend,
    list_backends,
    register_backend,
)
from llm_sandbox.config import ResourceLimits, SessionConfig
from llm_sandbox.const import DefaultImage, SandboxBackend, SupportedLanguage
from llm_sandbox.egress import EgressPolicy, NetworkEvent
from llm_sandbox.exceptions import (
    ContainerError,
    ResourceError,
    SandboxError,
    SandboxTimeoutError,
    SecurityError,
    ValidationError,
)
from llm_sandbox.interactive import InteractiveSandboxSession, InteractiveSettings, KernelType
from llm_sandbox.local.config import LocalSandboxConfig, SeccompPolicy
from llm_sandbox.results import (
    ArtifactFile,
    ConsoleOutput,
    ExecutionResult,
    FileType,
    PlotOutput,
    StreamCallback,
    Verdict,
)
from llm_sandbox.security import (
    RestrictedModule,
    SecurityIssueSeverity,
    SecurityPattern,
    SecurityPolicy,
    get_security_policy,
)
from llm_sandbox.session import SandboxSession

if TYPE_CHECKING:
    from llm_sandbox.aio import (
        AsyncArtifactSandboxSession,
        AsyncInteractiveSandboxSession,
        AsyncSandboxSession,
    )

__all__ = [
    "ArtifactFile",
    "ArtifactSandboxSession",
    "AsyncArtifactSandboxSession",
    "AsyncInteractiveSandboxSession",
    "AsyncSandboxSession",
    "BackendCapabilities",
    "BackendDefinition",
    "ConsoleOutput",
    "ContainerError",
    "DefaultImage",
    "EgressPolicy",
    "ExecutionResult",
    "FileType",
    "InteractiveSandboxSession",
    "InteractiveSettings",
    "KernelType",
    "LocalSandboxConfig",
    "NetworkEvent",
    "PlotOutput",
    "ResourceError",
    "ResourceLimits",
    "RestrictedModule",
    "SandboxBackend",
    "SandboxError",
    "SandboxSession",
    "SandboxTimeoutError",
    "SeccompPolicy",
    "SecurityError",
    "SecurityIssueSeverity",
    "SecurityPattern",
    "SecurityPolicy",
    "SessionConfig",
    "StreamCallback",
    "SupportedLanguage",
    "ValidationError",
    "Verdict",
    "create_session",
    "get_backend",
    "get_security_policy",
    "list_backends",
    "register_backend",
]
__version__ = "0.1.0"

_ASYNC = ("AsyncArtifactSandboxSession", "AsyncInteractiveSandboxSession", "AsyncSandboxSession")


def __getattr__(name: str) -> object:
    """The async sessions, imported on first use (they need the `async` extra: anyio)."""
    if name in _ASYNC:
        from llm_sandbox import aio

        return getattr(aio, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
