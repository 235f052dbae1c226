"""The run agent: one long-lived exec per container session that runs every command.

Starting an exec costs a container engine ~40 ms (runc exec), more than a warm Python run.
So a session starts one exec running a tiny `sh` loop as the sandbox user and keeps its
hijacked connection open. For each command we send a header line, a generated script, and
the bytes the script copies out of the agent's stdin (files, then the program's stdin):

    <nonce> <script length>\\n <script> <file 1> ... <file n> <stdin>

The script places the files (`head -c N`, which reads exactly N bytes) and execs the
program. When it exits, the agent SIGKILLs every other process of the sandbox user (so
background daemons do not outlive their run) and prints an end marker carrying the nonce and
the exit code on both stdout and stderr. A run ends when both markers have arrived;
everything before them is the program's output. The nonce is random per run, so output
cannot end a run by accident.

If the program kills the agent (it runs as the same user), the connection ends without a
marker; the run fails with a clear error and the next command starts a new agent.

The agent only needs a duplex byte channel (`ChannelStream`): Docker and Podman deliver
output as multiplexed frames on a hijacked socket (`FrameStream`: 8-byte header: stream, 3
zero bytes, big-endian length); Kubernetes as websocket channel messages (see
`backends/kubernetes/channel.py`). Both read with a deadline.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import selectors
import shlex
import socket
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence

from llm_sandbox.backends.base import (
    CA_ENV,
    HOST_CA_BUNDLE,
    LIBS_DIR,
    STDERR,
    STDOUT,
    SUPPORT_DIR,
    ExecRequest,
    ExitStatus,
    Process,
)
from llm_sandbox.exceptions import SandboxRuntimeError

logger = logging.getLogger("llm_sandbox")

READ_SIZE = 65536
LIVENESS_INTERVAL = 2.0
"""Seconds of silence after which a run checks that its container is still alive."""
CA_BUNDLE = f"{SUPPORT_DIR}/host-ca.pem"
STDIN_FILE = f"{SUPPORT_DIR}/stdin"
INSTALL_TMP = f"{LIBS_DIR}/.tmp"


def kill_loop(keep: str) -> str:
    """sh that SIGKILLs every process of our user but itself and `keep` until none is alive.

    Builtins only, so the loop forks nothing it would then have to kill; zombies are already
    dead (pid 1 reaps them); bounded against a process stuck in the kernel. pid 1 is skipped:
    where it runs as our user (Kubernetes: one user per container) the kernel ignores SIGKILL
    sent to a namespace's init from inside, and the loop would wait on it forever.
    """
    return (
        f"keep={keep}; i=0; while [ $i -lt 2000 ]; do i=$((i+1)); alive=0; "
        "for d in /proc/[0-9]*; do p=${d#/proc/}; "
        '{ [ "$p" = "$$" ] || [ "$p" = "$keep" ] || [ "$p" = 1 ]; } && continue; '
        '[ -O "$d" ] || continue; '
        'read -r _ _ st _ < "$d/stat" 2>/dev/null || continue; [ "$st" = Z ] && continue; '
        'kill -9 "$p" 2>/dev/null; alive=1; done; [ $alive = 0 ] && break; done'
    )


KILL_ALL = kill_loop("0")

OOM_COUNT = "cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>&-"
"""sh printing the container cgroup's OOM kill counter (cgroup v2, then v1)."""


def oom_kill_count(out: bytes) -> int:
    """The counter from OOM_COUNT's output (0 when the cgroup does not say)."""
    lines = out.decode(errors="replace").splitlines()
    counts = [int(line.split()[1]) for line in lines if line.startswith("oom_kill ")]
    return max(counts, default=0)


_END = 'printf \'\\000llm-sandbox-end:%s:%d\\000\' "$nonce" "$rc"'

# The agent: read a header, save the script, run it (the script ends by exec-ing the program,
# so the agent waits on the program itself), kill what the run left behind, print the end
# markers. dash reports a child killed by a signal ("Killed") on that command's own stderr,
# so the script runs with stderr on /dev/null and first restores the real one from fd 3.
AGENT_SCRIPT = (
    'while read -r nonce size; do head -c "$size" > "$0" || exit 1; '
    'sh "$0" 3>&2 2>/dev/null; rc=$?; ' + kill_loop("$$") + f"; {_END}; {_END} >&2; done"
)


def marker(nonce: str) -> bytes:
    return b"\0llm-sandbox-end:" + nonce.encode() + b":"


