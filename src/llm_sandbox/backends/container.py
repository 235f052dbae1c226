"""What Docker and Podman share: container spec, exec protocol, kill-everything, file transfer.

An engine module (docker.py, podman.py) only adapts its SDK to the small `Engine` interface;
everything else is here, once.

How a run works in a container:

* The container's pid 1 is an init (reaps zombies) running `sleep infinity` as root with no
  capabilities; the code runs as the sandbox user, so it cannot signal pid 1.
* Commands go through one long-lived exec, the run agent (see `agent.py`), which also kills
  every process a run left behind when it ends.
* On timeout a separate exec SIGKILLs every process of the sandbox user (agent included), so
  everything the run started is dead before the timeout is reported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_sandbox.backends import agent
from llm_sandbox.backends.base import (
    BAKED_LIBS_DIR,
    LIBS_DIR,
    SUPPORT_DIR,
    ExecRequest,
    Process,
    RuntimeNeeds,
    run_to_completion,
)
from llm_sandbox.backends.seccomp import oci_profile
from llm_sandbox.backends.tarexec import TarOverExec
from llm_sandbox.config import ResourceLimits, SessionConfig, parse_size
from llm_sandbox.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    ImageBuildError,
    SandboxRuntimeError,
    SessionStateError,
)

logger = logging.getLogger("llm_sandbox")

LABEL = "io.llm-sandbox"
SANDBOX_USER = "1000:1000"
KEEPER_USER = "65534:65534"
INSTALL_USER = "0:0"
READ_SIZE = 65536

RUN_SCRIPT = f"{SUPPORT_DIR}/run.sh"
# The libraries live on a tmpfs that a commit does not capture: copy them into the image.
_BAKE_LIBS = (
    f"mkdir -p {BAKED_LIBS_DIR} && "
    f"if [ -d {LIBS_DIR} ]; then cp -R {LIBS_DIR}/. {BAKED_LIBS_DIR}/; fi"
)
INSTALL_TMP = agent.INSTALL_TMP
# gVisor runs the code in a user-space kernel (the Sentry) whose host threads and per-process
# stubs share the container's pids cgroup. Measured with runsc's ptrace platform: about 56 at
# rest; a fork bomb under RLIMIT_NPROC n peaks at 361 (n=16), 1163 (n=64), 1848 (n=128). A
# Sentry that cannot create a thread panics and takes the whole sandbox down, so under gVisor
# the host limit budgets the Sentry (about twice those peaks), and the process limit itself
# is RLIMIT_NPROC, which gVisor enforces inside the sandbox.
GVISOR_HOST_PIDS_BASE = 512
GVISOR_HOST_PIDS_PER_PROCESS = 24


@dataclass
class ContainerSpec:
    """Engine-neutral description of the session container (Docker SDK argument names)."""

    image: str
    workdir: str
    user: str
    network: bool
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the SDK's `containers.create`."""
    isolate: bool = False
    """Disconnect the container from its network between create and start."""


