"""How a pool makes, wipes, verifies and destroys its sandboxes, whatever the backend.

A pooled sandbox is opened by an ordinary `SandboxSession` (the *opener*, which installs the
pool's `libraries` once), then wiped at once: that first report is the sandbox's *baseline*,
what it looks like clean. Between users the pool wipes it again (`Sandbox.wipe`, the one
backend capability pools need) and hands it out only if the new report has no problem and the
same facts as the baseline (see `llm_sandbox.backends.wipe`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm_sandbox.backends import registry
from llm_sandbox.backends.base import Sandbox
from llm_sandbox.backends.wipe import WipeReport
from llm_sandbox.exceptions import ConfigurationError, PoolHealthCheckError, SandboxError
from llm_sandbox.interactive import RUNTIME_START_TIMEOUT, kernel_env, launch_kernel
from llm_sandbox.kernels import Kernel, kernel_argv, runner_spec
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory
from llm_sandbox.session import SandboxSession

logger = logging.getLogger("llm_sandbox")

POOL_LEVEL = frozenset({"libraries"})
"""Options that belong to the pool's sandboxes, not to the sessions that borrow them."""
OPENER_ONLY_DROPPED = frozenset({"session_timeout"})
"""Options of a borrowing session that the opener (which lives as long as the pool wants)
must not get."""


@dataclass(eq=False)
class PreparedSandbox:
    """An open pooled sandbox, the session that owns it, and its clean baseline."""

    opener: SandboxSession
    baseline: WipeReport
    container_id: str
    handle: Any
    kernel: Kernel | None = None
    """The warm kernel of a pool of interactive sandboxes, until a session adopts it."""

    def take_kernel(self) -> Kernel | None:
        kernel, self.kernel = self.kernel, None
        return kernel

    @property
    def sandbox(self) -> Sandbox:
        sandbox = self.opener._sandbox
        if sandbox is None:
            raise PoolHealthCheckError(self.container_id, "the sandbox has been closed")
        return sandbox


