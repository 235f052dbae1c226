"""Kernels on agent sandboxes (container, pod): a long-lived process on an agent of its own.

A kernel is started like a run (`protocol.kernel_launch`), on a second agent connection
whose stdin then stays the kernel's. Its script reports what must outlive other commands'
clean-up (the kernel's session, its agent); the host keeps that in `AgentHost` so that every
run's reap and every kill of the killer spares it. Killing the kernel is a kill of the killer
that spares everything else the host knows to spare (other kernels): the kernel's session,
its agent and everything they started are gone when it returns.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from llm_sandbox.backends.agent.channel import ChannelStream
from llm_sandbox.backends.agent.host import AgentRun
from llm_sandbox.backends.agent.protocol import KERNEL_START
from llm_sandbox.backends.base import STDOUT, ExitStatus, InteractiveProcess
from llm_sandbox.exceptions import SandboxError, SandboxRuntimeError

if TYPE_CHECKING:
    from llm_sandbox.backends.agent.host import AgentHost

logger = logging.getLogger("llm_sandbox")

START_TIMEOUT = 30.0
"""Seconds a kernel's script has to report itself."""


class AgentKernel(InteractiveProcess):
    """A kernel started by `AgentHost.start_kernel`; see the module docstring."""

    def __init__(self, host: AgentHost, key: int, stream: ChannelStream, nonce: str) -> None:
        self._host = host
        self._key = key
        self._stream = stream
        self._nonce = nonce
        self._send_lock = threading.Lock()
        self._kill_lock = threading.Lock()
        self._killed = False
        self._lost = False
        self._held: list[tuple[int, bytes]] = []
        self._run = AgentRun(
            stream,
            nonce,
            on_kill=self.kill,
            on_lost=lambda: SandboxRuntimeError("the kernel's connection ended"),
            on_silence=host._check_running,
            check_oom=host.oom_kills_increased,
        )

    def await_start(self) -> None:
        """Read until the script reported what to spare; hold the output before it."""
        marker = KERNEL_START + self._nonce.encode() + b":"
        seen = b""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxRuntimeError("the kernel's launcher did not start in time")
            got = self._run.read(remaining)
            if got is None:
                continue
            stream, data = got
            if stream == 0:
                raise SandboxRuntimeError("the kernel's launcher ended before the kernel started")
            if stream != STDOUT:
                self._held.append(got)
                continue
            seen += data
            at = seen.find(marker)
            end = seen.find(b"\n", at + len(marker)) if at >= 0 else -1
            if end < 0:
                continue
            words = seen[at + len(marker) : end].decode().split()
            self._host._spared[self._key] = tuple(words)
            rest = seen[:at] + seen[end + 1 :]
            if rest:
                self._held.append((STDOUT, rest))
            return

    def send(self, data: bytes) -> None:
        with self._send_lock:
            self._stream.send(data)

    def read(self, timeout: float) -> tuple[int, bytes] | None:
        if self._held:
            return self._held.pop(0)
        if self._lost:
            return 0, b""
        try:
            return self._run.read(timeout)
        except SandboxError:
            self._lost = True
            return 0, b""

    def wait(self) -> ExitStatus:
        if self._lost:
            return ExitStatus(exit_code=-1)
        return self._run.wait()

    def kill(self) -> None:
        with self._kill_lock:
            if self._killed:
                return
            self._killed = True
            try:
                self._host.kill_kernel(self._key)
            finally:
                self._stream.close()