def build_spec(config: SessionConfig, image: str, libs_volume: str) -> ContainerSpec:
    """Secure defaults, then the user's runtime_config on top (explicit opt-outs win)."""
    rc = dict(config.runtime_config)  # keys were validated by SessionConfig.build
    limits = config.limits
    workdir = str(rc.pop("working_dir", config.workdir))
    user = str(rc.pop("user", SANDBOX_USER))
    network_mode = rc.pop("network_mode", None)
    network = config.network or network_mode not in (None, "none")
    environment = {**config.environment, **dict(rc.pop("environment", {}) or {})}
    tmpfs = f"rw,exec,size={limits.disk},nr_inodes={limits.max_files}"
    options: dict[str, Any] = {
        "entrypoint": ["sleep", "infinity"],
        "init": True,
        # pid 1 (init + sleep) runs as a user of its own: neither the code's user nor root (which
        # installs libraries) can signal it without capabilities, so no kill loop can end it.
        "user": KEEPER_USER,
        "cap_drop": ["ALL"],
        # Our seccomp policy (the one the embedded backend uses), not the engine's default.
        "security_opt": ["no-new-privileges:true", f"seccomp={json.dumps(oci_profile())}"],
        # A committed container must be able to keep what install() put there.
        "read_only": not config.commit_container,
        "tmpfs": {
            workdir: f"{tmpfs},mode=1777{_owner_options(user)}",
            "/tmp": f"{tmpfs},mode=1777",
            SUPPORT_DIR: f"{tmpfs},mode=1777{_owner_options(user)}",
        },
        "environment": environment,
        "labels": {LABEL: "1", f"{LABEL}.pid": str(os.getpid())},
        # Created on the default bridge and, unless the session wants network, disconnected
        # before it starts: that leaves only loopback, yet lets install() connect for a while
        # (a container created with network "none" can never be connected).
        "network_mode": network_mode or "bridge",
        # Installed libraries live on disk, not in memory: written by root, read-only to code.
        "volumes": {libs_volume: {"bind": LIBS_DIR, "mode": "rw"}, **rc.pop("volumes", {})},
    }
    options.update(_limit_options(limits, rc, gvisor=is_gvisor(rc.get("runtime"))))
    options.update(rc)
    if "memory" in options:
        options["mem_limit"] = options.pop("memory")
    return ContainerSpec(
        image=image,
        workdir=workdir,
        user=user,
        network=network,
        options=options,
        isolate=network_mode is None and not network,
    )


def _owner_options(user: str) -> str:
    """tmpfs options making the work directory the exec user's own (Docker honours these)."""
    uid, _, gid = user.partition(":")
    if not uid.isdigit():
        return ""
    return f",uid={uid},gid={gid or uid}" if (gid or uid).isdigit() else f",uid={uid}"


def is_gvisor(runtime: object) -> bool:
    """Whether an OCI runtime name means gVisor (its binary and usual runtime name: runsc)."""
    return isinstance(runtime, str) and ("runsc" in runtime or "gvisor" in runtime)


def _limit_options(limits: ResourceLimits, rc: dict[str, Any], *, gvisor: bool) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if limits.memory is not None and "memory" not in rc and "mem_limit" not in rc:
        options["mem_limit"] = limits.memory
        options["memswap_limit"] = limits.memory
    elif "memswap_limit" not in rc and ("memory" in rc or "mem_limit" in rc):
        memory: int | str = rc.get("mem_limit", rc.get("memory", 0))
        options["memswap_limit"] = parse_size(memory, "runtime_config['memory']")
    rlimits = {"nofile": limits.open_files, "core": 0}
    if gvisor:
        # A pids_limit the user gave means their process limit here too.
        processes = rc.pop("pids_limit", limits.processes)
        if processes is not None:
            options["pids_limit"] = GVISOR_HOST_PIDS_BASE + GVISOR_HOST_PIDS_PER_PROCESS * processes
            rlimits["nproc"] = processes
    elif limits.processes is not None:
        options["pids_limit"] = limits.processes
    if limits.file_size is not None:
        rlimits["fsize"] = limits.file_size
    if limits.cpu_time is not None:
        rlimits["cpu"] = limits.cpu_time
    options["ulimits"] = [{"Name": n, "Soft": v, "Hard": v} for n, v in sorted(rlimits.items())]
    if limits.cpus is not None:
        options["nano_cpus"] = int(limits.cpus * 1e9)
    if "cpu_count" in rc:
        options["nano_cpus"] = int(rc.pop("cpu_count")) * 1_000_000_000
    return options