class Provisioner:
    """Makes the sandboxes of one pool: `lang`, the backend and the session options.

    The options are validated here, once (a bad option fails `create_pool_manager`, not a
    background thread), and the backend is chosen once, so every sandbox of a pool is alike.
    """

    def __init__(self, lang: str, backend: object, options: Mapping[str, Any]) -> None:
        options = dict(options)
        self.kernels = bool(options.pop("kernels", False))
        """Each sandbox has a kernel started (`InteractiveSandboxSession(pool=...)`)."""
        if self.kernels:
            try:
                runner_spec(lang)
            except SandboxError as exc:
                raise ConfigurationError(f"kernels=True: {exc}") from exc
        config = registry.configure({"lang": lang, "backend": backend, **options})
        definition, config = registry.resolve(config)
        if not definition.capabilities.pooling:
            raise ConfigurationError(
                f"Backend '{definition.name}' does not support container pooling"
            )
        if getattr(config.backend_options, "commit_container", False):
            raise ConfigurationError(
                "commit_container=True cannot be pooled: it saves each sandbox as an image "
                "when it closes, and needs a writable root file system that no wipe can clean"
            )
        _refuse_shared_writable_mounts(getattr(config.backend_options, "runtime_config", None))
        self.lang = lang
        self.backend = definition.name
        self.options = {k: v for k, v in options.items() if k not in OPENER_ONLY_DROPPED}
        self.config = config

    def session_options(self) -> dict[str, Any]:
        """The options a borrowing session starts from (the pool's, but its libraries)."""
        return {k: v for k, v in self.options.items() if k not in POOL_LEVEL}

    def create(self) -> PreparedSandbox:
        opener = SandboxSession(lang=self.lang, backend=self.backend, **self.options)
        opener.open()
        try:
            sandbox = opener._sandbox
            assert sandbox is not None
            handle = sandbox.handle()
            container_id = _identify(handle, self.backend)
            baseline = sandbox.wipe()
            if not baseline.clean:
                raise PoolHealthCheckError(
                    container_id,
                    "a new sandbox cannot be wiped clean ("
                    + "; ".join(baseline.problems)
                    + "); a sandbox that cannot be wiped cannot be pooled",
                )
            prepared = PreparedSandbox(opener, baseline, container_id, handle)
            # Where the backend can, Python runs fork from a warm interpreter (kept across
            # wipes: each wipe starts a fresh one).
            sandbox.warm_runs(opener._run_env())
            if self.kernels:
                prepared.kernel = self._start_kernel(prepared)
        except BaseException:
            opener.close()
            raise
        return prepared

    def _start_kernel(self, prepared: PreparedSandbox) -> Kernel:
        """A warm kernel for the next user: started now, adopted by the session."""
        config = prepared.opener.config
        handler = LanguageHandlerFactory.create_handler(config.lang, logger)
        env = kernel_env(config, handler)
        sandbox = prepared.sandbox
        language = runner_spec(config.lang).language
        kernel = Kernel(
            lambda argv: launch_kernel(sandbox, env, language, argv),
            kernel_argv(language),
            language=language,
            start_timeout=RUNTIME_START_TIMEOUT,
            max_output=config.limits.output,
        )
        try:
            kernel.start()
        except BaseException:
            kernel.close()
            raise
        return kernel

    def _close_kernel(self, prepared: PreparedSandbox) -> None:
        kernel = prepared.take_kernel()
        if kernel is not None:
            try:
                kernel.close()
            except SandboxError as exc:
                logger.warning("closing the warm kernel of %s: %s", prepared.container_id, exc)

    def reset(self, prepared: PreparedSandbox) -> str | None:
        """Wipe and verify; None when the sandbox is as clean as when new, else why not.
        A pool of kernels gets a fresh kernel after the wipe (the last user's is gone)."""
        self._close_kernel(prepared)
        try:
            report = prepared.sandbox.wipe()
        except SandboxError as exc:
            return f"the wipe failed: {exc}"
        if not report.clean:
            return "; ".join(report.problems)
        if report.fingerprint != prepared.baseline.fingerprint:
            new = set(report.facts) - set(prepared.baseline.facts)
            gone = set(prepared.baseline.facts) - set(report.facts)
            return (
                "the sandbox differs from when it was new (e.g. libraries were installed): "
                f"now {sorted(new)}, was {sorted(gone)}"
            )
        if self.kernels:
            try:
                prepared.kernel = self._start_kernel(prepared)
            except SandboxError as exc:
                return f"its kernel did not start: {exc}"
        return None

    def confirm_alive(self, prepared: PreparedSandbox) -> str | None:
        """None when an idle sandbox still runs, else why not: the sandbox's cheap look
        (`Sandbox.alive`, microseconds), and a full check only when that cannot tell."""
        try:
            sandbox = prepared.sandbox
            alive = sandbox.alive()
            if alive is None:
                sandbox.check_alive()
            elif not alive:
                return "it ended while idle"
        except SandboxError as exc:
            return f"it ended while idle: {exc}"
        return None

    def destroy(self, prepared: PreparedSandbox) -> None:
        self._close_kernel(prepared)
        try:
            prepared.opener.close()
        except SandboxError as exc:
            logger.warning("closing pooled sandbox %s failed: %s", prepared.container_id, exc)


def _refuse_shared_writable_mounts(runtime_config: object) -> None:
    """A writable volume or mount is shared with the host (or other containers): the wipe
    between users would delete its contents, and not wiping it would let users see each
    other's files. Pools accept them read-only only."""
    if not isinstance(runtime_config, Mapping):
        return
    volumes = runtime_config.get("volumes") or {}
    writable = [
        str(source)
        for source, spec in (volumes.items() if isinstance(volumes, Mapping) else [])
        if not (isinstance(spec, Mapping) and str(spec.get("mode", "rw")).startswith("ro"))
    ]
    for mount in runtime_config.get("mounts") or []:
        read_only = mount.get("ReadOnly") if isinstance(mount, Mapping) else None
        if read_only is None:
            read_only = getattr(mount, "read_only", None)
        if not read_only:
            writable.append(str(mount.get("Target") if isinstance(mount, Mapping) else mount))
    if writable:
        raise ConfigurationError(
            f"a pool cannot lend sandboxes with writable volumes or mounts ({', '.join(writable)}):"
            " the wipe between users would delete their contents; mount them read-only "
            "(mode 'ro', read_only=True)"
        )


def _identify(handle: object, backend: str) -> str:
    """The sandbox's id: the container's, the pod's name, or a fresh one."""
    found = getattr(handle, "id", None)
    if isinstance(found, str) and found:
        return found
    if isinstance(handle, str) and handle:
        return handle
    return f"{backend}-{uuid.uuid4().hex[:12]}"
