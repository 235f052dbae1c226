"""What Docker and Podman share: container spec, exec protocol, kill-everything, file transfer.

An engine module (docker.py, podman.py) only adapts its SDK to the small `Engine` interface;
everything else is here, once.

How a run works in a container:

* The container's pid 1 is an init (reaps zombies); its child is the killer (see
  `agent.protocol.KILLER_SCRIPT`), root with CAP_KILL alone, which we attach to. The code runs
  as the sandbox user without capabilities, so it can signal neither of them.
* Commands go through one long-lived exec, the run agent (see `backends/agent`), which also kills
  every process a run left behind when it ends.
* On timeout the killer SIGKILLs every process but itself and init (the agent too) and says
  when they are gone: no exec has to start, so a run that exhausted the container's processes
  cannot keep it from being stopped.
* Under gVisor the agent's output goes through relays (see `agent.protocol._RELAYS`).
* With an egress policy the container is off every network; the gate is opened in its
  network namespace (runc), or reached through a relay of ours in a root exec (gVisor, whose
  network stack the gate cannot enter: see `egress.relay`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from llm_sandbox import environment
from llm_sandbox.backends.agent.attached import prepare_script, spared_pids
from llm_sandbox.backends.agent.channel import ChannelStream, FrameStream
from llm_sandbox.backends.agent.host import AgentHost, ExecProcess
from llm_sandbox.backends.agent.killer import KILL_TIMEOUT, Killer
from llm_sandbox.backends.agent.protocol import (
    CA_BUNDLE,
    INSTALL_TMP,
    STDIN_FILE,
    agent_argv,
    killer_script,
    prepare,
    private_shell,
    spare_kill,
)
from llm_sandbox.backends.agent.tarexec import TarOverExec
from llm_sandbox.backends.base import (
    Backend,
    ExecRequest,
    InternalTimeout,
    KillUnconfirmed,
    NetworkGate,
    Process,
    run_to_completion,
)
from llm_sandbox.backends.container.attach import attached_spec
from llm_sandbox.backends.container.engine import Engine, resolve_image
from llm_sandbox.backends.container.options import ContainerOptions
from llm_sandbox.backends.container.spec import build_spec, is_gvisor
from llm_sandbox.config import SessionConfig
from llm_sandbox.egress.relay import RELAY_ARGV, RelayHost, start_relay
from llm_sandbox.exceptions import (
    BackendUnavailableError,
    ControlUnavailableError,
    SandboxRuntimeError,
    SessionStateError,
)
from llm_sandbox.language_handlers.base import RuntimeNeeds
from llm_sandbox.layout import BAKED_LIBS_DIR, LIBS_DIR, RUN_SCRIPT, SUPPORT_DIR

logger = logging.getLogger("llm_sandbox")

INSTALL_USER = "0:0"
OPEN_TIMEOUT = 30.0
"""Seconds the killer has to answer its first request, while the container starts."""
# The libraries live on a tmpfs that a commit does not capture: copy them into the image.
_BAKE_LIBS = (
    f"mkdir -p {BAKED_LIBS_DIR} && "
    f"if [ -d {LIBS_DIR} ]; then cp -R {LIBS_DIR}/. {BAKED_LIBS_DIR}/; fi"
)


def gate_problem(has_network: bool) -> str | None:
    """Why the egress gate cannot be a container's only way out, or None when it can."""
    if has_network:
        return (
            "the container has a network (runtime_config['network_mode']), so an egress gate "
            "would not be its only way out; drop network_mode to use an egress policy"
        )
    return None


GVISOR_NO_FORKS = (
    "gVisor lets the code open /proc/<pid>/fd of its user's processes even when they are not "
    "dumpable, so a fork server's pipes would be the code's to read and forge; each run "
    "starts its interpreter"
)


