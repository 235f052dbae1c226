"""The embedded backend: bubblewrap namespaces, seccomp and cgroups; no daemon needed."""

from __future__ import annotations

from llm_sandbox.backends.base import Backend, RuntimeNeeds, Sandbox
from llm_sandbox.config import SessionConfig


class LocalBackend(Backend):
    name = "local"

    def open(self, config: SessionConfig, runtime: RuntimeNeeds) -> Sandbox:
        from llm_sandbox.backends.local.host import probe
        from llm_sandbox.backends.local.sandbox import LocalSandbox

        host = probe()
        _check_tools(config.lang, runtime)
        return LocalSandbox(host, config, runtime)


def _check_tools(lang: str, runtime: RuntimeNeeds) -> None:
    """The embedded backend runs the host's toolchain: say exactly which one is missing."""
    import shutil

    from llm_sandbox.backends.local.sandbox import BASE_PATH
    from llm_sandbox.exceptions import BackendUnavailableError

    path = ":".join([*runtime.path_dirs, BASE_PATH])
    for tool, hint in runtime.tools:
        if shutil.which(tool, path=path) is None:
            raise BackendUnavailableError(
                f"lang={lang!r} on the local backend needs `{tool}` on this machine, which is "
                f"not installed; {hint} (or use backend='docker' with the default image)"
            )


def create_backend() -> Backend:
    return LocalBackend()
