"""Podman backend: the official Podman SDK adapted to the shared container engine interface.

Container lifecycle, networks, images and commits go through the SDK. Exec output with a
deadline and stdin needs the hijacked connection that the SDK does not expose, so exec start
speaks Podman's Docker-compatible endpoint directly on the same unix socket.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import socket
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import podman
import podman.errors

from llm_sandbox.backends.base import Backend
from llm_sandbox.backends.container.engine import ATTACH_URL, SdkEngine, UnixHttp
from llm_sandbox.backends.container.pull import (
    CONNECT_TIMEOUT,
    HttpPullStream,
    PullStream,
    is_loopback,
    qualified,
)
from llm_sandbox.backends.container.sandbox import EngineBackend
from llm_sandbox.backends.container.spec import ContainerSpec
from llm_sandbox.exceptions import (
    BackendUnavailableError,
)
from llm_sandbox.images.naming import registry_of


def default_socket() -> str:
    if os.environ.get("CONTAINER_HOST"):
        return os.environ["CONTAINER_HOST"]
    if os.geteuid() == 0:
        return "unix:///run/podman/podman.sock"
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR", f"/run/user/{os.geteuid()}")
    return f"unix://{runtime_dir}/podman/podman.sock"


def default_client() -> Any:
    url = default_socket()
    client = podman.PodmanClient(base_url=url)
    try:
        client.ping()
    except Exception as exc:
        raise BackendUnavailableError(
            f"cannot reach the Podman service at {url} ({exc}); start it with "
            "`podman system service --time=0 " + url + "` or pass client=PodmanClient(...)"
        ) from exc
    return client


def engine_reachable() -> bool:
    try:
        default_client().close()
        return True
    except Exception:
        return False


class PodmanEngine(SdkEngine):
    name = "podman"
    errors = podman.errors
    default_network = "podman"
    honours_tmpfs_mode = False

    def __init__(self, client: Any, *, owns_client: bool = False) -> None:
        self.client = client
        self.owns_client = owns_client
        base = client.api.base_url
        if base.scheme != "http+unix":
            raise BackendUnavailableError(
                "the podman backend needs a unix-socket connection to the Podman service "
                f"(got {base.scheme}); use PodmanClient(base_url='unix:///…/podman.sock')"
            )
        self._http = UnixHttp(unquote(base.netloc))

    def create(self, spec: ContainerSpec) -> str:
        options = dict(spec.options)
        options["mounts"] = [*options.get("mounts", []), *_tmpfs_mounts(options.pop("tmpfs", {}))]
        # Given any ulimits, Podman stops applying containers.conf's default_ulimits and would
        # raise nproc past what it may (it lowers its own to kernel.pid_max): pass ours too.
        if not any(u["Name"] == "nproc" for u in options.get("ulimits", [])):
            nproc = _nproc_ceiling()
            options["ulimits"] = [
                *options.get("ulimits", []),
                {"Name": "nproc", "Soft": nproc, "Hard": nproc},
            ]
        options.update(_security_options(options.pop("security_opt", [])))
        if "nano_cpus" in options:
            options["cpu_period"] = 100_000
            options["cpu_quota"] = int(options.pop("nano_cpus") / 1e9 * 100_000)
        with self.map_errors(f"creating a container from {spec.image}"):
            container = self.client.containers.create(spec.image, **options)
            try:
                # Podman writes resolv.conf at start from the networks attached then, so it
                # starts connected and is disconnected before any code runs.
                container.start()
                if spec.isolate:
                    self.set_network(container.id, False)
            except BaseException:
                self.remove(container.id)
                raise
        return str(container.id)

    def exec_start(
        self, container: str, argv: Sequence[str], env: Mapping[str, str], cwd: str, user: str
    ) -> tuple[str, socket.socket, bytes]:
        body = {
            "AttachStdin": True,
            "AttachStdout": True,
            "AttachStderr": True,
            "Cmd": list(argv),
            "Env": [f"{k}={v}" for k, v in env.items()],
            "WorkingDir": cwd,
            "User": user,
        }
        with self.map_errors("starting a command in the container"):
            response = self.client.api.post(
                f"/containers/{container}/exec", data=json.dumps(body), compatible=True
            )
            response.raise_for_status()
            exec_id = str(response.json()["Id"])
            sock, ahead = self._http.hijack(
                f"/v1.41/exec/{exec_id}/start", {"Detach": False, "Tty": False}
            )
        return exec_id, sock, ahead

    def attach(self, container: str) -> tuple[socket.socket, bytes]:
        with self.map_errors("attaching to the container's killer"):
            return self._http.hijack(ATTACH_URL.format(container))

    def exec_info(self, exec_id: str) -> dict[str, Any]:
        response = self.client.api.get(f"/exec/{exec_id}/json", compatible=True)
        response.raise_for_status()
        info: dict[str, Any] = response.json()
        return info

    def container_state(self, container: str) -> dict[str, Any]:
        with self.map_errors("inspecting the container"):
            response = self.client.api.get(f"/containers/{container}/json", compatible=True)
            if response.status_code == 404:
                return {}
            response.raise_for_status()
            state: dict[str, Any] = response.json()["State"]
        return state

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        with self.map_errors("creating the libraries volume"):
            # Podman hands a new volume to the container's user unless told who owns it;
            # it must stay root's, so that only installs (run as root) can write it.
            self.client.volumes.create(
                name=name, labels=dict(labels), driver_opts={"o": "uid=0,gid=0"}
            )

    def remove_volume(self, name: str) -> None:
        with self.map_errors("removing a volume"), contextlib.suppress(podman.errors.NotFound):
            self.client.volumes.remove(name, force=True)

    def remove(self, container: str) -> None:
        # A forced remove of a running container waits out the stop grace period; kill first.
        with self.map_errors("removing the container"), contextlib.suppress(podman.errors.NotFound):
            found = self.client.containers.get(container)
            with contextlib.suppress(podman.errors.APIError):
                found.kill(signal="SIGKILL")
            found.remove(force=True)

    def commit(self, container: str, repository: str, tag: str) -> str:
        with self.map_errors("committing the container"):
            self.client.containers.get(container).commit(repository=repository, tag=tag)
        return f"{repository}:{tag}"

    def image_exists(self, image: str) -> bool:
        with self.map_errors(f"looking up image {image}"):
            return bool(self.client.images.exists(image))

    def pull_reference(self, image: str) -> str:
        # Docker's reading of a short name (Docker Hub), not Podman's search list, which may
        # be empty (Podman then refuses a short name) or try other registries first.
        return qualified(image)

    def pull_stream(self, reference: str, read_timeout: float) -> PullStream:
        # The service pulls with its own credentials (its auth file, where `podman login`
        # writes) when the request carries none. Like Docker, a registry on this machine may
        # be plain HTTP; any other follows registries.conf.
        params = {
            "reference": reference,
            "policy": "missing",
            "tlsVerify": not is_loopback(registry_of(reference)),
        }
        with self.map_errors(f"pulling {reference}"):
            response = self.client.api.post(
                "/images/pull",
                params=params,
                stream=True,
                timeout=(CONNECT_TIMEOUT, read_timeout),
            )
        return HttpPullStream(response)


def _security_options(security_opt: list[str]) -> dict[str, Any]:
    """Docker's security_opt strings as the Podman SDK's keywords (its own security_opt means
    SELinux labels); a seccomp profile goes to a file, which the local service reads."""
    options: dict[str, Any] = {}
    labels: list[str] = []
    for option in security_opt:
        key, _, value = option.partition("=" if "=" in option else ":")
        if key == "no-new-privileges":
            options["no_new_privileges"] = value in ("", "true")
        elif key == "seccomp" and value == "unconfined":
            options["seccomp_policy"] = "default"
            options["seccomp_profile_path"] = "unconfined"
        elif key == "seccomp":
            options["seccomp_profile_path"] = _profile_file(value)
        else:
            labels.append(option)
    if labels:
        options["security_opt"] = labels
    return options


def _profile_file(profile: str) -> str:
    digest = hashlib.sha256(profile.encode()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"llm-sandbox-seccomp-{digest}.json")
    if not os.path.exists(path):
        with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(path), delete=False) as f:
            f.write(profile)
        os.replace(f.name, path)
    return path


def _nproc_ceiling() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    return pid_max if hard == resource.RLIM_INFINITY else min(hard, pid_max)


def _tmpfs_mounts(tmpfs: Mapping[str, str]) -> list[dict[str, Any]]:
    """Docker's `tmpfs={path: "size=N,mode=M,..."}` as the mounts the Podman SDK accepts.

    The SDK forwards only a few named options (size, mode) plus the value of `relabel`
    verbatim, which carries `exec`. Podman 4.3 rejects `nr_inodes`, so files are capped only
    by the memory limit here.
    """
    mounts: list[dict[str, Any]] = []
    for target, text in tmpfs.items():
        mount: dict[str, Any] = {"type": "tmpfs", "source": "tmpfs", "target": target}
        for option in text.split(","):
            key, _, value = option.partition("=")
            if key in ("size", "mode"):
                mount[key] = value
            elif key == "exec":
                mount["relabel"] = option
        mounts.append(mount)
    return mounts


def create_backend() -> Backend:
    """The backend the container package's definition opens sessions with."""
    return EngineBackend("podman", PodmanEngine, default_client)
