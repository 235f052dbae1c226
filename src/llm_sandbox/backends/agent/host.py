"""The host side of the agent: runs on it, one-off execs, kills, OOM counting."""

from __future__ import annotations

import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence

from llm_sandbox.backends.agent.channel import ChannelStream
from llm_sandbox.backends.agent.killer import (
    KILL_TIMEOUT,
    LOST_GRACE,
    SETTLE_TIMEOUT,
    Killer,
)
from llm_sandbox.backends.agent.protocol import (
    OOM_COUNT,
    agent_message,
    marker,
    new_nonce,
    oom_kill_count,
    prepare,
)
from llm_sandbox.backends.base import (
    STDERR,
    STDOUT,
    ExecRequest,
    ExitStatus,
    InteractiveProcess,
    KillUnconfirmed,
    Process,
)
from llm_sandbox.backends.forkserver import ForkServer
from llm_sandbox.backends.wipe import WipeReport, parse_report, wipe_script
from llm_sandbox.exceptions import SandboxError, SandboxRuntimeError
from llm_sandbox.layout import RUN_SCRIPT

logger = logging.getLogger("llm_sandbox")

WIPE_KILL_TIMEOUT = 10.0
"""Seconds a wipe's kill may take (a busy machine; nobody waits on it)."""
LIVENESS_INTERVAL = 2.0
"""Seconds of silence after which a run checks that its container is still alive."""


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
        self._heard = time.monotonic()
        """When output last arrived (or liveness was last checked), across reads: a caller
        that reads in short slices (to look at an `Interrupt`) still gets the check."""

    def _done(self) -> bool:
        return all(s.exit_code is not None for s in self._splitters.values())

    def read(self, timeout: float) -> tuple[int, bytes] | None:
        deadline = time.monotonic() + timeout
        while not self._done():
            now = time.monotonic()
            if now - self._heard >= LIVENESS_INTERVAL:
                self._on_silence()  # raises if the container itself is gone
                self._heard = now
            wait = min(deadline - now, self._heard + LIVENESS_INTERVAL - now)
            frame = self._stream.next_frame(max(0.0, wait))
            if frame is None:
                if time.monotonic() >= deadline:
                    return None
                continue
            self._heard = time.monotonic()
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
    completion, how to tell whether it is still running, and its `Killer` (set at open).
    """

    _agent: ChannelStream | None = None
    _killer: Killer | None = None
    _oom_kills = 0
    _kernels = 0
    _spared_kernels: dict[int, tuple[str, ...]] | None = None
    _forks: ForkServer | None = None

    @property
    def _spared(self) -> dict[int, tuple[str, ...]]:
        """What each live kernel needs spared (see `agent.kernel`), by kernel number."""
        if self._spared_kernels is None:
            self._spared_kernels = {}
        return self._spared_kernels

    def _spare(self, *, but: int | None = None) -> tuple[str, ...]:
        return tuple(w for key, words in self._spared.items() if key != but for w in words)

    @abstractmethod
    def _open_agent(self, script_path: str = RUN_SCRIPT) -> ChannelStream:
        """Start the agent (`protocol.agent_argv`) in an exec of its own, keeping the scripts
        it runs in `script_path`."""

    @abstractmethod
    def _internal(self, argv: Sequence[str]) -> tuple[int, bytes]:
        """Run one of our own commands in an exec of its own; (exit code, stdout)."""

    @abstractmethod
    def _check_running(self) -> None:
        """Raise SandboxRuntimeError, saying why, once the sandbox is no longer running."""

    def _kept_pids(self) -> tuple[int, ...]:
        """Processes of the code's user besides the killer that the agent's clean-up after
        a run spares (the egress gate's relay on Kubernetes)."""
        return ()

    def start_run(self, script: str, payload: bytes) -> AgentRun:
        self._settle()
        if self._agent is None or self._agent.check_eof():
            self._drop_agent()
            self._agent = self._open_agent()
        nonce = new_nonce()
        keep = (*(self._killer.keep if self._killer is not None else ()), *self._kept_pids())
        self._agent.send(agent_message(nonce, script, payload, (*keep, *self._spare())))
        return AgentRun(
            self._agent,
            nonce,
            on_kill=self.kill_all,
            on_lost=self._agent_lost,
            on_silence=self._check_running,
            check_oom=self.oom_kills_increased,
        )

    def start_kernel(self, request: ExecRequest, workdir: str) -> InteractiveProcess:
        """Start `request` (interactive) as a kernel on an agent of its own (`agent.kernel`)."""
        from llm_sandbox.backends.agent.kernel import AgentKernel

        self._settle()
        self._kernels += 1
        key = self._kernels
        nonce = new_nonce()
        script, payload = prepare(request, workdir, under_agent=True, kernel_nonce=nonce)
        stream = self._open_agent(f"{RUN_SCRIPT}-kernel-{key}")
        keep = (*(self._killer.keep if self._killer is not None else ()), *self._kept_pids())
        stream.send(agent_message(nonce, script, payload, (*keep, *self._spare())))
        kernel = AgentKernel(self, key, stream, nonce)
        try:
            kernel.await_start()
        except BaseException:
            kernel.kill()
            raise
        return kernel

    def kill_kernel(self, key: int) -> None:
        """Kill kernel `key` and everything it started (everything not spared for another
        kernel: nothing else runs while a kernel is killed)."""
        self._spared.pop(key, None)
        self.kill_all()

    def _settle(self) -> None:
        """Before a command: an earlier kill that was not confirmed in time must be by now."""
        if self._killer is None:
            return
        try:
            self._killer.settle(SETTLE_TIMEOUT)
        except KillUnconfirmed as exc:
            raise SandboxRuntimeError(
                f"processes of an earlier run are still alive ({exc}); open a new session"
            ) from exc

    def _drop_agent(self) -> None:
        if self._agent is not None:
            self._agent.close()
            self._agent = None

    def _agent_lost(self) -> SandboxRuntimeError:
        """The agent's connection ended without the end markers: kill what the run left
        (which also proves the sandbox alive) and say what happened, honestly.

        A dying sandbox ends the agent's stream first; its engine may take a moment to
        report it stopped, so that gets LOST_GRACE seconds to say so.
        """
        self._drop_agent()
        try:
            self.kill_all()
        except KillUnconfirmed:
            deadline = time.monotonic() + LOST_GRACE
            while time.monotonic() < deadline:
                self._check_running()
                time.sleep(0.1)
            raise
        return SandboxRuntimeError(
            "the run ended the sandbox's command agent (it killed its parent or every process "
            "of its user), so its exit status is unknown; every process it left was killed "
            "and the next command starts a new agent"
        )

    def kill_all(self, timeout: float = KILL_TIMEOUT, *, patient: bool = False) -> None:
        """SIGKILL every process of the sandbox but its own and its kernels' (the agent too);
        see `Killer`.

        A run's kill has KILL_TIMEOUT; a wipe (in the background) waits longer, `patient`ly.

        A kill that is not confirmed may be one the sandbox did not live to answer: then
        the error says the sandbox stopped.
        """
        self._drop_agent()
        if self._killer is None:
            raise SandboxRuntimeError("the sandbox has no way to kill its processes")
        try:
            self._killer.kill(timeout, patient=patient, spare=self._spare())
        except KillUnconfirmed:
            self._check_running()
            raise

    def wipe(self) -> WipeReport:
        """Kill every process of the sandbox (the killer), wipe as the code's user, and
        start a fresh agent (and fork server) for the next user."""
        if self._forks is not None:
            self._forks.stop()
        self.kill_all(WIPE_KILL_TIMEOUT, patient=True)
        keep = self._killer.keep if self._killer is not None else ()
        code, out = self._internal(["sh", "-c", wipe_script(keep)])
        report = parse_report(code, out)
        if report.clean and self._agent is None:
            # The next user's first run should not pay for starting the agent (an exec).
            self._agent = self._open_agent()
        if report.clean and self._forks is not None:
            self._warm(self._forks)
        return report

    # --- warm runs (see `backends.forkserver`) ------------------------------------------------
    def _run_workdir(self) -> str:
        """The working directory runs start in."""
        raise NotImplementedError

    def warm_runs(self, env: Mapping[str, str]) -> str | None:
        """Fork Python runs with `env` from a warm interpreter, a kernel of this sandbox."""
        if self._forks is None or self._forks.env != dict(env):
            self._stop_forks()
            self._forks = ForkServer(
                self._start_zygote,
                env,
                self._run_workdir(),
                mode="subreaper",
                on_lost=self.kill_all,
            )
        return self._warm(self._forks)

    def _warm(self, forks: ForkServer) -> str | None:
        try:
            forks.warm()
        except SandboxError as exc:
            if not forks.closed:  # else the sandbox closed meanwhile: nothing to say
                logger.warning("%s; runs start plainly until it does", exc)
            return f"the fork server did not start: {exc}"
        return None

    def _start_zygote(self, request: ExecRequest) -> InteractiveProcess:
        return self.start_kernel(request, self._run_workdir())

    def _forked(self, request: ExecRequest) -> Process | None:
        """A forked run for `request`, or None: start it plainly."""
        forks = self._forks
        if forks is None:
            return None
        if request.writable_libs:
            forks.stop()  # an install changes what a starting interpreter loads
            return None
        return forks.run(request, self.oom_kills_increased)

    def _stop_forks(self) -> None:
        forks, self._forks = self._forks, None
        if forks is not None:
            with contextlib.suppress(SandboxError):
                forks.close()

    def alive(self) -> bool | None:
        """True while the agent's and the killer's connections are open (both end with the
        sandbox); when either has ended this cannot tell (a broken engine connection ends
        them too), and `check_alive` asks the engine."""
        if self._agent is None or self._killer is None or self._agent.check_eof():
            return None
        return True if self._killer.channel_open() else None

    def check_alive(self) -> None:
        self._check_running()

    def _close_killer(self) -> None:
        if self._killer is not None:
            self._killer.close()

    def oom_kills_increased(self) -> bool:
        """Whether the sandbox's cgroup counted a new OOM kill since we last looked."""
        _, out = self._internal(["sh", "-c", OOM_COUNT])
        seen = oom_kill_count(out)
        increased = seen > self._oom_kills
        self._oom_kills = seen
        return increased
