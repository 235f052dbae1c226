"""The session pod: hardened defaults, and the user's `pod_manifest` honoured as given.

Pure: builds a dict, talks to nothing. `pod_manifest()` starts from the user's manifest and
fills only what it leaves unset (`fill`), so an explicit value always wins, including an
explicit opt-out of a default. The sandbox container is the manifest's first container.

Defaults (each one a field a cluster enforces, not a convention):

* a non-root uid/gid of its own per session (see `session_uid`), `runAsNonRoot`,
  `allowPrivilegeEscalation: false`, every capability dropped, `seccompProfile:
  RuntimeDefault`, no service-account token, no service links;
* a read-only root file system; the work directory and /tmp are memory-backed `emptyDir`
  volumes and our support directory (code file, installed libraries) a disk-backed one, each
  with a `sizeLimit`;
* CPU and memory requests and limits from `ResourceLimits`;
* `restartPolicy: Never`, `activeDeadlineSeconds` from `session_timeout` (the cluster ends a
  session pod that outlives its session even if this process died), labels identifying our
  pods and their owner (for `llm-sandbox gc`), optionally a `runtimeClassName` (gVisor, Kata);
* network: a pod spec cannot switch the pod network off; pods of sessions without network
  carry the label `io.llm-sandbox.network=none`, which the deny-all NetworkPolicy the backend
  ensures selects (see `policy.py`; the cluster's CNI enforces it);
* pid 1 sleeps forever ignoring SIGCHLD (so the kernel reaps orphaned processes: no zombies)
  and the signals the code could send it (the kernel already drops SIGKILL sent to a
  namespace's init from inside).
"""

from __future__ import annotations

import copy
import math
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from llm_sandbox.config import MiB, ResourceLimits
from llm_sandbox.layout import HOST_LABEL, LABEL, PID_LABEL, SUPPORT_DIR

NETWORK_LABEL = f"{LABEL}.network"
"""`none` unless the session asked for network: what a NetworkPolicy selects to cut pods off."""
EXPIRES_ANNOTATION = f"{LABEL}/expires"
UID_RANGE = (100_000, 1_100_000)
DEFAULT_CPU_LIMIT = "1"
CPU_REQUEST = "100m"
RUNTIME_CLASS_ENV = "LLM_SANDBOX_KUBE_RUNTIME_CLASS"
"""Default `runtimeClassName` for pods whose manifest sets none (e.g. `gvisor`, `kata`)."""
DEADLINE_GRACE = 30
"""Seconds a pod may outlive `session_timeout` (start-up, teardown) before the cluster ends it."""

# env --ignore-signal (coreutils >= 8.31) makes SIGCHLD ignored across exec: the kernel then
# reaps the children of pid 1 (orphans of the code) itself. Older images keep a plain sleep.
INIT_SCRIPT = (
    "trap '' TERM INT HUP QUIT USR1 USR2; "
    "if env --ignore-signal=CHLD true 2>/dev/null; then "
    "exec env --ignore-signal=CHLD sleep infinity; fi; exec sleep infinity"
)

WORK_VOLUME = "llm-sandbox-work"
TMP_VOLUME = "llm-sandbox-tmp"
SUPPORT_VOLUME = "llm-sandbox-support"

# Lists merged item by item (the user's item wins by this key); any other list is the user's.
_KEYED_LISTS = {"volumes": "name", "env": "name", "volumeMounts": "mountPath"}


def fill(given: Any, defaults: Any) -> Any:
    """`given` with every gap filled from `defaults`; what `given` sets is kept as is."""
    if isinstance(given, Mapping) and isinstance(defaults, Mapping):
        merged = {key: copy.deepcopy(value) for key, value in given.items()}
        for key, value in defaults.items():
            if key not in merged or merged[key] is None:
                merged[key] = copy.deepcopy(value)
            elif key == "containers":
                merged[key] = _fill_containers(merged[key], value)
            elif key in _KEYED_LISTS and isinstance(merged[key], list):
                merged[key] = _union(merged[key], value, _KEYED_LISTS[key])
            else:
                merged[key] = fill(merged[key], value)
        return merged
    return given


def _fill_containers(given: list[Any], defaults: list[Any]) -> list[Any]:
    if not given:
        return copy.deepcopy(defaults)
    return [fill(given[0], defaults[0]), *given[1:]]


def _union(given: list[Any], defaults: list[Any], key: str) -> list[Any]:
    present = {item.get(key) for item in given if isinstance(item, Mapping)}
    return given + [copy.deepcopy(item) for item in defaults if item.get(key) not in present]


