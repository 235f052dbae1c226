"""The host side of the agent: runs on it, one-off execs, kills, OOM counting."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from llm_sandbox.backends.agent.channel import ChannelStream
from llm_sandbox.backends.agent.protocol import (
    KILL_ALL,
    OOM_COUNT,
    agent_message,
    marker,
    new_nonce,
    oom_kill_count,
)
from llm_sandbox.backends.base import STDERR, STDOUT, ExitStatus, Process
from llm_sandbox.exceptions import SandboxRuntimeError

logger = logging.getLogger("llm_sandbox")

LIVENESS_INTERVAL = 2.0
"""Seconds of silence after which a run checks that its container is still alive."""


def agent_lost(check_running: Callable[[], None]) -> SandboxRuntimeError:
    """The error for an agent whose connection ended without the end markers.

    A dying sandbox may end the stream a moment before its engine reports it stopped, so
    `check_running` (which raises when the sandbox is gone) is given two seconds to say so.
    """
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        check_running()
        time.sleep(0.1)
    return SandboxRuntimeError(
        "the run ended the sandbox's command agent (it killed its parent or every process "
        "of its user), so its exit status is unknown; the next command starts a new agent"
    )


class ExecProcess(Process):
    """A one-off exec (kill loop, probes, installs): output until the stream ends."""

    def __init__(
        self,
        stream: ChannelStream,
        exit_code: Callable[[], int],
        on_kill: Callable[[], None] | None = None,
    ) -> None:
        self._stream = stream
        self._exit_code = exit_code
        self._on_kill = on_kill
        stream.close_stdin()

    def read(self, timeout: float) -> tuple[int, bytes] | None:
        return self._stream.next_frame(timeout)

    def wait(self) -> ExitStatus:
        self._stream.close()
        return ExitStatus(exit_code=self._exit_code())

    def kill(self) -> None:
        if self._on_kill is not None:
            self._on_kill()
        self._stream.close()


class _MarkerSplitter:
    """Separates one stream's output from the end marker that follows it."""

    def __init__(self, mark: bytes) -> None:
        self._mark = mark
        self._held = bytearray()
        self.exit_code: int | None = None

    def feed(self, data: bytes) -> bytes:
        """Output that is certainly the program's; holds back a possible marker prefix."""
        if self.exit_code is not None:
            return b""
        self._held += data
        at = self._held.find(self._mark)
        if at >= 0:
            end = self._held.find(b"\0", at + len(self._mark))
            if end < 0:
                out = bytes(self._held[:at])
                del self._held[:at]
                return out
            self.exit_code = int(self._held[at + len(self._mark) : end])
            out = bytes(self._held[:at])
            self._held.clear()
            return out
        # Hold back only a tail that could be the start of the marker (it begins with NUL).
        start = self._held.rfind(b"\0", max(0, len(self._held) - len(self._mark) + 1))
        cut = start if start >= 0 and self._mark.startswith(self._held[start:]) else len(self._held)
        out = bytes(self._held[:cut])
        del self._held[:cut]
        return out


class AgentRun(Process):
    """One command run by the agent; ends when both end markers have arrived."""

    def __init__(
        self,
        stream: ChannelStream,
        nonce: str,
        *,
        on_kill: Callable[[], None],
        on_lost: Callable[[], SandboxRuntimeError],
        on_silence: Callable[[], None],
        check_oom: Callable[[], bool],
    ) -> None:
        self._stream = stream
        self._splitters = {
            STDOUT: _MarkerSplitter(marker(nonce)),
            STDERR: _MarkerSplitter(marker(nonce)),
        }
        self._on_kill = on_kill
        self._on_lost = on_lost
        self._on_silence = on_silence
        self._check_oom = check_oom

    def _done(self) -> bool:
        return all(s.exit_code is not None for s in self._splitters.values())

    def read(self, timeout: float) -> tuple[int, bytes] | None:
        deadline = time.monotonic() + timeout
        while not self._done():
            remaining = deadline - time.monotonic()
            frame = self._stream.next_frame(max(0.0, min(remaining, LIVENESS_INTERVAL)))
            if frame is None:
                if remaining <= LIVENESS_INTERVAL:
                    return None
                self._on_silence()  # raises if the container itself is gone
                continue
            stream, data = frame
            if stream == 0:
                raise self._on_lost()
            output = self._splitters[stream].feed(data)
            if output:
                return stream, output
        return 0, b""

    def wait(self) -> ExitStatus:
        code = self._splitters[STDOUT].exit_code
        if code is None:
            raise SandboxRuntimeError("wait() called before the run ended")
        return ExitStatus(exit_code=code, out_of_memory=code == 137 and self._check_oom())

    def kill(self) -> None:
        self._on_kill()


class AgentHost(ABC):
    """The agent side of a sandbox: starts runs on the agent, kills, counts OOM kills.

    A sandbox supplies how to open the agent's exec, how to run one command of its own to
    completion, and how to tell whether it is still running.
    """

    _agent: ChannelStream | None = None
    _oom_kills = 0

    @abstractmethod
    def _open_agent(self) -> ChannelStream:
        """Start the agent (`AGENT_SCRIPT`) in an exec of its own."""

    @abstractmethod
    def _internal(self, argv: Sequence[str]) -> tuple[int, bytes]:
        """Run one of our own commands in an exec of its own; (exit code, stdout)."""

    @abstractmethod
    def _check_running(self) -> None:
        """Raise SandboxRuntimeError, saying why, once the sandbox is no longer running."""

    def start_run(self, script: str, payload: bytes) -> AgentRun:
        if self._agent is None or self._agent.eof:
            self._drop_agent()
            self._agent = self._open_agent()
        nonce = new_nonce()
        self._agent.send(agent_message(nonce, script, payload))
        return AgentRun(
            self._agent,
            nonce,
            on_kill=self.kill_all,
            on_lost=self._agent_lost,
            on_silence=self._check_running,
            check_oom=self.oom_kills_increased,
        )

    def _drop_agent(self) -> None:
        if self._agent is not None:
            self._agent.close()
            self._agent = None

    def _agent_lost(self) -> SandboxRuntimeError:
        """The agent's connection ended without the end markers: say why, honestly."""
        error = agent_lost(self._check_running)
        self._drop_agent()
        return error

    def kill_all(self) -> None:
        """SIGKILL every process of the sandbox user, the agent too (never pid 1)."""
        self._drop_agent()
        try:
            self._internal(["sh", "-c", KILL_ALL])
        except SandboxRuntimeError:
            # The sandbox itself is gone (e.g. gVisor ends the whole sandbox when the memory
            # limit is hit): nothing of the run can be alive, and later calls say so.
            logger.warning("could not run the kill loop; the sandbox is no longer running")

    def oom_kills_increased(self) -> bool:
        """Whether the sandbox's cgroup counted a new OOM kill since we last looked."""
        _, out = self._internal(["sh", "-c", OOM_COUNT])
        seen = oom_kill_count(out)
        increased = seen > self._oom_kills
        self._oom_kills = seen
        return increased