def run_script(
    argv: Sequence[str],
    *,
    files: Sequence[tuple[str, int]],
    stdin_size: int,
    stdin_path: str,
    env: Mapping[str, str],
    cwd: str,
    under_agent: bool = True,
) -> str:
    """The script for one command: place files and stdin, then exec argv.

    Under the agent, stderr starts on /dev/null and the real one waits on fd 3 (see
    AGENT_SCRIPT); a script run by an exec of its own has its stderr already.
    """
    q = shlex.quote
    lines = ["exec 2>&3 3>&-"] if under_agent else []
    for path, size in files:
        parent = path.rsplit("/", 1)[0] or "/"
        mkdir = f"{{ [ -d {q(parent)} ] || mkdir -p {q(parent)}; }}"
        lines.append(f"{mkdir} && head -c {size} > {q(path)} || exit 125")
    lines.append(f"head -c {stdin_size} > {q(stdin_path)} || exit 125")
    lines += [f"export {name}={q(value)}" for name, value in sorted(env.items())]
    lines.append(f"cd {q(cwd)} || exit 125")
    lines.append(f"exec {' '.join(map(q, argv))} < {q(stdin_path)}")
    return "\n".join(lines) + "\n"


def prepare(request: ExecRequest, workdir: str, *, under_agent: bool) -> tuple[str, bytes]:
    """The script for `request` and the bytes it reads from stdin (files, then stdin)."""
    files = list(request.files.items())
    env = dict(request.env)
    if request.writable_libs:
        # Installers unpack into TMPDIR; on the memory-backed /tmp a big install would
        # exhaust the memory limit, so they use scratch space on the libraries volume.
        env["TMPDIR"] = INSTALL_TMP
    if request.network and os.path.isfile(HOST_CA_BUNDLE):
        # Installers inside trust what the host trusts (e.g. a TLS-inspecting proxy's CA).
        with open(HOST_CA_BUNDLE, "rb") as f:
            files.append((CA_BUNDLE, f.read()))
        env.update({name: CA_BUNDLE for name in CA_ENV})
    stdin = request.stdin or b""
    script = run_script(
        request.argv,
        files=[(path, len(content)) for path, content in files],
        stdin_size=len(stdin),
        # root's files in the sticky support directory are not the sandbox user's to reuse
        stdin_path=f"{STDIN_FILE}-install" if request.writable_libs else STDIN_FILE,
        env=env,
        cwd=request.cwd or workdir,
        under_agent=under_agent,
    )
    if request.writable_libs:
        script = f"mkdir -p {INSTALL_TMP} || exit 125\n{script}"
    return script, b"".join(content for _, content in files) + stdin


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


def new_nonce() -> str:
    return secrets.token_hex(16)


def agent_message(nonce: str, script: str, payload: bytes) -> bytes:
    """What the agent reads for one command (see the module docstring)."""
    encoded = script.encode()
    return f"{nonce} {len(encoded)}\n".encode() + encoded + payload


class ChannelStream(ABC):
    """A duplex exec connection: output chunks in, stdin bytes out, neither blocking."""

    eof: bool

    @abstractmethod
    def send(self, data: bytes) -> None:
        """Queue `data` for the command's stdin."""

    @abstractmethod
    def close_stdin(self) -> None:
        """End stdin once everything queued has been sent (where the transport can)."""

    @abstractmethod
    def next_frame(self, timeout: float) -> tuple[int, bytes] | None:
        """The next chunk; `(0, b"")` at end of stream; None when `timeout` passed first."""

    @abstractmethod
    def close(self) -> None: ...


class FrameStream(ChannelStream):
    """A hijacked exec connection: frames in, stdin bytes out, both without blocking."""

    def __init__(self, sock: socket.socket, ahead: bytes) -> None:
        self.sock = sock
        self.eof = False
        self._buffer = bytearray(ahead)
        self._pending = bytearray()
        self._closing = False
        self._selector = selectors.DefaultSelector()
        self._registered = False
        sock.setblocking(False)

    def send(self, data: bytes) -> None:
        self._pending += data
        self._flush()

    def close_stdin(self) -> None:
        """End stdin once everything queued has been sent."""
        self._closing = True
        self._flush()

    def _flush(self) -> None:
        while self._pending:
            try:
                sent = self.sock.send(self._pending)
            except BlockingIOError:
                return
            except OSError:
                self._pending.clear()
                break
            del self._pending[:sent]
        if self._closing:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)
            self._closing = False

    def _frame(self) -> tuple[int, bytes] | None:
        if len(self._buffer) < 8:
            return None
        stream, size = self._buffer[0], struct.unpack(">I", self._buffer[4:8])[0]
        if len(self._buffer) < 8 + size:
            return None
        data = bytes(self._buffer[8 : 8 + size])
        del self._buffer[: 8 + size]
        return (STDERR if stream == 2 else STDOUT), data

    def next_frame(self, timeout: float) -> tuple[int, bytes] | None:
        deadline = time.monotonic() + timeout
        while True:
            frame = self._frame()
            if frame is not None:
                return frame
            if self.eof:
                return 0, b""
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self._pending else 0)
            if self._registered:
                self._selector.modify(self.sock, events)
            else:
                self._selector.register(self.sock, events)
                self._registered = True
            ready = self._selector.select(max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            for _, mask in ready:
                if mask & selectors.EVENT_WRITE:
                    self._flush()
                if mask & selectors.EVENT_READ:
                    self._receive()

    def _receive(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._buffer += data
        else:
            self.eof = True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._selector.close()
        with contextlib.suppress(OSError):
            self.sock.close()


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
