"""A kernel channel over a sandbox's interactive process (`ExecRequest(interactive=True)`).

Every backend provides `InteractiveProcess`; this adapter, written once, turns it into the
`KernelChannel` a `Kernel` drives.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

from llm_sandbox.backends.base import InteractiveProcess
from llm_sandbox.exceptions import SandboxError
from llm_sandbox.kernels.channel import ChannelExit

logger = logging.getLogger("llm_sandbox")


class ProcessChannel:
    """`KernelChannel` over an `InteractiveProcess`."""

    def __init__(self, process: InteractiveProcess) -> None:
        self._process = process
        self._exit: ChannelExit | None = None
        self._lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with contextlib.suppress(SandboxError, OSError):
            self._process.send(data)

    def read(self, timeout: float) -> tuple[int, bytes] | ChannelExit | None:
        if self._exit is not None:
            return self._exit
        try:
            got = self._process.read(timeout)
        except Exception as exc:
            # A broken channel is a kernel that is gone (also a read racing a kill from
            # another thread, which closes the connection).
            logger.warning("kernel channel: %s: %s", type(exc).__name__, exc)
            got = (0, b"")
        if got is None:
            return None
        stream, data = got
        if stream != 0:
            return stream, data
        self._exit = self._ended()
        return self._exit

    def _ended(self) -> ChannelExit:
        try:
            status = self._process.wait()
        except Exception:  # how it ended is unknown; that it ended is not
            return ChannelExit()
        code = status.exit_code
        if code > 128 and code - 128 < signal.NSIG:
            code = -(code - 128)  # the shell's 128 + signal, as Popen reports it
        return ChannelExit(
            returncode=code if code != -1 else None, out_of_memory=status.out_of_memory
        )

    def kill(self) -> None:
        with self._lock:
            try:
                self._process.kill()
            except SandboxError as exc:
                logger.warning("killing the kernel: %s", exc)

    def close(self) -> None:
        """Kill the kernel if it still runs and release the process."""
        self.kill()
        if self._exit is None:
            with contextlib.suppress(SandboxError, OSError, ValueError):
                self._process.wait()