def quantity(size: int) -> str:
    """Bytes as a Kubernetes quantity (`512Mi` when whole mebibytes)."""
    return f"{size // MiB}Mi" if size % MiB == 0 else str(size)


def label_value(text: str) -> str:
    """`text` made a valid label value (63 characters of [A-Za-z0-9._-], alphanumeric ends)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63].strip("-_.") or "unknown"


def owner_labels() -> dict[str, str]:
    return {
        LABEL: "1",
        PID_LABEL: str(os.getpid()),
        HOST_LABEL: label_value(socket.gethostname()),
    }


def session_uid() -> int:
    """A uid (and gid) for one session's pod, random in UID_RANGE.

    Kubernetes runs each pod's processes under a uid of the node. A uid of its own per session
    keeps sessions apart where the kernel counts per uid (the process limit: RLIMIT_NPROC counts
    every process of the uid on the node) and where it checks uids (signals, ptrace, files).
    """
    import secrets

    low, high = UID_RANGE
    return low + secrets.randbelow(high - low)


def default_pod(
    *,
    image: str | None,
    workdir: str,
    limits: ResourceLimits,
    environment: Mapping[str, str],
    session_timeout: float | None,
    network: bool = False,
    runtime_class: str | None = None,
) -> dict[str, Any]:
    """Our hardened pod for one session (before the user's manifest is laid over it)."""
    memory = quantity(limits.memory) if limits.memory is not None else None
    resource_limits: dict[str, str] = {
        "cpu": str(limits.cpus) if limits.cpus is not None else DEFAULT_CPU_LIMIT
    }
    requests = {"cpu": CPU_REQUEST}
    if memory is not None:
        resource_limits["memory"] = memory
        requests["memory"] = memory
    disk = quantity(limits.disk)
    uid = session_uid()
    container: dict[str, Any] = {
        "name": "sandbox",
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", INIT_SCRIPT],
        "workingDir": workdir,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": {"limits": resource_limits, "requests": requests},
        "volumeMounts": [
            {"name": WORK_VOLUME, "mountPath": workdir},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},
            {"name": SUPPORT_VOLUME, "mountPath": SUPPORT_DIR},
        ],
    }
    if image is not None:
        container["image"] = image
    if environment:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(environment.items())]
    metadata: dict[str, Any] = {
        "name": f"llm-sandbox-{uuid.uuid4().hex[:12]}",
        "labels": {**owner_labels(), NETWORK_LABEL: "on" if network else "none"},
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "terminationGracePeriodSeconds": 0,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": WORK_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": disk}},
            {"name": TMP_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": disk}},
            {"name": SUPPORT_VOLUME, "emptyDir": {"sizeLimit": disk}},
        ],
    }
    if session_timeout is not None:
        spec["activeDeadlineSeconds"] = math.ceil(session_timeout) + DEADLINE_GRACE
        expires = math.ceil(time.time() + session_timeout) + DEADLINE_GRACE
        metadata["annotations"] = {EXPIRES_ANNOTATION: str(expires)}
    runtime_class = runtime_class or os.environ.get(RUNTIME_CLASS_ENV) or None
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def pod_manifest(user: Mapping[str, Any] | None, defaults: dict[str, Any]) -> dict[str, Any]:
    """The pod to create: the user's manifest, gaps filled from `defaults`."""
    pod: dict[str, Any] = fill(user or {}, defaults)
    metadata = pod["metadata"]
    if user and "generateName" in (user.get("metadata") or {}) and "name" not in user["metadata"]:
        metadata.pop("name", None)  # the user asked the API server to choose the name
    return pod


def orphaned(metadata: Any, phase: str | None, alive: Callable[[str], bool]) -> bool:
    """Whether a session pod has outlived its session (for `llm-sandbox gc`).

    Its creator was a process of this host that is gone, its session's expiry has passed,
    or it is no longer running (restartPolicy Never: it never will again).
    """
    labels = metadata.labels or {}
    annotations = metadata.annotations or {}
    if phase in ("Succeeded", "Failed"):
        return True
    expires = annotations.get(EXPIRES_ANNOTATION, "")
    if expires.isdigit() and int(expires) < time.time():
        return True
    here = labels.get(HOST_LABEL) == label_value(socket.gethostname())
    return here and not alive(labels.get(PID_LABEL, ""))


def sandbox_container(pod: Mapping[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod["spec"]["containers"][0]
    return container
