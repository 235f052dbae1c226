"""Pods as Docker containers: the emulator's kubelet (test double).

One container per pod, from the sandbox container's image, command/args, env, workingDir,
tty/stdin, user (runAsUser/runAsGroup, container level over pod level), readOnlyRootFilesystem,
capabilities (drop/add), allowPrivilegeEscalation (no-new-privileges), seccompProfile
(RuntimeDefault = the engine's default profile, Unconfined), emptyDir volumes (tmpfs of their
sizeLimit, mode 0777 like a kubelet's emptyDir), resources.limits cpu/memory, a node-wide
process limit per pod (like the kubelet's podPidsLimit), runtimeClassName `gvisor`/`runsc`
(Docker's runsc runtime), and labels (renamed, see `run`). Pods get Docker's bridge network
(a pod network), or none at all (loopback only) when the server finds a NetworkPolicy that
denies them all egress (see `server.py`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Any

import docker
import docker.errors

EMULATOR_LABEL = "io.llm-sandbox.kube-emulator"
POD_PIDS_LIMIT = 1024
"""The emulated kubelet's podPidsLimit."""
RUNTIME_CLASSES = {"gvisor": "runsc", "runsc": "runsc"}

_UNITS = {
    "": 1,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "m": 0.001,
}


class PodRejected(Exception):
    """The container cannot be created as specified (a kubelet's CreateContainerConfigError)."""


def parse_quantity(value: Any) -> float:
    match = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"bad quantity {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def security(pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Any]:
    """The container's effective securityContext (its own fields over the pod's)."""
    merged = dict(pod["spec"].get("securityContext") or {})
    merged.update(container.get("securityContext") or {})
    return merged


def requests(pod: Mapping[str, Any]) -> tuple[float, float]:
    """Total (cpu cores, memory bytes) the pod requests (limits stand in for absent requests)."""
    cpu = memory = 0.0
    for container in pod["spec"]["containers"]:
        resources = container.get("resources") or {}
        wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        cpu += parse_quantity(wanted.get("cpu", 0))
        memory += parse_quantity(wanted.get("memory", 0))
    return cpu, memory


def _security_options(context: Mapping[str, Any]) -> dict[str, Any]:
    """Docker options for a securityContext's capabilities, privilege escalation, seccomp."""
    options: dict[str, Any] = {}
    capabilities = context.get("capabilities") or {}
    if capabilities.get("drop"):
        options["cap_drop"] = list(capabilities["drop"])
    if capabilities.get("add"):
        options["cap_add"] = list(capabilities["add"])
    security_opt = []
    if context.get("allowPrivilegeEscalation") is False:
        security_opt.append("no-new-privileges:true")
    seccomp = (context.get("seccompProfile") or {}).get("type")
    if seccomp == "Unconfined":
        security_opt.append("seccomp=unconfined")
    elif seccomp not in (None, "RuntimeDefault"):
        raise PodRejected(f"the emulator does not support seccompProfile {seccomp}")
    options["security_opt"] = security_opt
    return options


class DockerKubelet:
    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.client = docker.from_env()
        self.runtimes = set((self.client.info().get("Runtimes") or {}).keys())

    def image_present(self, image: str) -> bool:
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            return False
        return True

    def image_user(self, image: str) -> str:
        return str(self.client.images.get(image).attrs.get("Config", {}).get("User") or "")

    def run(self, namespace: str, pod: Mapping[str, Any], network: bool = True) -> str:
        """Create and start the pod's container; returns its id. Raises PodRejected."""
        spec = pod["spec"]
        containers = spec["containers"]
        if len(containers) != 1:
            raise PodRejected("the emulator runs exactly one container per pod")
        container = containers[0]
        context = security(pod, container)
        uid, gid = context.get("runAsUser"), context.get("runAsGroup")
        image_user = self.image_user(container["image"])
        if context.get("runAsNonRoot") and (
            uid == 0 or (uid is None and image_user in ("", "0", "root"))
        ):
            raise PodRejected("container has runAsNonRoot and image will run as root")
        pod_labels = pod["metadata"].get("labels") or {}
        user = None
        if uid is not None:
            user = f"{uid}:{gid if gid is not None else 0}"
        options: dict[str, Any] = {
            "name": f"kube-emulator-{namespace}-{pod['metadata']['name']}",
            # The pod's labels, renamed: under their own names llm-sandbox's Docker gc would
            # take the pod's container for one of its own.
            "labels": {
                **{f"{EMULATOR_LABEL}.pod/{k}": v for k, v in pod_labels.items()},
                EMULATOR_LABEL: self.instance,
            },
            "detach": True,
            "network_mode": "bridge" if network else "none",
            "pids_limit": POD_PIDS_LIMIT,
            "read_only": bool(context.get("readOnlyRootFilesystem")),
            "tty": bool(container.get("tty")),
            "stdin_open": bool(container.get("stdin")),
            "environment": {e["name"]: str(e.get("value", "")) for e in container.get("env") or []},
            "privileged": bool(context.get("privileged")),
        }
        if user:
            options["user"] = user
        if container.get("command"):
            options["entrypoint"] = list(container["command"])
        if container.get("args"):
            options["command"] = list(container["args"])
        if container.get("workingDir"):
            options["working_dir"] = container["workingDir"]
        options.update(_security_options(context))
        # A kubelet's emptyDir is world-writable (0777) and group-owned by fsGroup. Docker
        # keeps the mode of an image directory the tmpfs covers, so ownership does the job.
        owner = (uid, context.get("fsGroup", gid))
        options["tmpfs"] = self._volumes(spec, container, owner)
        limits = (container.get("resources") or {}).get("limits") or {}
        if "memory" in limits:
            memory = int(parse_quantity(limits["memory"]))
            options["mem_limit"] = memory
            options["memswap_limit"] = memory
        if "cpu" in limits:
            options["nano_cpus"] = int(parse_quantity(limits["cpu"]) * 1e9)
        runtime_class = spec.get("runtimeClassName")
        if runtime_class:
            options["runtime"] = RUNTIME_CLASSES[runtime_class]
        created = self.client.containers.run(container["image"], **options)
        return str(created.id)

    @staticmethod
    def _volumes(
        spec: Mapping[str, Any], container: Mapping[str, Any], owner: tuple[Any, Any]
    ) -> dict[str, str]:
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        tmpfs: dict[str, str] = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                raise PodRejected(f"volumeMount {mount['name']!r} names no volume")
            if "emptyDir" not in volume:
                raise PodRejected("the emulator supports only emptyDir volumes")
            size = (volume["emptyDir"] or {}).get("sizeLimit")
            options = "rw,exec,mode=0777"
            if owner[0] is not None:
                options += f",uid={owner[0]}"
            if owner[1] is not None:
                options += f",gid={owner[1]}"
            if size is not None:
                options += f",size={int(parse_quantity(size))}"
            tmpfs[mount["mountPath"]] = options
        return tmpfs

    def state(self, container_id: str) -> dict[str, Any]:
        """Docker's State of the container ({} when it is gone)."""
        try:
            state: dict[str, Any] = self.client.api.inspect_container(container_id)["State"]
        except docker.errors.NotFound:
            return {}
        return state

    def kill(self, container_id: str) -> None:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            self.client.api.kill(container_id)

    def remove(self, container_id: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(container_id, force=True)

    def remove_all(self) -> None:
        for container in self.client.containers.list(
            all=True, filters={"label": f"{EMULATOR_LABEL}={self.instance}"}
        ):
            self.remove(container.id)