class Engine(ABC):
    """The engine-specific operations; implemented by docker.py and podman.py."""

    name: str

    @abstractmethod
    def create(self, spec: ContainerSpec) -> str:
        """Create and start the session container; returns its id."""

    @abstractmethod
    def exec_start(
        self, container: str, argv: Sequence[str], env: Mapping[str, str], cwd: str, user: str
    ) -> tuple[str, socket.socket, bytes]:
        """Start an attached exec; returns (exec id, raw socket, bytes already read)."""

    @abstractmethod
    def exec_exit_code(self, exec_id: str) -> int | None:
        """The exec's exit code, or None while it is still running."""

    @abstractmethod
    def container_state(self, container: str) -> dict[str, Any]:
        """The engine's State of the container (`Running`, `OOMKilled`, `ExitCode`, ...)."""

    @abstractmethod
    def create_volume(self, name: str, labels: Mapping[str, str]) -> None: ...

    @abstractmethod
    def remove_volume(self, name: str) -> None: ...

    @abstractmethod
    def set_network(self, container: str, enabled: bool) -> None:
        """Connect the container to the default network, or disconnect it."""

    @abstractmethod
    def remove(self, container: str) -> None:
        """Kill and remove the container without a stop grace period."""

    @abstractmethod
    def commit(self, container: str, repository: str, tag: str) -> str:
        """Save the container's file system as a new image; returns its name."""

    @abstractmethod
    def image_exists(self, image: str) -> bool: ...

    @abstractmethod
    def build_image(self, context: Path, dockerfile: str, tag: str) -> None: ...

    @abstractmethod
    def remove_image(self, image: str) -> None: ...

    honours_tmpfs_mode = True
    """False when the engine ignores a tmpfs mount's mode and owner (Podman copies the image's)."""


@contextlib.contextmanager
def map_engine_errors(action: str, engine: str, errors: Any) -> Iterator[None]:
    """Translate an engine SDK's errors into ours, at the backend boundary only.

    `errors` is the SDK's errors module: the Docker and Podman SDKs name their exceptions
    alike (BuildError, ImageNotFound, APIError, DockerException).
    """
    try:
        yield
    except errors.BuildError as exc:
        raise ImageBuildError(f"{action} failed: {exc}") from exc
    except errors.ImageNotFound as exc:
        raise ConfigurationError(f"{action}: image not found ({exc})") from exc
    except errors.APIError as exc:
        raise SandboxRuntimeError(f"{action}: {exc.explanation or exc}") from exc
    except (errors.DockerException, OSError) as exc:
        raise BackendUnavailableError(f"{action}: {engine} is not reachable ({exc})") from exc


class SdkEngine(Engine):
    """What the Docker and Podman SDKs spell the same way."""

    client: Any
    errors: Any
    """The SDK's errors module, for `map_engine_errors`."""

    def build_image(self, context: Path, dockerfile: str, tag: str) -> None:
        with map_engine_errors(f"building {dockerfile}", self.name, self.errors):
            self.client.images.build(
                path=str(context), dockerfile=dockerfile, tag=tag, rm=True, forcerm=True
            )

    def remove_image(self, image: str) -> None:
        with map_engine_errors(f"removing image {image}", self.name, self.errors):
            self.client.images.remove(image, force=True)


def resolve_image(engine: Engine, config: SessionConfig, default: str | None) -> tuple[str, bool]:
    """The image to run, building `dockerfile` if given; (name, built for this session)."""
    if config.dockerfile:
        path = Path(config.dockerfile)
        if not path.is_file():
            raise ConfigurationError(f"dockerfile {config.dockerfile!r} does not exist")
        tag = f"localhost/llm-sandbox-build:{uuid.uuid4().hex[:12]}"
        engine.build_image(path.parent.resolve(), path.name, tag)
        return tag, True
    image = config.image or default
    if image is None:
        raise ConfigurationError(f"no image for language {config.lang!r}; pass image=")
    if not engine.image_exists(image):
        if config.image:
            message = f"image {image!r} is not available locally to {engine.name}; build or load it"
        else:
            message = (
                f"the default {config.lang} image {image!r} is not built yet; run: "
                f"llm-sandbox images build {config.lang} --engine {engine.name}"
            )
        raise ConfigurationError(message)
    return image, False


