"""A kernel channel over a plain host subprocess. **No isolation: for tests and benchmarks.**

The runner runs as an ordinary child of this process, with this user's rights, on the host's
files and network. Use it to test runners and the protocol on real interpreters; untrusted code
belongs in a sandbox (a backend's channel).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence

from llm_sandbox.kernels.channel import STDERR, STDOUT, ChannelExit


class SubprocessChannel:
    """`argv` started in a new session with pipes for stdin, stdout and stderr.

    Reads are served in the calling thread from a selector over both pipes and a pidfd of the
    process, so the runner's exit is noticed even while a child it left behind holds the pipes.
    `kill()` SIGKILLs the process group and every descendant still found under the runner.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._process = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        assert self._process.stderr is not None
        self._stdin = self._process.stdin
        self._send_lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._open = {self._process.stdout.fileno(): STDOUT, self._process.stderr.fileno(): STDERR}
        for fd in self._open:
            os.set_blocking(fd, False)
            self._selector.register(fd, selectors.EVENT_READ)
        self._pidfd = os.pidfd_open(self._process.pid)
        self._selector.register(self._pidfd, selectors.EVENT_READ)
        self._exited = False
        self._closed = False
        self._exit: ChannelExit | None = None

    @property
    def pid(self) -> int:
        return self._process.pid

    def send(self, data: bytes) -> None:
        with self._send_lock, contextlib.suppress(BrokenPipeError, ValueError, OSError):
            self._stdin.write(data)
            self._stdin.flush()

    def read(self, timeout: float) -> tuple[int, bytes] | ChannelExit | None:
        if self._exit is not None:
            return self._exit
        for key, _ in self._selector.select(max(0.0, timeout)):
            fd = int(key.fd)
            if fd == self._pidfd:
                self._exited = True
                continue
            chunk = self._read_fd(fd)
            if chunk:
                return self._open[fd], chunk
        if self._exited:
            # The runner is gone: what is already in the pipes is its last output; a child it
            # left behind may keep them open, so do not wait for end of file.
            for fd, stream in list(self._open.items()):
                chunk = self._read_fd(fd)
                if chunk:
                    return stream, chunk
            self._finish()
            assert self._exit is not None
            return self._exit
        if not self._open:
            self._finish()
            return self._exit
        return None

    def _read_fd(self, fd: int) -> bytes:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return b""
        if not chunk:
            self._selector.unregister(fd)
            del self._open[fd]
        return chunk

    def _finish(self) -> None:
        returncode = self._process.wait()
        self._exit = ChannelExit(returncode=returncode)
        self.close()

    def kill(self) -> None:
        pids = descendants(self._process.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()

    def close(self) -> None:
        """Kill the kernel if it still runs and release the pipes."""
        if self._closed:
            return
        self._closed = True
        if self._process.poll() is None:
            self.kill()
            self._process.wait()
        for stream in (self._process.stdin, self._process.stdout, self._process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._selector.close()
        os.close(self._pidfd)


def descendants(root: int) -> list[int]:
    """Every live process below `root`, found by parent pid in /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            parents[int(entry)] = int(fields[1])
    found: list[int] = []
    frontier = {root}
    while frontier:
        children = {pid for pid, parent in parents.items() if parent in frontier}
        children -= set(found) | {root}
        found += sorted(children)
        frontier = children
    return found