class ContainerSandbox(AgentHost, TarOverExec):
    def __init__(self, engine: Engine, config: SessionConfig, runtime: RuntimeNeeds) -> None:
        self._engine = engine
        self._config = config
        self._options = config.options(ContainerOptions)
        self._closed = False
        self._stopped: str | None = None
        """Why the container is gone, once it stopped under us (it is still removed at close)."""
        self._network_on = False
        self._relay: RelayHost | None = None
        self._container = ""
        self._libs_volume = ""
        self._built = False
        self.attached = self._options.container_id is not None
        """Whether the session runs in an existing container (kept running at close)."""
        if self.attached:
            self._attach(runtime)
        else:
            self._create(runtime)
        logger.debug("%s container %s from %s", engine.name, self._container[:12], self.image)

    def _create(self, runtime: RuntimeNeeds) -> None:
        engine, config = self._engine, self._config
        self.image, self._built = resolve_image(engine, config, runtime.image)
        self._libs_volume = f"llm-sandbox-libs-{uuid.uuid4().hex[:12]}"
        self.spec = build_spec(config, self.image, self._libs_volume)
        problem = gate_problem(self.spec.network)
        if config.egress is not None and problem:
            raise ControlUnavailableError(problem)
        engine.create_volume(self._libs_volume, self.spec.options["labels"])
        try:
            self._container = engine.create(self.spec)
        except BaseException:
            self.close()
            raise
        self._network_on = self.spec.network
        self._relay_output = is_gvisor(self.spec.options.get("runtime"))
        try:
            if not engine.honours_tmpfs_mode:
                # root (the tmpfs owner) opens the work directory up; no capability needed.
                dirs = [self.spec.workdir, SUPPORT_DIR]
                code, _ = self._internal(["chmod", "1777", *dirs], user="0:0")
                if code != 0:
                    raise SandboxRuntimeError(f"could not make {' and '.join(dirs)} writable")
            killer = Killer(self._attach_killer, self._check_running, fallback=self._exec_kill)
            self._killer = killer
            killer.ping(OPEN_TIMEOUT)
        except BaseException:
            self.close()
            raise

    def _attach(self, runtime: RuntimeNeeds) -> None:
        """Run in the existing container `container_id` (see `attach.py`)."""
        found = self._engine.adopt(str(self._options.container_id))
        self._container = found.id
        self.image = found.image
        if self._options.image and self._options.image != found.image:
            logger.warning(
                "image=%s is not used: the session runs in container %s (image %s)",
                self._options.image,
                found.id[:12],
                found.image,
            )
        self.spec = attached_spec(self._config, found)
        self._network_on = self.spec.network
        self._relay_output = is_gvisor(found.runtime)
        try:
            code, out = self._internal(["sh", "-c", prepare_script(self.spec.workdir)], user="0:0")
            if code != 0:
                raise SandboxRuntimeError(
                    f"could not create {self.spec.workdir} and {SUPPORT_DIR} in container "
                    f"{found.id[:12]}; its file system must be writable by root there"
                )
            spare = spared_pids(out)
            killer = Killer(
                lambda: self._exec_killer(spare),
                self._check_running,
                same_user=True,
                resident=spare,
            )
            self._killer = killer
            killer.ping(OPEN_TIMEOUT)
        except BaseException:
            self.close()
            raise

    def _exec_killer(self, spare: tuple[int, ...]) -> ChannelStream:
        """A killer of root in an exec of its own (an attached container's main process is
        not ours), sparing what the container ran before the session."""
        argv = private_shell(killer_script(outlive_stdin=False, spare=spare), "llm-sandbox-killer")
        _, sock, ahead = self._exec_start(self._container, argv, {}, "/", INSTALL_USER)
        return FrameStream(sock, ahead)

    def exec(self, request: ExecRequest) -> Process:
        if self._closed:
            raise SessionStateError("the sandbox is closed")
        if self._stopped:
            raise SandboxRuntimeError(self._stopped)
        wanted = request.network or self.spec.network
        if wanted != self._network_on:
            self._engine.set_network(self._container, wanted)
            self._network_on = wanted
        if request.egress is not None:
            self._attach_gate(request.egress)
        forked = self._forked(request)
        if forked is not None:
            return forked
        if request.interactive:
            return self.start_kernel(request, self.spec.workdir)
        script, payload = prepare(request, self.spec.workdir, under_agent=not request.writable_libs)
        if request.writable_libs:
            return self._install_exec(script, payload)
        return self.start_run(script, payload)

    def _run_workdir(self) -> str:
        return self.spec.workdir

    def warm_runs(self, env: Mapping[str, str]) -> str | None:
        if is_gvisor(self.spec.options.get("runtime")):
            return GVISOR_NO_FORKS
        return super().warm_runs(env)

    def _attach_gate(self, gate: NetworkGate) -> None:
        """The egress gate listens in the container's network namespace (loopback only);
        under gVisor, whose network stack it cannot enter, and for a caller who may not enter
        it (not root: a docker group member, rootless Podman), through a relay
        (`egress.relay`), which then serves the rest of the session."""
        problem = gate_problem(self._network_on)
        if problem:
            raise ControlUnavailableError(problem)
        if self._relay is not None or is_gvisor(self.spec.options.get("runtime")):
            self._start_relay(gate)
            return
        pid = int(self._engine.container_state(self._container).get("Pid") or 0)
        if pid <= 0:
            self._check_running()
            raise SandboxRuntimeError("the container's process cannot be found on this host")
        try:
            gate.attach(pid)
        except ControlUnavailableError as cannot_enter:
            try:
                self._start_relay(gate)
            except ControlUnavailableError as no_relay:
                raise ControlUnavailableError(f"{cannot_enter}; {no_relay}") from no_relay
            logger.debug("egress gate relayed into %s: %s", self._container[:12], cannot_enter)

    def kill_all(self, timeout: float = KILL_TIMEOUT, *, patient: bool = False) -> None:
        """As for every agent sandbox; the kill takes the gate's relay too, so the next command
        starts a new one (its end may not have reached us by then)."""
        if self._relay is not None:
            self._relay.close()
        super().kill_all(timeout, patient=patient)

    def _start_relay(self, gate: NetworkGate) -> None:
        """The session's relay, as root (the code cannot signal it); started again when a
        timeout's kill-everything ended it."""
        if self._relay is not None and self._relay.answers():
            return
        if self._relay is not None:
            self._relay.close()
        _, sock, ahead = self._exec_start(self._container, RELAY_ARGV, {}, "/", INSTALL_USER)
        self._relay = start_relay(FrameStream(sock, ahead), gate.serve)

    def _exec_start(
        self, container: str, argv: Sequence[str], env: Mapping[str, str], cwd: str, user: str
    ) -> tuple[str, socket.socket, bytes]:
        """Start an exec; if the container has died meanwhile, say that rather than 409."""
        try:
            return self._engine.exec_start(container, argv, env, cwd, user)
        except SandboxRuntimeError:
            self._check_running()
            raise

    def _check_running(self) -> None:
        state = self._engine.container_state(self._container)
        if state.get("Running"):
            return
        self._drop_agent()
        self._stopped = stopped_message(state, gvisor=self._relay_output)
        raise SandboxRuntimeError(self._stopped)

    def _install_exec(self, script: str, payload: bytes) -> Process:
        """Installs run as root in an exec of their own: only they may write the libraries."""
        self._settle()
        exec_id, sock, ahead = self._exec_start(
            self._container,
            ["sh", "-c", script],
            {},
            "/",
            INSTALL_USER,
        )
        stream = FrameStream(sock, ahead)
        stream.send(payload)

        def cleanup() -> None:
            # What the install left running (root's), and the agent with it; then its scratch.
            self.kill_all()
            # root's files in the sticky support directory: the code's user cannot remove them
            leftovers = [INSTALL_TMP, CA_BUNDLE, f"{STDIN_FILE}-install"]
            self._internal(["rm", "-rf", *leftovers], user=INSTALL_USER)

        def finish() -> int:
            code = _wait_exit_code(self._engine, exec_id, 30.0)
            cleanup()
            return code

        return ExecProcess(stream, finish, on_kill=cleanup)

    def _open_agent(self, script_path: str = RUN_SCRIPT) -> ChannelStream:
        ours = {"HOME": self.spec.workdir, "LANG": "C.UTF-8"}
        base_env = environment.merge(self._config.environment, ours)
        # In a container of ours the limits are the container's (see spec.py).
        limits = self._config.limits if self.attached else None
        argv = agent_argv(relay_output=self._relay_output, limits=limits, script_path=script_path)
        _, sock, ahead = self._exec_start(
            self._container, argv, base_env, self.spec.workdir, self.spec.user
        )
        return FrameStream(sock, ahead)

    def _exec_kill(self, timeout: float, spare: Sequence[str] = ()) -> None:
        """Kill from a root exec (CAP_KILL), sparing the killer (and `spare`): for when its
        stdin is gone."""
        assert self._killer is not None
        if not self._killer.pid:
            raise KillUnconfirmed("the sandbox's killer cannot be reached")
        try:
            _, out = self._internal(
                ["sh", "-c", spare_kill(self._killer.pid, spare)],
                user=INSTALL_USER,
                timeout=timeout,
            )
        except InternalTimeout as exc:
            raise KillUnconfirmed(f"the kill was not confirmed within {timeout:.1f} s") from exc
        result = out.decode(errors="replace").strip()
        if result != "ok":
            raise KillUnconfirmed(
                f"every process was sent SIGKILL, but process {result or '?'} was still alive"
            )

    def _attach_killer(self) -> ChannelStream:
        try:
            sock, ahead = self._engine.attach(self._container)
        except SandboxRuntimeError:
            self._check_running()
            raise
        return FrameStream(sock, ahead)

    def _internal(
        self, argv: Sequence[str], user: str | None = None, timeout: float = 30.0
    ) -> tuple[int, bytes]:
        """Run one of our own commands in a separate exec to completion; (exit code, stdout)."""
        exec_id, sock, ahead = self._exec_start(
            self._container, argv, {}, "/", user or self.spec.user
        )
        process = ExecProcess(
            FrameStream(sock, ahead), lambda: _wait_exit_code(self._engine, exec_id, 30.0)
        )
        code, out, _ = run_to_completion(process, timeout=timeout)
        return code, out

    def commit(self) -> str:
        """Save the container as a new image, with installed libraries baked in."""
        code, _ = self._internal(["sh", "-c", _BAKE_LIBS], user="0:0")
        if code != 0:
            raise SandboxRuntimeError("could not save the installed libraries into the image")
        repository, tag = _commit_target(self.image, self._options.commit_image_tag)
        self.committed_image = self._engine.commit(self._container, repository, tag)
        return self.committed_image

    def handle(self) -> object | None:
        """The engine SDK's container object."""
        return self._engine.container_object(self._container) if self._container else None

    def close(self) -> None:
        if self._closed:
            return
        self._stop_forks()  # a stopped sandbox's server: only its connection to close
        self._closed = True
        if self._relay is not None:
            self._relay.close()
        if self.attached:
            self._detach()
            return
        self._drop_agent()
        self._close_killer()
        try:
            if self._options.commit_container and self._container and not self._stopped:
                self.commit()
        finally:
            try:
                self._remove()
            except BackendUnavailableError as exc:
                # close() must work while the engine is away (a daemon restart); what it
                # cannot remove now has stopped with the engine, and gc removes that later.
                logger.warning(
                    "could not remove container %s and volume %s (%s); run `llm-sandbox gc` "
                    "once %s answers again",
                    self._container[:12],
                    self._libs_volume,
                    exc,
                    self._engine.name,
                )
            if self._built and not self._options.keep_template:
                with contextlib.suppress(Exception):
                    self._engine.remove_image(self.image)
            self._engine.close()

    def _detach(self) -> None:
        """Close an attached session: what its runs left is killed, the container runs on."""
        try:
            if self._killer is not None and not self._stopped:
                with contextlib.suppress(SandboxRuntimeError):
                    self.kill_all()
            self._close_killer()
            if self._killer is not None and self._killer.pid and not self._stopped:
                # Its stdin closed, it exits; but an engine may take its time to tell it
                # (gVisor), and the container is not ours to leave it in.
                with contextlib.suppress(SandboxRuntimeError):
                    self._internal(["kill", "-9", str(self._killer.pid)], user=INSTALL_USER)
            if self._options.commit_container and not self._stopped:
                self.commit()
        finally:
            self._engine.close()

    def _remove(self) -> None:
        """Remove the container and its volume; a connection an engine restart broke is
        tried once more (the SDK's pool hands it out again before it notices)."""
        for attempt in (1, 2):
            try:
                if self._container:
                    self._engine.remove(self._container)
                with contextlib.suppress(SandboxRuntimeError):
                    self._engine.remove_volume(self._libs_volume)
                return
            except BackendUnavailableError:
                if attempt == 2:
                    raise