class UnixHttp:
    """Just enough HTTP/1.1 on an engine's unix socket to hijack an exec-start connection.

    Both engines serve Docker's `POST /exec/{id}/start` with `Upgrade: tcp`; after the reply
    headers the connection carries the multiplexed stream, and stdin goes the other way.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        sock.connect(self.path)
        return sock

    def _send(self, sock: socket.socket, method: str, url: str, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        head = (
            f"{method} {url} HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        )
        sock.sendall(head.encode() + payload)

    @staticmethod
    def _read_head(sock: socket.socket) -> tuple[int, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise SandboxRuntimeError("the engine closed the connection")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, rest

    def hijack(self, url: str, body: dict[str, Any]) -> tuple[socket.socket, bytes]:
        sock = self._connect()
        self._send(sock, "POST", url, body)
        status, rest = self._read_head(sock)
        if status not in (101, 200):
            sock.close()
            raise SandboxRuntimeError(f"exec start failed with HTTP {status}: {rest[:300]!r}")
        sock.settimeout(None)
        return sock, rest


class ContainerSandbox(TarOverExec, agent.AgentHost):
    def __init__(self, engine: Engine, config: SessionConfig, runtime: RuntimeNeeds) -> None:
        self._engine = engine
        self._config = config
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
        script, payload = agent.prepare(
            request, self.spec.workdir, under_agent=not request.writable_libs
        )
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
        stream = agent.FrameStream(sock, ahead)
        stream.send(payload)
        cleanup = ["sh", "-c", f"{agent.KILL_ALL}; rm -rf {INSTALL_TMP}"]

        def finish() -> int:
            code = _wait_exit_code(self._engine, exec_id, 30.0)
            self._internal(cleanup, user=INSTALL_USER)
            return code

        def kill() -> None:
            self._internal(cleanup, user=INSTALL_USER)

        return agent.ExecProcess(stream, finish, on_kill=kill)

    def _open_agent(self) -> agent.ChannelStream:
        base_env = {"HOME": self.spec.workdir, "LANG": "C.UTF-8"}
        argv = ["sh", "-c", agent.AGENT_SCRIPT, RUN_SCRIPT]
        _, sock, ahead = self._exec_start(
            self._container, argv, base_env, self.spec.workdir, self.spec.user
        )
        return agent.FrameStream(sock, ahead)

    def _internal(self, argv: Sequence[str], user: str | None = None) -> tuple[int, bytes]:
        """Run one of our own commands in a separate exec to completion; (exit code, stdout)."""
        exec_id, sock, ahead = self._exec_start(
            self._container, argv, {}, "/", user or self.spec.user
        )
        process = agent.ExecProcess(
            agent.FrameStream(sock, ahead), lambda: _wait_exit_code(self._engine, exec_id, 30.0)
        )
        code, out, _ = run_to_completion(process, timeout=30.0)
        return code, out

    def commit(self) -> str:
        """Save the container as a new image, with installed libraries baked in."""
        code, _ = self._internal(["sh", "-c", _BAKE_LIBS], user="0:0")
        if code != 0:
            raise SandboxRuntimeError("could not save the installed libraries into the image")
        tag = f"session-{uuid.uuid4().hex[:12]}"
        repository = (
            self.image.rsplit(":", 1)[0] if ":" in self.image.split("/")[-1] else self.image
        )
        self.committed_image = self._engine.commit(self._container, repository, tag)
        return self.committed_image

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._drop_agent()
        try:
            if self._config.commit_container and self._container and not self._stopped:
                self.commit()
        finally:
            if self._container:
                self._engine.remove(self._container)
            with contextlib.suppress(SandboxRuntimeError):
                self._engine.remove_volume(self._libs_volume)
            if self._built and not self._config.keep_template:
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
