"""The embedded backend: bubblewrap sandboxes with no daemon.

Lifecycle of a session:

1. `open` creates a private host directory (mode 0700) and starts the session holder, a user +
   mount namespace owning a size-capped tmpfs for the work directory, /tmp, /dev/shm and
   installed libraries. The files live only in memory and vanish with the holder, which dies
   with its parent (`--die-with-parent`) even if the caller crashes.
2. `exec` runs `prlimit … nsenter <holder> bwrap … argv`: each command gets fresh namespaces
   (pid, net, …) inside the holder, a per-run cgroup where the machine allows it, rlimits,
   and the seccomp filter. bwrap blocks until the cgroup is attached, so nothing escapes it.
3. When the command's pid 1 dies the kernel kills the rest of its pid namespace, so stray
   daemons end with their run. `kill` SIGKILLs that pid 1 (and the cgroup) and waits.
4. `close` ends the holder; the tmpfs and everything in it are gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from llm_sandbox import environment
from llm_sandbox.backends.agent.tarexec import TarOverExec
from llm_sandbox.backends.base import (
    KILL_GRACE,
    STDERR,
    STDOUT,
    Backend,
    ExecRequest,
    ExitStatus,
    InteractiveProcess,
    KillUnconfirmed,
    Process,
    run_to_completion,
)
from llm_sandbox.backends.forkserver import ForkServer
from llm_sandbox.backends.local import STATE_PREFIX, bwrap
from llm_sandbox.backends.local.cgroups import CgroupLimits, CgroupSet
from llm_sandbox.backends.local.host import LocalHost, probe
from llm_sandbox.backends.wipe import WIPE_TIMEOUT, WipeReport, parse_report, wipe_script
from llm_sandbox.config import ResourceLimits, SessionConfig
from llm_sandbox.exceptions import (
    BackendUnavailableError,
    ControlUnavailableError,
    SandboxError,
    SandboxRuntimeError,
    SessionStateError,
)
from llm_sandbox.language_handlers.base import CODE_DIR, RuntimeNeeds
from llm_sandbox.layout import CA_ENV, HOST_CA_BUNDLE, SUPPORT_DIR

logger = logging.getLogger("llm_sandbox")

START_TIMEOUT = 30.0
READ_SIZE = 65536
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
ALIAS_DIR = f"{SUPPORT_DIR}/bin"
"""Last on the sandbox's PATH: the usual command names the host lacks (see `COMMAND_ALIASES`)."""
COMMAND_ALIASES = {"python": "python3", "pip": "pip3", "nodejs": "node"}
"""Names code written for the previous generation calls (`execute_command("python ...")`),
each linked to the toolchain's own command when the host has that but not the name (Debian
has no `python` without python-is-python3)."""


def plan_limits(
    host: LocalHost, limits: ResourceLimits
) -> tuple[CgroupLimits | None, dict[str, int]]:
    """Split limits into what a cgroup enforces and what rlimits enforce; refuse the rest."""
    have = host.cgroup_controllers
    rlimits = {"core": 0, "nofile": limits.open_files}
    if limits.file_size is not None:
        rlimits["fsize"] = limits.file_size
    if limits.cpu_time is not None:
        rlimits["cpu"] = limits.cpu_time
    memory = limits.memory if "memory" in have else None
    if limits.memory is not None and memory is None:
        rlimits["as"] = limits.memory
    processes = limits.processes if "pids" in have else None
    if limits.processes is not None and processes is None:
        if host.is_root:
            raise ControlUnavailableError(
                "cannot limit processes: no writable pids cgroup, and RLIMIT_NPROC does not "
                "apply to root. Run as an unprivileged user, delegate a cgroup via "
                "LLM_SANDBOX_CGROUP, or pass limits=ResourceLimits(processes=None) to opt out"
            )
        rlimits["nproc"] = limits.processes
    if limits.cpus is not None and "cpu" not in have:
        raise ControlUnavailableError(
            "cannot limit CPU: no writable cpu cgroup here (delegate one via LLM_SANDBOX_CGROUP)"
            " or pass limits=ResourceLimits(cpus=None)"
        )
    wanted = CgroupLimits(memory=memory, processes=processes, cpus=limits.cpus)
    needs_cgroup = any(v is not None for v in (memory, processes, limits.cpus))
    return (wanted if needs_cgroup else None), rlimits