def stopped_message(state: Mapping[str, Any], *, gvisor: bool) -> str:
    """Why a container is no longer running, and what to do (from the engine's State)."""
    if not state:
        return (
            "the container is gone (removed from outside the session); everything in it is "
            "gone, so open a new session"
        )
    code = state.get("ExitCode")
    why = f"the container stopped (exit code {code})"
    if state.get("OOMKilled"):
        why = f"the container stopped after running out of memory (exit code {code})"
        if gvisor:
            why += (
                "; under gVisor that ends the whole sandbox: its kernel cannot kill one "
                "process alone, and each process costs it about 4.5 MiB of host memory, so "
                "many processes (a fork bomb) run out too. Raise limits.memory or lower "
                "limits.processes to keep such runs alive"
            )
    elif gvisor and code == 2:
        why = (
            "the gVisor sandbox stopped (its kernel exited with code 2, as it does when it "
            "cannot create host threads: under a fork storm its host threads outgrow the "
            "container's pids_limit)"
        )
    return f"{why}; everything in it is gone, so open a new session"


def _wait_exit_code(engine: Engine, exec_id: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        code = engine.exec_exit_code(exec_id)
        if code is not None:
            return code
        if time.monotonic() > deadline:
            raise SandboxRuntimeError(f"exec {exec_id[:12]} did not report an exit code")
        time.sleep(0.005)


def _commit_target(image: str, wanted: str | None) -> tuple[str, str]:
    """(repository, tag) to commit to: `wanted` (`repo[:tag]`, tag "latest" by default), else
    the image's repository with a fresh `session-…` tag (never overwriting the image)."""
    name = wanted or image
    last = name.rsplit("/", 1)[-1]
    repository, tag = name.rsplit(":", 1) if ":" in last else (name, "")
    if wanted:
        return repository, tag or "latest"
    return repository, f"session-{uuid.uuid4().hex[:12]}"


class EngineBackend(Backend):
    """Opens container sandboxes through one engine's adapter (`docker.py`, `podman.py`)."""

    def __init__(
        self, name: str, engine: Callable[..., Engine], default_client: Callable[[], Any]
    ) -> None:
        self.name = name
        self._engine = engine
        self._default_client = default_client

    def open(self, config: SessionConfig, runtime: RuntimeNeeds) -> ContainerSandbox:
        given = config.options(ContainerOptions).client
        engine = self._engine(given or self._default_client(), owns_client=given is None)
        try:
            return ContainerSandbox(engine, config, runtime)
        except BaseException:
            engine.close()
            raise
