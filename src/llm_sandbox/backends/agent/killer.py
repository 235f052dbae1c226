"""The host side of killing a run: talk to the sandbox's killer.

`Killer` drives the killer process (`protocol.killer_script`) over its stdin and
stdout: a container's sandbox attaches to it (its main process), a pod's starts it in an exec.
It answers only once every process is gone, or raises `KillUnconfirmed` saying what is still
alive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from llm_sandbox.backends.agent.channel import ChannelStream
from llm_sandbox.backends.agent.protocol import WAIT_GONE_SECONDS, new_nonce
from llm_sandbox.backends.base import KILL_GRACE, KillUnconfirmed
from llm_sandbox.exceptions import SandboxRuntimeError

logger = logging.getLogger("llm_sandbox")

KILL_TIMEOUT = KILL_GRACE - 0.15
"""Seconds a timed-out run waits for its kill to be confirmed (the promise: timeout + 1 s)."""
SETTLE_TIMEOUT = WAIT_GONE_SECONDS + 5.0
"""Seconds the next command waits for a kill that was not confirmed in time."""
ACK_PATIENCE = 0.5
"""Seconds the killer gets to acknowledge a request before it counts as unreachable."""
LOST_GRACE = 2.0
"""Seconds a sandbox whose agent vanished gets for its engine to report it stopped."""


class KillerGone(SandboxRuntimeError):
    """No killer could be reached in a sandbox that still runs: its runs cannot be stopped."""


class _ChannelEnded(Exception):
    """Internal: the killer's channel ended before its answer."""


class _NoAnswer(Exception):
    """Internal: the killer did not answer in time."""