class LocalBackend(Backend):
    name = "local"

    def open(self, config: SessionConfig, runtime: RuntimeNeeds) -> LocalSandbox:
        host = probe()
        _check_tools(config.lang, runtime)
        return LocalSandbox(host, config, runtime)


def _check_tools(lang: str, runtime: RuntimeNeeds) -> None:
    """The embedded backend runs the host's toolchain: say exactly which one is missing."""
    path = ":".join([*runtime.path_dirs, BASE_PATH])
    for tool, hint in runtime.tools:
        if shutil.which(tool, path=path) is None:
            raise BackendUnavailableError(
                f"lang={lang!r} on the local backend needs `{tool}` on this machine, which is "
                f"not installed; {hint} (or use backend='docker' with the default image)"
            )


def command_links(path: str) -> dict[str, str]:
    """For each alias missing from `path` whose command is there: its link in `ALIAS_DIR`."""
    links: dict[str, str] = {}
    for alias, command in COMMAND_ALIASES.items():
        found = shutil.which(command, path=path)
        if found is not None and shutil.which(alias, path=path) is None:
            links[f"{ALIAS_DIR}/{alias}"] = found
    return links


def doctor_facts() -> dict[str, object]:
    """How this machine enforces the default limits (for `llm-sandbox doctor`)."""
    host = probe()
    facts: dict[str, object] = {
        "cgroup_version": host.cgroups.version if host.cgroups else None,
        "cgroup_controllers": sorted(host.cgroup_controllers),
        "bwrap": host.bwrap,
    }
    try:
        cgroup_limits, rlimits = plan_limits(host, ResourceLimits())
        facts["memory_limit_by"] = "cgroup" if cgroup_limits and cgroup_limits.memory else "rlimit"
        facts["process_limit_by"] = (
            "cgroup" if cgroup_limits and cgroup_limits.processes else "rlimit"
        )
        facts["rlimits"] = sorted(rlimits)
    except SandboxError as exc:
        facts["limits_error"] = str(exc)
    return facts


