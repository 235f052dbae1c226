"""Docker backend: the official Docker SDK adapted to the shared container engine interface.

gVisor: `runtime_config={"runtime": "runsc"}` runs the container under runsc.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import docker
import docker.auth
import docker.errors
import docker.utils

from llm_sandbox.backends.base import Backend
from llm_sandbox.backends.container.engine import ATTACH_URL, SdkEngine, UnixHttp
from llm_sandbox.backends.container.pull import CONNECT_TIMEOUT, HttpPullStream, PullStream
from llm_sandbox.backends.container.sandbox import EngineBackend
from llm_sandbox.backends.container.spec import ContainerSpec
from llm_sandbox.exceptions import (
    BackendUnavailableError,
)


def default_client() -> Any:
    try:
        return docker.from_env()
    except docker.errors.DockerException as exc:
        raise BackendUnavailableError(
            f"cannot reach the Docker daemon ({exc}); start dockerd, set DOCKER_HOST, "
            "or pass client=docker.DockerClient(base_url=...)"
        ) from exc


def engine_reachable() -> bool:
    try:
        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


class DockerEngine(SdkEngine):
    name = "docker"
    errors = docker.errors
    default_network = "bridge"

    def __init__(self, client: Any, *, owns_client: bool = False) -> None:
        self.client = client
        self.owns_client = owns_client
        self.api = client.api
        # On a unix socket we hijack the exec connection ourselves (one code path with Podman,
        # and a socket we fully own); TCP/TLS daemons use the SDK's hijacked socket.
        adapter = self.api.adapters.get("http+docker://")
        socket_path = getattr(adapter, "socket_path", None)
        self._http = UnixHttp(socket_path) if socket_path else None

    def create(self, spec: ContainerSpec) -> str:
        with self.map_errors(f"creating a container from {spec.image}"):
            container = self.client.containers.create(spec.image, **spec.options)
            try:
                if spec.isolate:
                    self.set_network(container.id, False)
                container.start()
            except BaseException:
                self.remove(container.id)
                raise
        return str(container.id)

    def exec_start(
        self, container: str, argv: Sequence[str], env: Mapping[str, str], cwd: str, user: str
    ) -> tuple[str, socket.socket, bytes]:
        with self.map_errors("starting a command in the container"):
            exec_id = self.api.exec_create(
                container, list(argv), stdin=True, environment=dict(env), workdir=cwd, user=user
            )["Id"]
            if self._http is not None:
                sock, ahead = self._http.hijack(
                    f"/v1.41/exec/{exec_id}/start", {"Detach": False, "Tty": False}
                )
                return str(exec_id), sock, ahead
            wrapper = self.api.exec_start(exec_id, socket=True)
        raw: socket.socket = getattr(wrapper, "_sock", wrapper)
        return str(exec_id), raw, b""

    def attach(self, container: str) -> tuple[socket.socket, bytes]:
        with self.map_errors("attaching to the container's killer"):
            if self._http is not None:
                return self._http.hijack(ATTACH_URL.format(container))
            params = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            wrapper = self.api.attach_socket(container, params=params)
        raw: socket.socket = getattr(wrapper, "_sock", wrapper)
        return raw, b""

    def exec_info(self, exec_id: str) -> dict[str, Any]:
        info: dict[str, Any] = self.api.exec_inspect(exec_id)
        return info

    def container_state(self, container: str) -> dict[str, Any]:
        with self.map_errors("inspecting the container"):
            try:
                state: dict[str, Any] = self.api.inspect_container(container)["State"]
            except docker.errors.NotFound:
                return {}
        return state

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        with self.map_errors("creating the libraries volume"):
            self.client.volumes.create(name=name, labels=dict(labels))

    def remove_volume(self, name: str) -> None:
        with self.map_errors("removing a volume"), contextlib.suppress(docker.errors.NotFound):
            self.client.volumes.get(name).remove(force=True)

    def remove(self, container: str) -> None:
        with self.map_errors("removing the container"), contextlib.suppress(docker.errors.NotFound):
            self.api.remove_container(container, force=True)

    def commit(self, container: str, repository: str, tag: str) -> str:
        with self.map_errors("committing the container"):
            self.api.commit(container, repository=repository, tag=tag)
        return f"{repository}:{tag}"

    def image_exists(self, image: str) -> bool:
        with self.map_errors(f"looking up image {image}"):
            try:
                self.client.images.get(image)
            except docker.errors.ImageNotFound:
                return False
        return True

    def pull_stream(self, reference: str, read_timeout: float) -> PullStream:
        # What `docker pull` and the SDK's `pull` do: the daemon pulls, with the credentials
        # the client finds for the registry in ~/.docker/config.json (or its credential
        # helper), sent in X-Registry-Auth.
        repository, tag = docker.utils.parse_repository_tag(reference)
        registry, _ = docker.auth.resolve_repository_name(repository)
        headers = {}
        credentials = docker.auth.get_config_header(self.api, registry)
        if credentials:
            headers["X-Registry-Auth"] = credentials
        with self.map_errors(f"pulling {reference}"):
            response = self.api.post(
                self.api._url("/images/create"),
                params={"fromImage": repository, "tag": tag or "latest"},
                headers=headers,
                stream=True,
                timeout=(CONNECT_TIMEOUT, read_timeout),
            )
        return HttpPullStream(response)


def create_backend() -> Backend:
    """The backend the container package's definition opens sessions with."""
    return EngineBackend("docker", DockerEngine, default_client)
