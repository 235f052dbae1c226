"""LLM Sandbox: run untrusted, model-written code safely.

```python
from llm_sandbox import SandboxSession

with SandboxSession(lang="python") as session:
    print(session.run("print('hello')").stdout)
```
"""

from llm_sandbox.artifact_session import ArtifactSandboxSession
from llm_sandbox.backends.registry import (
    BackendCapabilities,
    BackendDefinition,
    get_backend,
    list_backends,
    register_backend,
)
from llm_sandbox.config import ResourceLimits
from llm_sandbox.const import SandboxBackend
from llm_sandbox.exceptions import SandboxError, SandboxTimeoutError
from llm_sandbox.results import ArtifactFile, ConsoleOutput, ExecutionResult, PlotOutput, Verdict
from llm_sandbox.session import SandboxSession

__all__ = [
    "ArtifactFile",
    "ArtifactSandboxSession",
    "BackendCapabilities",
    "BackendDefinition",
    "ConsoleOutput",
    "ExecutionResult",
    "PlotOutput",
    "ResourceLimits",
    "SandboxBackend",
    "SandboxError",
    "SandboxSession",
    "SandboxTimeoutError",
    "Verdict",
    "get_backend",
    "list_backends",
    "register_backend",
]
__version__ = "0.1.0"
