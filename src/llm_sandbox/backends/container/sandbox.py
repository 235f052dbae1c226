"""What Docker and Podman share: container spec, exec protocol, kill-everything, file transfer.

An engine module (docker.py, podman.py) only adapts its SDK to the small `Engine` interface;
everything else is here, once.

How a run works in a container:

* The container's pid 1 is an init (reaps zombies) running `sleep infinity` as root with no
  capabilities; the code runs as the sandbox user, so it cannot signal pid 1.
* Commands go through one long-lived exec, the run agent (see `backends/agent`), which also kills
  every process a run left behind when it ends.
* On timeout a separate exec SIGKILLs every process of the sandbox user (agent included), so
  everything the run started is dead before the timeout is reported.
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
from llm_sandbox.backends.agent.channel import ChannelStream, FrameStream
from llm_sandbox.backends.agent.host import AgentHost, ExecProcess
from llm_sandbox.backends.agent.protocol import AGENT_ARGV, INSTALL_TMP, KILL_ALL, prepare
from llm_sandbox.backends.agent.tarexec import TarOverExec
from llm_sandbox.backends.base import Backend, ExecRequest, Process, run_to_completion
from llm_sandbox.backends.container.engine import Engine, resolve_image
from llm_sandbox.backends.container.options import ContainerOptions
from llm_sandbox.backends.container.spec import build_spec
from llm_sandbox.config import SessionConfig
from llm_sandbox.exceptions import SandboxRuntimeError, SessionStateError
from llm_sandbox.language_handlers.base import RuntimeNeeds
from llm_sandbox.layout import BAKED_LIBS_DIR, LIBS_DIR, SUPPORT_DIR

logger = logging.getLogger("llm_sandbox")

INSTALL_USER = "0:0"
# The libraries live on a tmpfs that a commit does not capture: copy them into the image.
_BAKE_LIBS = (
    f"mkdir -p {BAKED_LIBS_DIR} && "
    f"if [ -d {LIBS_DIR} ]; then cp -R {LIBS_DIR}/. {BAKED_LIBS_DIR}/; fi"
)


class ContainerSandbox(TarOverExec, AgentHost):
    def __init__(self, engine: Engine, config: SessionConfig, runtime: RuntimeNeeds) -> None:
        self._engine = engine
        self._config = config
        self._options = config.options(ContainerOptions)
        self._closed = False
        self._stopped: str | None = None
        """Why the container is gone, once it stopped under us (it is still removed at close)."""
        self._network_on = False
        self.image, self._built = resolve_image(engine, config, runtime.image)
        self._libs_volume = f"llm-sandbox-libs-{uuid.uuid4().hex[:12]}"
        self.spec = build_spec(config, self.image, self._libs_volume)
        engine.create_volume(self._libs_volume, self.spec.options["labels"])
        self._container = ""
        try:
            self._container = engine.create(self.spec)
        except BaseException:
            self.close()
            raise
        self._network_on = self.spec.network
        if not engine.honours_tmpfs_mode:
            # pid 1's user (root, the tmpfs owner) opens the work directory up; no caps needed.
            dirs = [self.spec.workdir, SUPPORT_DIR]
            code, _ = self._internal(["chmod", "1777", *dirs], user="0:0")
            if code != 0:
                self.close()
                raise SandboxRuntimeError(f"could not make {' and '.join(dirs)} writable")
        logger.debug("%s container %s from %s", engine.name, self._container[:12], self.image)

    def exec(self, request: ExecRequest) -> Process:
        if self._closed:
            raise SessionStateError("the sandbox is closed")
        if self._stopped:
            raise SandboxRuntimeError(self._stopped)
        wanted = request.network or self.spec.network
        if wanted != self._network_on:
            self._engine.set_network(self._container, wanted)
            self._network_on = wanted
        script, payload = prepare(request, self.spec.workdir, under_agent=not request.writable_libs)
        if request.writable_libs:
            return self._install_exec(script, payload)
        return self.start_run(script, payload)

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
        oom = " after running out of memory" if state.get("OOMKilled") else ""
        self._stopped = (
            f"the container stopped{oom} (exit code {state.get('ExitCode')}); "
            "everything in it is gone, so open a new session"
        )
        raise SandboxRuntimeError(self._stopped)

    def _install_exec(self, script: str, payload: bytes) -> Process:
        """Installs run as root in an exec of their own: only they may write the libraries."""
        exec_id, sock, ahead = self._exec_start(
            self._container,
            ["sh", "-c", script],
            {},
            "/",
            INSTALL_USER,
        )
        stream = FrameStream(sock, ahead)
        stream.send(payload)
        cleanup = ["sh", "-c", f"{KILL_ALL}; rm -rf {INSTALL_TMP}"]

        def finish() -> int:
            code = _wait_exit_code(self._engine, exec_id, 30.0)
            self._internal(cleanup, user=INSTALL_USER)
            return code

        def kill() -> None:
            self._internal(cleanup, user=INSTALL_USER)

        return ExecProcess(stream, finish, on_kill=kill)

    def _open_agent(self) -> ChannelStream:
        ours = {"HOME": self.spec.workdir, "LANG": "C.UTF-8"}
        base_env = environment.merge(self._config.environment, ours)
        argv = list(AGENT_ARGV)
        _, sock, ahead = self._exec_start(
            self._container, argv, base_env, self.spec.workdir, self.spec.user
        )
        return FrameStream(sock, ahead)

    def _internal(self, argv: Sequence[str], user: str | None = None) -> tuple[int, bytes]:
        """Run one of our own commands in a separate exec to completion; (exit code, stdout)."""
        exec_id, sock, ahead = self._exec_start(
            self._container, argv, {}, "/", user or self.spec.user
        )
        process = ExecProcess(
            FrameStream(sock, ahead), lambda: _wait_exit_code(self._engine, exec_id, 30.0)
        )
        code, out, _ = run_to_completion(process, timeout=30.0)
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
        self._closed = True
        self._drop_agent()
        try:
            if self._options.commit_container and self._container and not self._stopped:
                self.commit()
        finally:
            if self._container:
                self._engine.remove(self._container)
            with contextlib.suppress(SandboxRuntimeError):
                self._engine.remove_volume(self._libs_volume)
            if self._built and not self._options.keep_template:
                with contextlib.suppress(Exception):
                    self._engine.remove_image(self.image)


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
        self, name: str, engine: Callable[[Any], Engine], default_client: Callable[[], Any]
    ) -> None:
        self.name = name
        self._engine = engine
        self._default_client = default_client

    def open(self, config: SessionConfig, runtime: RuntimeNeeds) -> ContainerSandbox:
        client = config.options(ContainerOptions).client or self._default_client()
        return ContainerSandbox(self._engine(client), config, runtime)