class Killer:
    """The killer process, reached over a channel to its stdin and stdout.

    `kill(timeout)` SIGKILLs every process but the sandbox's own and returns once all are
    gone; it raises `KillUnconfirmed` when that is not confirmed within `timeout` (the kill
    goes on, and `settle` waits for it), `KillerGone` or the sandbox's own error when no
    killer can be reached.

    The killer acknowledges a request at once (`<nonce> got`) and answers when it is done
    (`<nonce> ok <pid>`), so a killer that cannot be reached is told apart from one still
    waiting for processes to die. `connect` (re)opens the channel: the connection to the
    engine can break (a daemon restart) while the killer lives on, or (where it runs as the
    code's user) a new killer starts. `fallback(timeout, spare)`, where given, kills another
    way when the killer does not acknowledge (Podman closes a container's stdin when the connection
    attached to it breaks). `check_running` raises, saying why, once the sandbox is gone. With
    `same_user`, the agent's clean-up is told to spare the killer; it always spares `resident`
    (what an attached container ran before the session; the killer script, made by the
    caller, must spare them too).
    """

    def __init__(
        self,
        connect: Callable[[], ChannelStream],
        check_running: Callable[[], None],
        *,
        same_user: bool = False,
        fallback: Callable[[float, Sequence[str]], None] | None = None,
        resident: tuple[int, ...] = (),
    ) -> None:
        self._connect = connect
        self._resident = resident
        self._check_running = check_running
        self._same_user = same_user
        self._fallback = fallback
        self._stream: ChannelStream | None = None
        self._text = b""
        self._pending: str | None = None
        """The nonce of a kill acknowledged but not confirmed yet."""
        self.pid = 0
        """The killer's pid in the sandbox, from its answers."""
        self._spare: tuple[str, ...] = ()
        """What the last kill spared (a kill asked again spares the same)."""

    def channel_open(self) -> bool:
        """Whether the channel to the killer is connected and not at its end (a
        non-blocking look)."""
        return self._stream is not None and not self._stream.check_eof()

    @property
    def keep(self) -> tuple[int, ...]:
        """Pids that the agent's clean-up must spare: the killer where it runs as the code's
        user, and `resident` (what an attached container ran before the session)."""
        own = (self.pid,) if self._same_user and self.pid else ()
        return (*self._resident, *own)

    def kill(self, timeout: float, *, patient: bool = False, spare: Sequence[str] = ()) -> None:
        """See the class docstring; `patient`: the killer may take all of `timeout` to
        acknowledge (at open, while it starts); `spare`: pids and `s<sid>` sessions to leave
        alive (kernels, see `protocol.kill_others`)."""
        deadline = time.monotonic() + timeout
        nonce = new_nonce()
        self._spare = tuple(spare)
        for attempt in (1, 2):
            fresh = self._send(nonce)
            # A killer just started (in a pod, a new exec) gets all the time there is; so does
            # one with no other way to kill (a pod's: a loaded node can be slow to schedule it).
            slow = patient or (fresh and self._same_user) or self._fallback is None
            patience = deadline - time.monotonic() if slow else ACK_PATIENCE
            try:
                self._acknowledged(nonce, max(0.0, min(patience, deadline - time.monotonic())))
                break
            except _ChannelEnded:
                # The connection ended: a new one (or, where the killer runs as the code's
                # user and was killed, a new killer) is tried once.
                self._drop()
                if attempt == 2:
                    self._give_up(deadline, "its killer is gone and no new one survived")
                    return
            except _NoAnswer:
                # A killer of the code's user that does not answer was stopped by the code. No
                # new one is started then: a process that stops every process of its user also
                # stops `runc init` of a new exec mid-way, which hangs the runtime's handling
                # of the whole container (it can no longer be removed).
                self._drop()
                self._give_up(deadline, "its killer does not answer")
                return
        try:
            self._await(max(0.0, deadline - time.monotonic()))
        except (_ChannelEnded, _NoAnswer):
            raise self._unconfirmed(timeout) from None

    def _give_up(self, deadline: float, why: str) -> None:
        """No killer acknowledged: kill another way, or say that the sandbox is lost."""
        self._pending = None
        if self._fallback is not None:
            self._fallback(max(0.1, deadline - time.monotonic()), self._spare)
            return
        while True:  # a sandbox that is gone says so (its engine may report it late)
            self._check_running()
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        raise KillerGone(f"{why}: the run stops or kills every process of its user")

    @staticmethod
    def _unconfirmed(timeout: float) -> KillUnconfirmed:
        return KillUnconfirmed(
            f"every process was sent SIGKILL, but their end was not confirmed within "
            f"{timeout:.1f} s"
        )

    def settle(self, timeout: float) -> None:
        if self._pending is not None:
            try:
                self._await(timeout)
            except (_ChannelEnded, _NoAnswer):
                # The killer went away with the kill, or is stuck: ask again.
                self._drop()
                self.kill(timeout, spare=self._spare)

    def ping(self, timeout: float) -> None:
        """A kill with nothing to kill: proves the killer answers (at open)."""
        self.kill(timeout, patient=True)

    def _send(self, nonce: str) -> bool:
        """Send a request; True when that took a new connection (a new killer, in a pod)."""
        fresh = self._stream is None or self._stream.eof
        self._open().send(" ".join([nonce, *self._spare]).encode() + b"\n")
        return fresh

    def _open(self) -> ChannelStream:
        if self._stream is None or self._stream.eof:
            self._drop()
            self._stream = self._connect()
            self._text = b""
        return self._stream

    def _drop(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def _acknowledged(self, nonce: str, timeout: float) -> None:
        while True:
            words = self._line(nonce, time.monotonic() + timeout).split()
            if words[1:2] == ["got"]:
                self._pending = nonce
                return
            self._result(words)  # an answer without its acknowledgement: done already
            return

    def _await(self, timeout: float) -> None:
        nonce = self._pending
        assert nonce is not None
        deadline = time.monotonic() + timeout
        while True:
            words = self._line(nonce, deadline).split()
            if words[1:2] != ["got"]:
                self._pending = None
                self._result(words)
                return

    def _result(self, words: list[str]) -> None:
        self._pending = None
        _, result, pid = [*words, "", ""][:3]
        if pid.isdigit():
            self.pid = int(pid)
        if result != "ok":
            raise KillUnconfirmed(
                f"every process was sent SIGKILL, but process {result or '?'} was still alive "
                f"{WAIT_GONE_SECONDS} s later (stuck in the kernel)"
            )

    def _line(self, nonce: str, deadline: float) -> str:
        """The killer's next line about `nonce`; _NoAnswer once `deadline` passed."""
        stream = self._stream
        if stream is None:
            raise _ChannelEnded
        while True:
            while b"\n" in self._text:
                raw, _, self._text = self._text.partition(b"\n")
                line = raw.decode(errors="replace").strip()
                if line.split(" ", 1)[0] == nonce:
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _NoAnswer
            frame = stream.next_frame(remaining)
            if frame is None:
                raise _NoAnswer
            kind, data = frame
            if kind == 0:
                raise _ChannelEnded
            self._text += data

    def close(self) -> None:
        self._drop()
