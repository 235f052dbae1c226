"""Pod operations through the official client: create, wait until running, exec, delete.

Vendor errors are translated here, at the boundary (`map_api_errors`). Start-up never hangs:
it has a deadline, and a pod that cannot start (image pull, scheduling, quota, a container
that exits) is deleted and reported with its reason and its recent events.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream as ws_stream

from llm_sandbox.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    PodStartError,
    SandboxRuntimeError,
)

logger = logging.getLogger("llm_sandbox")

START_TIMEOUT_ENV = "LLM_SANDBOX_KUBE_START_TIMEOUT"
DEFAULT_START_TIMEOUT = 120.0
"""Seconds a session pod may take to be running (image pull included) before we give up."""
DELETE_WAIT = 30.0
"""Seconds close() waits for the pod to be gone (its processes dead) before moving on."""

# Waiting reasons that will not resolve by themselves (a retrying pull stays broken here).
FATAL_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)


def start_timeout() -> float:
    raw = os.environ.get(START_TIMEOUT_ENV)
    if not raw:
        return DEFAULT_START_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise ConfigurationError(
            f"{START_TIMEOUT_ENV}={raw!r} must be a positive number of seconds"
        )
    return value


def _api_message(exc: ApiException) -> str:
    import json

    with contextlib.suppress(Exception):
        message = json.loads(exc.body or "").get("message")
        if message:
            return str(message)
    return str(exc.reason or exc.body or exc)


@contextlib.contextmanager
def map_api_errors(action: str, host: str) -> Iterator[None]:
    """Translate the client's errors into ours, naming what to change."""
    try:
        yield
    except ApiException as exc:
        message = _api_message(exc)
        if exc.status == 0 or exc.status is None:
            raise BackendUnavailableError(
                f"{action}: cannot reach the Kubernetes API at {host} ({message}); check "
                "KUBECONFIG or pass client=CoreV1Api(...)"
            ) from exc
        # RBAC says "User ... cannot create resource"; quotas and admission refuse otherwise.
        if exc.status == 401 or (exc.status == 403 and " cannot " in message):
            raise BackendUnavailableError(
                f"{action}: the Kubernetes API refused our credentials ({exc.status}: {message});"
                " grant the service account create/get/list/delete on pods and create on pods/exec"
            ) from exc
        raise SandboxRuntimeError(f"{action}: {exc.status} {message}") from exc
    except (OSError, ConnectionError) as exc:
        raise BackendUnavailableError(
            f"{action}: cannot reach the Kubernetes API at {host} ({exc}); check KUBECONFIG or "
            "pass client=CoreV1Api(...)"
        ) from exc
    except Exception as exc:
        # urllib3's MaxRetryError and friends: the API server did not answer.
        if type(exc).__module__.startswith("urllib3"):
            raise BackendUnavailableError(
                f"{action}: cannot reach the Kubernetes API at {host} ({exc}); check "
                "KUBECONFIG or pass client=CoreV1Api(...)"
            ) from exc
        raise


