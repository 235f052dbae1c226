"""What a kernel needs from a sandbox: one long-lived process with its stdin, stdout and stderr.

Every backend provides it through `ExecRequest(interactive=True)` and `ProcessChannel`
(`process_channel.py`); `SubprocessChannel` in `subprocess_channel.py` implements it with host
pipes for tests and benchmarks. What a channel must do:

* run `kernel_argv(...)` (an `sh -c` launcher) as an exec of its own, with stdin open, in the
  session's working directory and environment, with `languages.runner_files()` placed in
  `languages.RUNNERS_DIR` first; its stdout and stderr must stay two streams (the end of a
  cell is a frame on each) and should be pipes or FIFOs (the runners reopen /proc/self/fd/N of
  them, and rely on writes of up to PIPE_BUF bytes being atomic);
* deliver what the process wrote in order per stream, without waiting for more (a frame may
  arrive in pieces: the parser copes);
* report `ChannelExit` when the runner process (not its pipes: a background child may hold
  them) has exited, with `out_of_memory` when the sandbox knows;
* `kill()` every process of the kernel, including what its cells started, and nothing else;
  the exec agent's clean-up between runs must leave the kernel alone.

Interrupts travel as requests on stdin; the runners signal their own processes, so a channel
needs no way to send signals into the sandbox.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

STDOUT: Final = 1
STDERR: Final = 2


@dataclass(frozen=True)
class ChannelExit:
    """The runner process has exited and everything it wrote has been read.

    `returncode` as `Popen` has it (negative: killed by that signal), None when the sandbox
    cannot tell; `out_of_memory` when the sandbox knows the memory limit killed it.
    """

    returncode: int | None = None
    out_of_memory: bool = False

    def describe(self) -> str:
        if self.out_of_memory:
            return "it was killed for exceeding the memory limit"
        if self.returncode is None:
            return "it exited"
        if self.returncode < 0:
            return f"it was killed by signal {-self.returncode}"
        return f"it exited with status {self.returncode}"


class KernelChannel(Protocol):
    """A running runner process: a duplex byte channel plus kill.

    Implementations must be safe for `send` and `kill` to be called from another thread while
    one thread reads.
    """

    def send(self, data: bytes) -> None:
        """Write to the runner's stdin. A runner that is gone is not an error here: the next
        `read` reports its exit."""

    def read(self, timeout: float) -> tuple[int, bytes] | ChannelExit | None:
        """The next bytes from the runner: `(STDOUT or STDERR, data)`, `ChannelExit` once the
        runner exited and its output is drained (then every later call), or None when nothing
        came within `timeout` seconds."""

    def kill(self) -> None:
        """Kill every process of the kernel (the runner and what it started), now. Idempotent;
        `read` then reports the exit."""


Launcher = Callable[[Sequence[str]], KernelChannel]
"""Starts `argv` (see `languages.kernel_argv`) as a long-lived process in the sandbox."""
