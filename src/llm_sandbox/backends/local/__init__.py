"""The embedded backend: bubblewrap namespaces, seccomp and cgroups; no daemon needed."""

from __future__ import annotations

from llm_sandbox.backends.base import Backend, RuntimeNeeds, Sandbox
from llm_sandbox.config import SessionConfig


class LocalBackend(Backend):
    name = "local"

    def open(self, config: SessionConfig, runtime: RuntimeNeeds) -> Sandbox:
        from llm_sandbox.backends.local.host import probe
        from llm_sandbox.backends.local.sandbox import LocalSandbox

        return LocalSandbox(probe(), config, runtime)


def create_backend() -> Backend:
    return LocalBackend()
