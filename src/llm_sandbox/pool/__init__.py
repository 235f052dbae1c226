"""Sandbox pools: warm sandboxes handed out in microseconds and wiped between users.

```python
from llm_sandbox import SandboxSession
from llm_sandbox.pool import PoolConfig, create_pool_manager

config = PoolConfig(max_pool_size=4, min_pool_size=2)
with create_pool_manager(backend="docker", config=config) as pool:
    with SandboxSession(pool=pool) as session:
        print(session.run("print(1)").stdout)
```

`manager` hands sandboxes out and takes them back; `provision` makes, wipes, verifies and
destroys them (through the one backend capability pools need, `Sandbox.wipe`); `session`
holds the sessions that borrow them; `config` and `container` are the previous generation's
data types.
"""

from llm_sandbox.exceptions import PoolClosedError, PoolExhaustedError, PoolHealthCheckError
from llm_sandbox.pool.config import ExhaustionStrategy, PoolConfig
from llm_sandbox.pool.container import ContainerState, PooledContainer
from llm_sandbox.pool.factory import (
    DockerPoolManager,
    KubernetesPoolManager,
    PodmanPoolManager,
    create_pool_manager,
)
from llm_sandbox.pool.manager import ContainerPoolManager
from llm_sandbox.pool.session import ArtifactPooledSandboxSession, PooledSandboxSession

__all__ = [
    "ArtifactPooledSandboxSession",
    "ContainerPoolManager",
    "ContainerState",
    "DockerPoolManager",
    "ExhaustionStrategy",
    "KubernetesPoolManager",
    "PodmanPoolManager",
    "PoolClosedError",
    "PoolConfig",
    "PoolExhaustedError",
    "PoolHealthCheckError",
    "PooledContainer",
    "PooledSandboxSession",
    "create_pool_manager",
]
