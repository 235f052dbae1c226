"""A poolable test double: the fake backend plus a wipe whose delay and outcome tests set.

Registered as backend "fakepool" (with `pooling=True`) by the `fake_pool` fixture. It isolates
nothing; it proves the pool's own logic (queues, timeouts, recycling) in milliseconds.
Whether a wipe really removes a user's traces is proven on the real backends
(`tests/backends/test_pool_reset.py`).
"""

from __future__ import annotations

import threading
import time

from fake_backend import FakeBackend, FakeSandbox
from llm_sandbox.backends.base import Sandbox
from llm_sandbox.backends.wipe import WipeReport
from llm_sandbox.config import SessionConfig
from llm_sandbox.exceptions import SandboxRuntimeError
from llm_sandbox.language_handlers.base import RuntimeNeeds


class Behaviour:
    """What the double's sandboxes do; tests change it between steps."""

    def __init__(self) -> None:
        self.open_delay = 0.0
        self.open_error: Exception | None = None
        self.wipe_delay = 0.0
        self.wipe_fails = False
        self.fingerprint = "clean"
        self.lock = threading.Lock()
        self.opened: list[PoolSandbox] = []


BEHAVIOUR = Behaviour()


class PoolSandbox(FakeSandbox):
    def __init__(self, config: SessionConfig) -> None:
        super().__init__(config)
        self.wipes = 0
        self.wiping = False
        self.handed_out = False
        self.dead = False
        self.liveness_checks = 0

    def alive(self) -> bool:
        self.liveness_checks += 1
        return not self.dead

    def wipe(self) -> WipeReport:
        self.wiping = True
        try:
            time.sleep(BEHAVIOUR.wipe_delay)
            self.wipes += 1
            if BEHAVIOUR.wipe_fails:
                raise SandboxRuntimeError("the wipe failed (test)")
            return WipeReport(BEHAVIOUR.fingerprint, (), (BEHAVIOUR.fingerprint,))
        finally:
            self.wiping = False


class PoolBackend(FakeBackend):
    name = "fakepool"

    def open(self, config: SessionConfig, runtime: RuntimeNeeds) -> Sandbox:
        time.sleep(BEHAVIOUR.open_delay)
        if BEHAVIOUR.open_error is not None:
            raise BEHAVIOUR.open_error
        sandbox = PoolSandbox(config)
        with BEHAVIOUR.lock:
            BEHAVIOUR.opened.append(sandbox)
        return sandbox