class PodApi:
    """The pod endpoints one session uses, in one namespace."""

    def __init__(self, core: Any, namespace: str, *, owns_client: bool = False) -> None:
        self.core = core
        self.namespace = namespace
        self.host = str(getattr(core.api_client.configuration, "host", "?"))
        self._owns_client = owns_client

    def close(self) -> None:
        """Release the client's connections if this session created the client."""
        if self._owns_client:
            with contextlib.suppress(Exception):
                self.core.api_client.close()

    def errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        return map_api_errors(action, self.host)

    def create(self, pod: Mapping[str, Any]) -> str:
        """Create the pod; returns its name (chosen by the server for `generateName`)."""
        wanted = pod["metadata"].get("name") or pod["metadata"].get("generateName", "")
        try:
            with self.errors(f"creating pod {wanted} in namespace {self.namespace}"):
                created = self.core.create_namespaced_pod(self.namespace, dict(pod))
        except SandboxRuntimeError as exc:
            cause = exc.__cause__
            status = getattr(cause, "status", None)
            message = _api_message(cause) if isinstance(cause, ApiException) else str(exc)
            if status == 409:
                raise ConfigurationError(
                    f"a pod named {wanted!r} already exists in namespace {self.namespace}; "
                    "leave metadata.name out of pod_manifest (a unique name is generated) or "
                    "use metadata.generateName"
                ) from exc
            if status == 404:
                raise ConfigurationError(
                    f"namespace {self.namespace!r} does not exist ({message}); create it or "
                    "pass kube_namespace="
                ) from exc
            if status == 403:  # a quota or an admission controller refused the pod
                raise PodStartError(
                    f"the cluster refused pod {wanted}: {message}; for a quota lower the "
                    "limits (ResourceLimits, pod_manifest resources) or raise the namespace's "
                    "quota; for a policy, change the pod_manifest field it names",
                    pod=wanted,
                    reason="Forbidden",
                ) from exc
            if status == 422:
                raise ConfigurationError(f"the pod manifest is invalid: {message}") from exc
            raise
        return str(created.metadata.name)

    def read(self, name: str) -> Any:
        with self.errors(f"reading pod {name}"):
            return self.core.read_namespaced_pod(name, self.namespace)

    def read_if_exists(self, name: str) -> Any:
        """The pod, or None once it no longer exists (deleted)."""
        with self.errors(f"reading pod {name}"):
            try:
                return self.core.read_namespaced_pod(name, self.namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise

    def events(self, name: str, limit: int = 8) -> list[str]:
        """The pod's most recent events as `Reason: message` lines (best effort)."""
        try:
            found = self.core.list_namespaced_event(
                self.namespace, field_selector=f"involvedObject.name={name}"
            ).items
        except Exception as exc:  # events are a courtesy; their absence is said, not fatal
            return [f"(events unavailable: {exc})"]

        def when(event: Any) -> float:
            stamp = event.last_timestamp or event.event_time or event.first_timestamp
            return stamp.timestamp() if stamp is not None else 0.0

        ordered = sorted(found, key=when)[-limit:]
        return [f"{e.reason}: {e.message}" for e in ordered]

    def wait_running(self, name: str, container: str, timeout: float, *, ours: bool = True) -> None:
        """Return once the sandbox container runs; otherwise raise PodStartError (and delete
        the pod if it is `ours`)."""
        deadline = time.monotonic() + timeout
        pause = 0.05
        while True:
            pod = self.read(name)
            problem = _start_problem(pod, container)
            if problem is None and _running(pod, container):
                return
            if problem is not None:
                reason, detail = problem
                self._fail(name, reason, detail, ours=ours)
            if time.monotonic() >= deadline:
                phase = pod.status.phase if pod.status else "unknown"
                self._fail(
                    name,
                    "StartTimeout",
                    f"not running after {timeout:.0f} s (phase {phase}); set "
                    f"{START_TIMEOUT_ENV} to wait longer",
                    ours=ours,
                )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _fail(self, name: str, reason: str, detail: str, *, ours: bool) -> None:
        events = self.events(name)
        if ours:
            self.delete(name)
        shown = "; ".join(events) if events else "no events"
        raise PodStartError(
            f"pod {name} did not start: {reason}: {detail} (recent events: {shown})"
            + ("; the pod was deleted" if ours else ""),
            pod=name,
            reason=reason,
            events=events,
        )

    def exec(self, name: str, container: str, argv: Sequence[str]) -> Any:
        """Start `argv` (never a shell line) in the container; the client's WSClient."""
        with self.errors(f"starting a command in pod {name}"):
            return ws_stream(
                self.core.connect_get_namespaced_pod_exec,
                name,
                self.namespace,
                command=list(argv),
                container=container,
                stdin=True,
                stdout=True,
                stderr=True,
                tty=False,
                binary=True,
                _preload_content=False,
            )

    def delete(self, name: str, wait: float = DELETE_WAIT, request_timeout: float = 60.0) -> bool:
        """Delete at once (no grace period), waiting up to `wait` s; True once it is gone."""
        with contextlib.suppress(SandboxRuntimeError), self.errors(f"deleting pod {name}"):
            try:
                self.core.delete_namespaced_pod(
                    name,
                    self.namespace,
                    grace_period_seconds=0,
                    propagation_policy="Foreground",
                    _request_timeout=request_timeout,
                )
            except ApiException as exc:
                if exc.status == 404:
                    return True
                raise
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                self.core.read_namespaced_pod(name, self.namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return True
            except Exception:
                break
            time.sleep(0.1)
        logger.warning(
            "pod %s/%s was not gone %.0f s after deletion; `llm-sandbox gc` removes it later",
            self.namespace,
            name,
            wait,
        )
        return False


def _container_status(pod: Any, container: str) -> Any:
    for status in (pod.status.container_statuses if pod.status else None) or []:
        if status.name == container:
            return status
    return None


def _running(pod: Any, container: str) -> bool:
    status = _container_status(pod, container)
    return bool(pod.status and pod.status.phase == "Running" and status and status.state.running)


def _start_problem(pod: Any, container: str) -> tuple[str, str] | None:
    """(reason, detail) when the pod cannot become running, else None (still coming up)."""
    status = pod.status
    if status is None:
        return None
    if status.phase in ("Failed", "Succeeded"):
        return status.reason or status.phase, status.message or "the pod ended"
    for condition in status.conditions or []:
        unschedulable = condition.reason == "Unschedulable" and condition.status == "False"
        if condition.type == "PodScheduled" and unschedulable:
            return "Unschedulable", condition.message or "no node can run the pod"
    state = _container_status(pod, container)
    if state is not None and state.state is not None:
        waiting = state.state.waiting
        if waiting is not None and waiting.reason in FATAL_WAITING:
            return waiting.reason, waiting.message or f"image {state.image}"
        terminated = state.state.terminated
        if terminated is not None:
            return (
                terminated.reason or "ContainerExited",
                f"the container exited with code {terminated.exit_code} "
                f"({terminated.message or 'no message'})",
            )
    return None