class LocalSandbox(TarOverExec):
    def __init__(self, host: LocalHost, config: SessionConfig, runtime: RuntimeNeeds) -> None:
        self._host = host
        self._config = config
        self._runtime = runtime
        self._cgroup_limits, self._rlimits = plan_limits(host, config.limits)
        path = ":".join([*runtime.path_dirs, BASE_PATH])
        self._links = command_links(path)
        self._path = f"{path}:{ALIAS_DIR}" if self._links else path
        self._paths = bwrap.SessionPaths(tempfile.mkdtemp(prefix=STATE_PREFIX))
        self._holder: subprocess.Popen[bytes] | None = None
        self._holder_pid = 0
        self._spawner: ThreadPoolExecutor | None = None
        self._forks: ForkServer | None = None
        self._oom_seen = 0
        self._closed = False
        try:
            self._write_etc()
            self._start_holder()
        except BaseException:
            self.close()
            raise

    # --- lifecycle ---------------------------------------------------------------------------
    def _write_etc(self) -> None:
        with open(f"{self._paths.state}/owner", "w") as f:
            f.write(str(os.getpid()))
        os.mkdir(self._paths.etc, 0o755)
        os.mkdir(self._paths.fs, 0o700)
        for name, text in bwrap.etc_files(self._config.workdir).items():
            with open(f"{self._paths.etc}/{name}", "w") as f:
                f.write(text)

    def _start_holder(self) -> None:
        status_r, status_w = os.pipe()
        limits = self._config.limits
        argv = bwrap.holder_argv(
            self._host.bwrap, self._paths, limits.disk, limits.max_files, status_w
        )
        try:
            self._holder = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(status_w,),
                env={"PATH": BASE_PATH},
            )
        finally:
            os.close(status_w)
        with os.fdopen(status_r, "rb") as status:
            line = _read_status_line(status, START_TIMEOUT)
        assert self._holder.stdout is not None
        assert self._holder.stderr is not None
        ready = line is not None and "child-pid" in line and _read_ready(self._holder.stdout)
        if not ready or line is None:
            self._holder.kill()
            self._holder.wait()
            stderr = self._holder.stderr.read().decode(errors="replace").strip()
            raise SandboxRuntimeError(f"the sandbox session holder failed to start: {stderr}")
        self._holder_pid = int(str(line["child-pid"]))
        logger.debug("session holder pid %d, state %s", self._holder_pid, self._paths.state)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._forks is not None:
            with contextlib.suppress(SandboxError):
                self._forks.close()
        holder = self._holder
        if holder is not None:
            # The holder's own child (which keeps the session's tmpfs) first: it would only
            # die with bwrap through its parent-death signal, a moment after close returned.
            if self._holder_pid:
                with contextlib.suppress(OSError):
                    os.kill(self._holder_pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                holder.kill()
            holder.wait()
            if self._holder_pid:
                _wait_dead(self._holder_pid, KILL_GRACE)
            for stream in (holder.stdin, holder.stdout, holder.stderr):
                if stream is not None:
                    stream.close()
        _remove_state(self._paths)
        if self._spawner is not None:
            self._spawner.shutdown(wait=False)

    def alive(self) -> bool:
        """The holder (bwrap) and its child, which keeps the session's files, both run."""
        holder = self._holder
        if self._closed or holder is None or holder.poll() is not None:
            return False
        try:
            with open(f"/proc/{self._holder_pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in (b"Z", b"X")

    def check_alive(self) -> None:
        if not self.alive():
            raise SandboxRuntimeError("the sandbox's session holder has ended")

    # --- running commands --------------------------------------------------------------------
    def exec(self, request: ExecRequest) -> Process:
        if self._closed:
            raise SessionStateError("the sandbox is closed")
        forks = self._forks
        if forks is not None:
            if request.writable_libs:
                forks.stop()  # an install changes what a starting interpreter loads
            else:
                forked = forks.run(request, self._oom_grew)
                if forked is not None:
                    return forked
        return self._spawn(request)

    def _spawn(self, request: ExecRequest, *, zygote: bool = False) -> Process:
        limits = self._cgroup_limits
        if limits is not None and request.writable_libs and limits.memory is not None:
            # An install writes the libraries into the memory-backed session storage; those
            # pages move to our own cgroup when the install's cgroup is removed, so later
            # runs keep their whole memory limit.
            limits = dataclasses.replace(limits, memory=limits.memory + self._config.limits.disk)
        cgroup = self._host.cgroups.create(limits) if (self._host.cgroups and limits) else None
        try:
            if request.interactive:
                # bwrap's --die-with-parent fires when the *thread* that started it ends, and
                # a kernel outlives the call that starts it (a restart from a timer thread):
                # kernels are started by one thread that lives as long as the sandbox.
                if self._spawner is None:
                    self._spawner = ThreadPoolExecutor(1, thread_name_prefix="llm-sandbox-kernels")
                start = _LocalKernel.start
                return self._spawner.submit(start, self, request, cgroup, zygote=zygote).result()
            return _LocalProcess.start(self, request, cgroup)
        except BaseException:
            if cgroup is not None:
                cgroup.remove()
            raise

    def wipe(self) -> WipeReport:
        """No process outlives its run here (each has its own pid namespace), so a wipe is
        the script alone, run like any command. A fork server is replaced: the next user
        gets a fresh interpreter (and hash seed)."""
        if self._forks is not None:
            self._forks.stop()
        process = self.exec(ExecRequest(argv=["sh", "-c", wipe_script()]))
        code, out, _ = run_to_completion(process, timeout=WIPE_TIMEOUT)
        report = parse_report(code, out)
        if self._forks is not None:
            self._warm(self._forks)
        return report

    def warm_runs(self, env: Mapping[str, str]) -> str | None:
        """Fork Python runs with `env` from a warm interpreter (see `forkserver`)."""
        if self._forks is None or self._forks.env != dict(env):
            if self._forks is not None:
                self._forks.stop()
            self._forks = ForkServer(
                self._start_zygote, env, self._config.workdir, mode="pid1", clean=CODE_DIR
            )
        self._warm(self._forks)
        return None

    def _warm(self, forks: ForkServer) -> None:
        try:
            forks.warm()
        except SandboxError as exc:
            if not forks.closed:  # else the sandbox closed meanwhile: nothing to say
                logger.warning("%s; runs start plainly until it does", exc)

    def _start_zygote(self, request: ExecRequest) -> InteractiveProcess:
        process = self._spawn(request, zygote=True)
        assert isinstance(process, InteractiveProcess)
        return process

    def _oom_grew(self) -> bool:
        """Whether the fork server's cgroup saw OOM kills since this was last asked."""
        forks = self._forks
        process = forks.process if forks is not None else None
        cgroup = process._cgroup if isinstance(process, _LocalProcess) else None
        count = cgroup.oom_kills() if cgroup is not None else 0
        grew, self._oom_seen = count > self._oom_seen, count
        return grew

    def command_argv(self, request: ExecRequest, fds: _Fds, *, zygote: bool = False) -> list[str]:
        ours = {
            "PATH": self._path,
            "HOME": self._config.workdir,
            "USER": "sandbox",
            "LANG": "C.UTF-8",
            "TMPDIR": "/tmp",
        }
        env = {**environment.merge(self._config.environment, ours), **request.env}
        network = request.network or self._config.full_network
        if (network or request.egress is not None) and os.path.isfile(HOST_CA_BUNDLE):
            # /etc/ssl is mounted: tools with CA stores of their own (node, pip's certifi) should
            # trust what the host trusts, e.g. a TLS-inspecting proxy.
            env.update({name: HOST_CA_BUNDLE for name in CA_ENV if name not in env})
        spec = bwrap.CommandSpec(
            argv=request.argv,
            env=env,
            cwd=request.cwd or self._config.workdir,
            workdir=self._config.workdir,
            network=network,
            writable_libs=request.writable_libs,
            host_paths=self._runtime.host_paths,
            data_files=fds.data,
            seccomp_fd=fds.seccomp,
            status_fd=fds.status_w,
            block_fd=fds.block_r,
            links=self._links,
            scratch={CODE_DIR: self._config.limits.disk} if zygote else {},
            as_pid_1=zygote,
        )
        return [
            *bwrap.prlimit_argv(self._host.prlimit, self._rlimits),
            *bwrap.nsenter_argv(self._host.nsenter, self._holder_pid),
            *bwrap.sandbox_argv(self._host.bwrap, self._host.layout, self._paths, spec),
        ]


class _Fds:
    """The descriptors handed to one bwrap: seccomp program, data files, status and block pipes."""

    def __init__(self, seccomp: bytes, files: Mapping[str, bytes]) -> None:
        self._owned: list[int] = []
        self.seccomp = self._memfd("seccomp", seccomp)
        self.data = {path: self._memfd("file", content) for path, content in files.items()}
        self.status_r, self.status_w = os.pipe()
        self.block_r, self.block_w = os.pipe()
        self._owned += [self.status_w, self.block_r]

    def _memfd(self, name: str, content: bytes) -> int:
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        self._owned.append(fd)
        _write_all(fd, content)
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    @property
    def child_fds(self) -> tuple[int, ...]:
        return tuple(self._owned)

    def close_child_side(self) -> None:
        for fd in self._owned:
            os.close(fd)
        self._owned = []


def _write_all(fd: int, content: bytes) -> None:
    view = memoryview(content)
    while view:
        view = view[os.write(fd, view) :]


class _LocalProcess(Process):
    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        status: IO[bytes],
        block_w: int,
        cgroup: CgroupSet | None,
    ) -> None:
        self._popen = popen
        self._status = status
        self._block_w = block_w
        self._cgroup = cgroup
        self._child_pid = 0
        self._pid1 = -1
        """A pidfd of the sandbox's pid 1: readable once its whole pid namespace is gone."""
        self._selector = selectors.DefaultSelector()
        self._streams = {STDOUT: popen.stdout, STDERR: popen.stderr}
        for name, stream in self._streams.items():
            assert stream is not None
            os.set_blocking(stream.fileno(), False)
            self._selector.register(stream, selectors.EVENT_READ, name)
        self._status_seen: dict[str, int] = {}
        self._finished: ExitStatus | None = None

    @classmethod
    def start(
        cls,
        sandbox: LocalSandbox,
        request: ExecRequest,
        cgroup: CgroupSet | None,
        *,
        zygote: bool = False,
    ) -> _LocalProcess:
        fds = _Fds(sandbox._host.seccomp, request.files)
        stdin = _stdin_file(request.stdin)
        try:
            popen = subprocess.Popen(
                sandbox.command_argv(request, fds, zygote=zygote),
                stdin=(
                    subprocess.PIPE
                    if request.interactive
                    else stdin
                    if stdin is not None
                    else subprocess.DEVNULL
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=fds.child_fds,
                env={"PATH": BASE_PATH},
                start_new_session=True,
            )
        except BaseException:
            fds.close_child_side()
            os.close(fds.status_r)
            os.close(fds.block_w)
            raise
        finally:
            if stdin is not None:
                stdin.close()
        fds.close_child_side()
        process = cls(popen, os.fdopen(fds.status_r, "rb"), fds.block_w, cgroup)
        try:
            process._release(request)
        except BaseException:
            process.kill()
            raise
        return process

    def _release(self, request: ExecRequest) -> None:
        """Learn the sandbox's pid 1, attach it to the cgroup and open the egress gate in its
        network namespace, then let the command start."""
        line = _read_status_line(self._status, START_TIMEOUT)
        if line is None or "child-pid" not in line:
            os.close(self._block_w)
            self._block_w = -1
            self._popen.wait()
            stderr = self._popen.stderr.read() if self._popen.stderr else b""
            raise SandboxRuntimeError(
                "bubblewrap failed to start the sandbox: "
                + (stderr or b"").decode(errors="replace").strip()
            )
        self._child_pid = int(str(line["child-pid"]))
        with contextlib.suppress(OSError):  # gone already, or no pidfds: bwrap's exit must do
            self._pid1 = os.pidfd_open(self._child_pid)
        if request.egress is not None:
            request.egress.attach(self._child_pid)
        if self._cgroup is not None:
            self._cgroup.attach(self._popen.pid)
            self._cgroup.attach(self._child_pid)
        os.write(self._block_w, b"1")
        os.close(self._block_w)
        self._block_w = -1

    def read(self, timeout: float) -> tuple[int, bytes] | None:
        while self._selector.get_map():
            events = self._selector.select(max(0.0, timeout))
            if not events:
                return None
            for key, _ in events:
                try:
                    data = os.read(key.fd, READ_SIZE)
                except BlockingIOError:
                    continue
                if data:
                    return int(key.data), data
                self._selector.unregister(key.fileobj)
        return 0, b""

    def wait(self) -> ExitStatus:
        if self._finished is not None:
            return self._finished
        returncode = self._popen.wait()
        self._end_namespace()
        for line in _status_lines(self._status):
            self._status_seen.update({k: v for k, v in line.items() if isinstance(v, int)})
        out_of_memory = False
        if self._cgroup is not None:
            out_of_memory = self._cgroup.oom_killed()
            self._cgroup.remove()
        exit_code = self._status_seen.get("exit-code", returncode)
        self._finished = ExitStatus(exit_code=exit_code, out_of_memory=out_of_memory)
        self._cleanup()
        return self._finished

    def _end_namespace(self) -> None:
        """Wait until nothing of the sandbox is left, zombies included.

        bwrap exits as soon as its command does, while the sandbox's pid 1 may still be
        reaping what the command left (or be torn down with it); killing pid 1 makes the
        kernel end and reap the rest of its namespace, and pid 1 dies last.
        """
        if self._pid1 < 0:
            return
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(self._pid1, signal.SIGKILL)
        with selectors.DefaultSelector() as selector:
            selector.register(self._pid1, selectors.EVENT_READ)
            if not selector.select(KILL_GRACE):
                logger.warning("a sandbox's pid namespace outlived its command: %.0f s", KILL_GRACE)
        os.close(self._pid1)
        self._pid1 = -1

    def _kill_and_wait(self) -> None:
        """SIGKILL everything of the command and wait for bwrap; TimeoutExpired after
        about KILL_GRACE."""
        deadline = time.monotonic() + KILL_GRACE - 0.1
        if self._popen.poll() is None and self._child_pid:
            # The sandbox's pid 1: its death makes the kernel kill its whole pid namespace,
            # and bwrap reaps it only after every process in there is gone.
            with contextlib.suppress(OSError):
                if self._pid1 >= 0:
                    signal.pidfd_send_signal(self._pid1, signal.SIGKILL)
                else:
                    os.kill(self._child_pid, signal.SIGKILL)
        if self._cgroup is not None:
            self._cgroup.kill_all(timeout=max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, signal.SIGKILL)
        self._popen.wait(timeout=max(0.01, deadline - time.monotonic()))

    def kill(self) -> None:
        try:
            self._kill_and_wait()
        except subprocess.TimeoutExpired:
            # Something in there is stuck in the kernel: finish when it ends, say so now.
            threading.Thread(target=self._finish_kill, daemon=True).start()
            raise KillUnconfirmed(
                f"every process was sent SIGKILL, but the sandbox's pid namespace was not "
                f"gone after {KILL_GRACE:.0f} s (a process stuck in the kernel)"
            ) from None
        self._finish_kill()

    def _finish_kill(self) -> None:
        self._popen.wait()
        self._end_namespace()
        if self._cgroup is not None:
            self._cgroup.remove()
            self._cgroup = None
        if self._finished is None:
            self._finished = ExitStatus(exit_code=-signal.SIGKILL)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._pid1 >= 0:
            os.close(self._pid1)
            self._pid1 = -1
        if self._block_w >= 0:
            os.close(self._block_w)
            self._block_w = -1
        self._selector.close()
        for stream in (*self._streams.values(), self._status, self._popen.stdin):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class _LocalKernel(_LocalProcess, InteractiveProcess):
    """A long-lived command with its stdin open (a kernel): its own pid namespace and cgroup,
    so killing it kills everything it started and nothing else.

    `send` and `kill` may come from other threads while one thread reads: `kill` only
    signals and waits; the reader sees the output end and `wait()` releases the rest.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._send_lock = threading.Lock()
        self._kill_lock = threading.Lock()

    def send(self, data: bytes) -> None:
        stdin = self._popen.stdin
        if stdin is None:
            return
        with self._send_lock, contextlib.suppress(OSError, ValueError):
            stdin.write(data)
            stdin.flush()

    def kill(self) -> None:
        with self._kill_lock:
            if self._finished is not None:
                return
            try:
                self._kill_and_wait()
            except subprocess.TimeoutExpired:
                raise KillUnconfirmed(
                    f"every process of the kernel was sent SIGKILL, but its pid namespace was "
                    f"not gone after {KILL_GRACE:.0f} s (a process stuck in the kernel)"
                ) from None


def _stdin_file(data: bytes | None) -> IO[bytes] | None:
    if data is None:
        return None
    f = tempfile.TemporaryFile()  # noqa: SIM115 - handed to Popen, closed by the caller
    f.write(data)
    f.seek(0)
    return f


def _read_status_line(status: IO[bytes], timeout: float) -> dict[str, object] | None:
    """The first JSON document bwrap writes to its status fd, or None if it exited first."""
    with selectors.DefaultSelector() as selector:
        selector.register(status, selectors.EVENT_READ)
        if not selector.select(timeout):
            return None
    line = status.readline()
    if not line:
        return None
    parsed: dict[str, object] = json.loads(line)
    return parsed


def _read_ready(stdout: IO[bytes]) -> bool:
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        if not selector.select(START_TIMEOUT):
            return False
    return stdout.readline() == b"ready\n"


def _status_lines(status: IO[bytes]) -> list[dict[str, object]]:
    lines: list[dict[str, object]] = []
    for raw in status.read().splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(raw))
    return lines


def _wait_dead(pid: int, timeout: float) -> None:
    """Wait until process `pid` (not our child) is gone or a zombie, for up to `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
        except (OSError, IndexError):
            return
        time.sleep(0.002)
    logger.warning("the session holder's process %d did not end in time", pid)


def _remove_state(paths: bwrap.SessionPaths) -> None:
    for _ in range(50):
        try:
            shutil.rmtree(paths.state)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
    logger.warning("could not remove %s", paths.state)
