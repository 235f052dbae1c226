"""The engine interface Docker and Podman adapt their SDKs to, and what they share.

`Engine` is the few engine-specific operations; `SdkEngine` what both SDKs spell alike;
`map_engine_errors` translates SDK errors at this boundary only; `UnixHttp` hijacks an exec
connection on the engine's unix socket; `resolve_image` picks the image to run, and builds the
session's dockerfile, builds a default image on first use, or pulls a named image it lacks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_sandbox.backends.container.options import ContainerOptions
from llm_sandbox.backends.container.pull import PullStream, pull_image
from llm_sandbox.backends.container.spec import ContainerSpec
from llm_sandbox.config import SessionConfig
from llm_sandbox.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    ImageBuildError,
    SandboxRuntimeError,
)
from llm_sandbox.images.naming import default_image_language
from llm_sandbox.images.progress import ProgressLog


@dataclass(frozen=True)
class Adopted:
    """An existing container a session runs in (`container_id=`)."""

    id: str
    image: str
    user: str
    """The user its processes run as by default ("" = the image's)."""
    runtime: str | None


class Engine(ABC):
    """The engine-specific operations; implemented by docker.py and podman.py."""

    name: str

    @abstractmethod
    def adopt(self, container: str) -> Adopted:
        """Look up an existing container (id or name) and start it if it is not running."""

    @abstractmethod
    def create(self, spec: ContainerSpec) -> str:
        """Create and start the session container; returns its id."""

    @abstractmethod
    def exec_start(
        self, container: str, argv: Sequence[str], env: Mapping[str, str], cwd: str, user: str
    ) -> tuple[str, socket.socket, bytes]:
        """Start an attached exec; returns (exec id, raw socket, bytes already read)."""

    @abstractmethod
    def attach(self, container: str) -> tuple[socket.socket, bytes]:
        """Attach to the container's main process (the killer): (raw socket, bytes read)."""

    @abstractmethod
    def exec_exit_code(self, exec_id: str) -> int | None:
        """The exec's exit code, or None while it is still running."""

    @abstractmethod
    def container_state(self, container: str) -> dict[str, Any]:
        """The engine's State of the container (`Running`, `OOMKilled`, `ExitCode`, ...);
        empty once the container no longer exists."""

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
    def container_object(self, container: str) -> Any:
        """The SDK's object for `container` (what users of the previous generation held)."""

    @abstractmethod
    def image_labels(self, image: str) -> dict[str, str] | None:
        """The labels of a local image, or None when the engine does not have it."""

    @abstractmethod
    def pull_stream(self, reference: str, read_timeout: float) -> PullStream:
        """Start pulling `reference` with the credentials the engine's own tools would use.

        Raises `RegistryAnswer` when the engine refuses at once; `read_timeout` bounds each
        read from the engine (the caller gives up on a silent registry well before).
        """

    def pull_reference(self, image: str) -> str:
        """The name to pull, and then run, for `image` (as given, unless the engine needs more)."""
        return image

    @abstractmethod
    def build_image(self, context: Path, dockerfile: str, tag: str) -> None: ...

    @abstractmethod
    def remove_image(self, image: str) -> None: ...

    honours_tmpfs_mode = True
    """False when the engine ignores a tmpfs mount's mode and owner (Podman copies the image's)."""

    @abstractmethod
    def close(self) -> None:
        """Release the SDK client if the session made it (the user's own stays open)."""


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
        if _connection_failed(exc):  # Podman's SDK reports a dead socket as an API error
            raise BackendUnavailableError(
                f"{action}: {engine} is not reachable ({_connection_failed(exc)}); start the "
                "service or pass a client for the socket it listens on"
            ) from exc
        raise SandboxRuntimeError(f"{action}: {exc.explanation or exc}") from exc
    except (errors.DockerException, OSError) as exc:
        raise BackendUnavailableError(
            f"{action}: {engine} is not reachable ({exc}); once it answers again, retry (a "
            "restarted engine may have stopped the container: then open a new session)"
        ) from exc


def _connection_failed(exc: BaseException) -> str:
    """What failed to connect, when `exc` was caused by a connection that could not be made."""
    seen: BaseException | None = exc.__cause__ or exc.__context__
    for _ in range(8):
        if seen is None:
            return ""
        if isinstance(seen, ConnectionError) or type(seen).__name__ == "ConnectionError":
            inner = seen.args[0] if seen.args else seen
            return str(getattr(inner, "args", [inner])[-1]) if inner else str(seen)
        seen = seen.__cause__ or seen.__context__
    return ""


class SdkEngine(Engine):
    """What the Docker and Podman SDKs spell the same way."""

    client: Any
    owns_client = False
    """Whether the session made the client (and so closes it)."""
    errors: Any
    """The SDK's errors module, for `map_engine_errors`."""
    default_network: str
    """The engine's default network, which `set_network` connects a container to."""

    def map_errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        return map_engine_errors(action, self.name.capitalize(), self.errors)

    def container_object(self, container: str) -> Any:
        with self.map_errors("looking up the container"):
            return self.client.containers.get(container)

    def adopt(self, container: str) -> Adopted:
        with self.map_errors(f"looking up container {container}"):
            try:
                found = self.client.containers.get(container)
            except self.errors.NotFound:
                raise ConfigurationError(
                    f"there is no container {container!r} in {self.name}; pass the id or name "
                    f"of an existing container as container_id= (`{self.name} ps -a` lists them)"
                ) from None
            if found.status != "running":
                found.start()
                found.reload()
        config = found.attrs.get("Config") or {}
        host = found.attrs.get("HostConfig") or {}
        return Adopted(
            id=str(found.id),
            image=str(config.get("Image") or ""),
            user=str(config.get("User") or ""),
            runtime=host.get("Runtime"),
        )

    def close(self) -> None:
        if self.owns_client:
            with contextlib.suppress(Exception):
                self.client.close()

    @abstractmethod
    def exec_info(self, exec_id: str) -> dict[str, Any]:
        """The engine's inspection of an exec (`Running`, `ExitCode`)."""

    def exec_exit_code(self, exec_id: str) -> int | None:
        with self.map_errors("reading an exit code"):
            info = self.exec_info(exec_id)
        if info.get("Running"):
            return None
        code = info.get("ExitCode")
        return int(code) if code is not None else None

    def set_network(self, container: str, enabled: bool) -> None:
        with self.map_errors("switching the container's network"):
            network = self.client.networks.get(self.default_network)
            if enabled:
                network.connect(container)
            else:
                network.disconnect(container, force=True)

    def image_labels(self, image: str) -> dict[str, str] | None:
        with self.map_errors(f"looking up image {image}"):
            try:
                found = self.client.images.get(image)
            except self.errors.ImageNotFound:
                return None
        return dict(found.labels or {})

    def build_image(self, context: Path, dockerfile: str, tag: str) -> None:
        with self.map_errors(f"building {dockerfile}"):
            self.client.images.build(
                path=str(context), dockerfile=dockerfile, tag=tag, rm=True, forcerm=True
            )

    def remove_image(self, image: str) -> None:
        with self.map_errors(f"removing image {image}"):
            self.client.images.remove(image, force=True)


def resolve_image(engine: Engine, config: SessionConfig, default: str | None) -> tuple[str, bool]:
    """The image to run; (name, built for this session).

    The session's `dockerfile` is built under a fresh tag. Otherwise the image is `image` or the
    language's default: used when the engine has it; a default image of ours that is missing is
    built on first use (see `images.first_use`); any other is pulled from its registry.
    """
    options = config.options(ContainerOptions)
    if options.dockerfile:
        path = Path(options.dockerfile)
        if not path.is_file():
            raise ConfigurationError(f"dockerfile {options.dockerfile!r} does not exist")
        tag = f"localhost/llm-sandbox-build:{uuid.uuid4().hex[:12]}"
        engine.build_image(path.parent.resolve(), path.name, tag)
        return tag, True
    image = options.image or default
    if image is None:
        raise ConfigurationError(f"no image for language {config.lang!r}; pass image=")
    log = ProgressLog(config.logger or logging.getLogger("llm_sandbox"), config.verbose)
    ours = default_image_language(image)
    labels = engine.image_labels(image)
    if ours is not None:
        from llm_sandbox.images import first_use

        if labels is None:
            first_use.ensure_default_image(
                ours, engine.name, image, lambda: engine.image_labels(image) is not None, log
            )
        else:
            first_use.warn_if_stale(ours, engine.name, image, labels, log)
        return image, False
    if labels is not None:
        return image, False
    return pull_image(engine, image, log), False


ATTACH_URL = "/v1.41/containers/{}/attach?stream=1&stdin=1&stdout=1&stderr=1"
"""Docker's attach endpoint (both engines serve it), hijacked like an exec start."""


class UnixHttp:
    """Just enough HTTP/1.1 on an engine's unix socket to hijack an exec or attach connection.

    Both engines serve Docker's `POST /exec/{id}/start` and `POST /containers/{id}/attach`
    with `Upgrade: tcp`; after the reply headers the connection carries the multiplexed
    stream, and stdin goes the other way.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        try:
            sock.connect(self.path)
        except BaseException:
            sock.close()
            raise
        return sock

    def _send(
        self, sock: socket.socket, method: str, url: str, body: dict[str, Any] | None
    ) -> None:
        payload = json.dumps(body).encode() if body is not None else b""
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

    def hijack(self, url: str, body: dict[str, Any] | None = None) -> tuple[socket.socket, bytes]:
        sock = self._connect()
        try:
            self._send(sock, "POST", url, body)
            status, rest = self._read_head(sock)
        except BaseException:
            sock.close()
            raise
        if status not in (101, 200):
            sock.close()
            raise SandboxRuntimeError(f"{url} failed with HTTP {status}: {rest[:300]!r}")
        sock.settimeout(None)
        return sock, rest
