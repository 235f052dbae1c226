"""Where code runs. A backend is a package registered by name (see `registry.py`).

```
backends/
  registry.py    names, aliases, the automatic choice, options routing, lazy loading
  base.py        the protocol a backend implements: Backend → Sandbox → Process
  agent/         the exec agent and tar-over-exec, shared by container and pod sandboxes
  seccomp/       the one seccomp policy, as a BPF program and as an OCI profile
  local/         the embedded backend (bubblewrap, cgroups); no daemon
  container/     Docker and Podman (runc or gVisor)
  kubernetes/    one pod per session
```
"""

from llm_sandbox.backends.registry import (
    BackendCapabilities,
    BackendDefinition,
    get_backend,
    list_backends,
    register_backend,
)

__all__ = [
    "BackendCapabilities",
    "BackendDefinition",
    "get_backend",
    "list_backends",
    "register_backend",
]
