"""Sessions that borrow a sandbox from a pool: `PooledSandboxSession` and its artifact form.

A pooled session is an ordinary session whose `open()` acquires a clean sandbox from the pool
instead of opening one, and whose `close()` (or expiry) gives it back (the pool wipes it in the
background). Everything else — runs, timeouts, files, policy — is `SandboxSession`'s. The
sandbox-level options (image, limits, network, libraries, ...) are the pool's; a session may
set only what concerns its own runs (`SESSION_LEVEL`).

Another kind of session gets its pooled form by mixing `PooledSessionMixin` in front of it and
naming the result in its `pooled_variant()` (as `ArtifactSandboxSession` does below).
"""

from __future__ import annotations

from typing import Any, ClassVar

from llm_sandbox.artifact_session import ArtifactSandboxSession
from llm_sandbox.backends import registry
from llm_sandbox.backends.base import Sandbox
from llm_sandbox.exceptions import (
    ConfigurationError,
    DuplicateClientError,
    NotOpenSessionError,
    UnsupportedBackendError,
)
from llm_sandbox.interactive import InteractiveSandboxSession, KernelContext
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory
from llm_sandbox.pool.container import PooledContainer
from llm_sandbox.pool.manager import ContainerPoolManager
from llm_sandbox.session import SandboxSession

SESSION_LEVEL = frozenset(
    {
        "verbose",
        "stream",
        "workdir",
        "security_policy",
        "default_timeout",
        "execution_timeout",
        "session_timeout",
        "encoding_errors",
        "logger",
    }
)
"""Options a borrowing session may set itself (they concern its runs, not the sandbox)."""


class PooledSessionMixin(SandboxSession):
    """Borrow the sandbox from `pool_manager` (or `pool=`) instead of opening one."""

    OWN_OPTIONS: ClassVar[frozenset[str]] = frozenset()
    """Options of the session class this is mixed into (e.g. enable_plotting)."""

    def __init__(
        self,
        pool_manager: ContainerPoolManager | str | None = None,
        *args: Any,
        pool: ContainerPoolManager | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(pool_manager, ContainerPoolManager):
            # SandboxSession("python", pool=pool): the first positional is not the pool
            args = (pool_manager, *args) if pool_manager is not None else args
            pool_manager = pool
        elif pool is not None and pool is not pool_manager:
            raise ConfigurationError("pass the pool once: pool_manager or pool=, not both")
        if not isinstance(pool_manager, ContainerPoolManager):
            raise ConfigurationError(
                "a pooled session needs pool_manager= (or pool=): a pool from "
                "llm_sandbox.pool.create_pool_manager"
            )
        self.pool_manager = pool_manager
        self._lease: PooledContainer | None = None
        for value in args:
            self._check_same(pool_manager, "lang or backend", value)
        for name in ("lang", "backend"):
            if name in options:
                self._check_same(pool_manager, name, options.pop(name))
        if options.get("client") is not None:
            raise DuplicateClientError()
        options.pop("client", None)
        base = pool_manager._provisioner.session_options()
        for name, value in list(options.items()):
            if name in SESSION_LEVEL or name in self.OWN_OPTIONS:
                continue
            if value is None or base.get(name) == value:
                del options[name]  # what the previous generation ignored, when it agrees
                continue
            raise ConfigurationError(
                f"option {name!r} belongs to the pool's sandboxes; pass it to "
                "create_pool_manager (a pooled session may set only "
                f"{', '.join(sorted(SESSION_LEVEL | self.OWN_OPTIONS))})"
            )
        pool_workdir = pool_manager._provisioner.config.workdir
        if options.get("workdir") is None:
            options.pop("workdir", None)
        elif options["workdir"] != pool_workdir:
            raise ConfigurationError(
                f"workdir={options['workdir']!r} differs from the pool's ({pool_workdir!r}); "
                "pass workdir= to create_pool_manager"
            )
        super().__init__(pool_manager.lang, backend=pool_manager.backend, **{**base, **options})

    @staticmethod
    def _check_same(pool: ContainerPoolManager, name: str, value: object) -> None:
        if value is None:
            return
        text = getattr(value, "value", value)
        if isinstance(text, str) and text.lower() == pool.lang.lower():
            return
        if isinstance(text, str) and LanguageHandlerFactory.lookup(text) is None:
            try:
                if registry.get_backend(text).name == pool.backend:
                    return
            except UnsupportedBackendError:
                pass
        raise ConfigurationError(
            f"{name} {value!r} differs from the pool's ({pool.lang} on {pool.backend}); make a "
            "pool for it with create_pool_manager"
        )

    # --- borrowing and giving back -------------------------------------------------------
    def _open_sandbox(self) -> Sandbox:
        lease = self.pool_manager.acquire()
        assert lease.prepared is not None
        self._lease = lease
        self._log("borrowed pooled sandbox %s", lease.container_id)
        return lease.prepared.sandbox

    def _close_sandbox(self, sandbox: Sandbox) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            self.pool_manager.release(lease)
            self._log("gave pooled sandbox %s back", lease.container_id)

    # --- the previous generation's attributes --------------------------------------------
    @property
    def pooled_container(self) -> PooledContainer | None:
        """The pool's record of the borrowed sandbox (None when not open)."""
        return self._lease

    @property
    def backend_session(self) -> SandboxSession:
        """0.3.x kept a second session object here; ours is the session itself."""
        if not self.is_open:
            raise NotOpenSessionError()
        return self

    @property
    def backend(self) -> str:
        return self.pool_manager.backend


class PooledSandboxSession(PooledSessionMixin):
    """A `SandboxSession` on a sandbox borrowed from a pool (`SandboxSession(pool=pool)`)."""


class ArtifactPooledSandboxSession(PooledSessionMixin, ArtifactSandboxSession):
    """An `ArtifactSandboxSession` on a sandbox borrowed from a pool."""

    OWN_OPTIONS = frozenset({"enable_plotting", "max_artifact_bytes"})


class PooledInteractiveSandboxSession(PooledSessionMixin, InteractiveSandboxSession):
    """An `InteractiveSandboxSession` on a sandbox borrowed from a pool
    (`InteractiveSandboxSession(pool=pool)`). A pool made with `kernels=True` lends sandboxes
    whose kernel is already started; the session adopts it. Between users the pool kills
    the kernel with everything else and starts a fresh one, so no state passes on."""

    OWN_OPTIONS = frozenset(
        {"kernel_type", "max_memory", "history_size", "timeout", "interactive_settings"}
    )

    def _start_main(self, context: KernelContext) -> None:
        lease = self._lease
        kernel = lease.prepared.take_kernel() if lease and lease.prepared else None
        if kernel is None:
            context.start()  # a pool without kernels=True: started now, for this user
        else:
            context.adopt(kernel)
