"""A Kubernetes API emulator for tests: a TEST DOUBLE, not a Kubernetes.

It serves the few endpoints of the core/v1 API that the kubernetes backend uses, over plain
HTTP on 127.0.0.1 (random port), and runs each pod as one real container on the local Docker
engine (see `runtime.py` for the pod fields it applies). The official Python client talks to
it exactly as to an API server, through a kubeconfig (`KubeEmulator.write_kubeconfig`).

Served:
* `POST/GET /api/v1/namespaces/{ns}/pods` (create; list with `labelSelector`: `k=v`, `k!=v`,
  `k`, `!k`), `GET /api/v1/pods` (all namespaces), `GET/DELETE .../pods/{name}`;
* `GET .../events` with `fieldSelector=involvedObject.name=...`;
* `GET/POST /apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies` and
  `GET/PUT/DELETE .../networkpolicies/{name}`: stored as given. `forbid_network_policies=True`
  (constructor or attribute) answers every networkpolicies request 403 Forbidden the way RBAC
  words it, to test credentials without those verbs.
* NetworkPolicy enforcement, the subset llm-sandbox relies on, decided when a pod's container
  is created: a pod selected (`podSelector.matchLabels`, and `matchExpressions` with In, NotIn,
  Exists, DoesNotExist) by a policy of its namespace whose `policyTypes` include Egress and
  that has no egress rules gets no network at all (its container runs with Docker's
  `network_mode="none"`: loopback only). NOT enforced: policies with egress rules (such pods
  keep the bridge network, as if allowed everything), ingress isolation on its own (pods keep
  the bridge network, reachable from the host), namespaceSelector/ipBlock peers, policies
  created, edited or deleted after a pod started (a real CNI applies them to running pods),
  label changes of running pods.
* `GET|POST .../pods/{name}/exec`: the websocket upgrade with the `v5.channel.k8s.io` /
  `v4.channel.k8s.io` channel protocol: stdin, stdout, stderr, the status channel (`Status`
  Success or NonZeroExitCode with the ExitCode cause), v5's close-stdin message. The command
  runs as a Docker exec in the pod's container.
* A pod's life: Pending → scheduled (or `PodScheduled=False, Unschedulable` with a
  FailedScheduling event when it requests more CPU or memory than this machine has) → image
  present (else `ErrImagePull` then `ImagePullBackOff` with Failed/BackOff events; no
  registry is ever contacted) → Running; `runAsNonRoot` with a root user →
  `CreateContainerConfigError`; `activeDeadlineSeconds` → Failed/DeadlineExceeded; a
  container that exits → Failed with its exit code (OOMKilled when the engine says so).
  An unknown `runtimeClassName` is refused at creation (403, like the RuntimeClass admission).

NOT emulated (only a real cluster proves these): authentication and RBAC (any token is
accepted), namespaces as objects (every name exists), admission beyond the above (Pod Security
Standards, quotas: `ResourceQuota` refusals are not produced), the scheduler's real decisions
and several nodes, image pulls, NetworkPolicy beyond the subset above, service
accounts (nothing is mounted whatever `automountServiceAccountToken` says), graceful
termination (deletion kills at once), disk-backed `emptyDir` (every emptyDir is a tmpfs of its
sizeLimit; a kubelet enforces disk ones by eviction), `fsGroup` ownership, watches,
resourceVersion semantics, multi-container pods, TLS. A real cluster's runtime (containerd,
CRI-O) and kubelet differ in details the Docker engine does not show.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
import select
import socket
import struct
import threading
import time
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from . import websocket as ws
from .runtime import RUNTIME_CLASSES, DockerKubelet, PodRejected, requests

PULL_BACKOFF_AFTER = 0.3


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _matches(labels: Mapping[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels, matchExpressions) against a pod's labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for term in selector.get("matchExpressions") or []:
        key, operator, values = term["key"], term["operator"], term.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


class Pod:
    def __init__(self, namespace: str, manifest: dict[str, Any]) -> None:
        self.namespace = namespace
        self.manifest = manifest
        self.container_id: str | None = None
        self.started: float | None = None
        self.lock = threading.Lock()
        meta = manifest.setdefault("metadata", {})
        meta.update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            creationTimestamp=_now(),
            resourceVersion="1",
        )
        container = manifest["spec"]["containers"][0]
        self.container_name = container["name"]
        self.image = container.get("image", "")
        manifest["status"] = {
            "phase": "Pending",
            "conditions": [],
            "containerStatuses": [self._container_status({"waiting": {"reason": "Pending"}})],
        }

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.manifest["metadata"].get("labels") or {})

    def _container_status(self, state: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": self.container_name,
            "image": self.image,
            "imageID": "",
            "ready": "running" in state,
            "restartCount": 0,
            "state": state,
        }

    def set_state(
        self, phase: str, state: dict[str, Any], reason: str | None = None, message: str = ""
    ) -> None:
        status = self.manifest["status"]
        status["phase"] = phase
        status["containerStatuses"] = [self._container_status(state)]
        if reason:
            status["reason"] = reason
            status["message"] = message
        ready = "True" if "running" in state else "False"
        conditions = [c for c in status["conditions"] if c["type"] not in ("Ready",)]
        conditions.append({"type": "Ready", "status": ready, "lastTransitionTime": _now()})
        status["conditions"] = conditions

    def set_condition(self, kind: str, value: str, reason: str = "", message: str = "") -> None:
        status = self.manifest["status"]
        status["conditions"] = [c for c in status["conditions"] if c["type"] != kind] + [
            {
                "type": kind,
                "status": value,
                "reason": reason or None,
                "message": message or None,
                "lastTransitionTime": _now(),
            }
        ]


class KubeEmulator:
    """`start()`, point a client at `url` (or `write_kubeconfig`), `stop()` at the end."""

    def __init__(self, *, forbid_network_policies: bool = False) -> None:
        self.forbid_network_policies = forbid_network_policies
        self.policies: dict[tuple[str, str], dict[str, Any]] = {}
        self.instance = secrets.token_hex(4)
        self.kubelet = DockerKubelet(self.instance)
        self.pods: dict[tuple[str, str], Pod] = {}
        self.events: list[dict[str, Any]] = []
        self.lock = threading.RLock()
        self.cpus = float(os.cpu_count() or 1)
        self.memory = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> KubeEmulator:
        for target in (self._server.serve_forever, self._watch):
            thread = threading.Thread(target=target, daemon=True, name="kube-emulator")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self.kubelet.remove_all()

    def write_kubeconfig(
        self, path: Path, namespace: str = "default", context: str = "kube-emulator"
    ) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kube-emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "kube-emulator", "user": {"token": "emulator"}}],
            "contexts": [
                {
                    "name": context,
                    "context": {
                        "cluster": "kube-emulator",
                        "user": "kube-emulator",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": context,
        }
        path.write_text(json.dumps(config, indent=2))
        return path

    # --- objects -------------------------------------------------------------------------------
    def event(self, pod: Pod, reason: str, message: str, kind: str = "Normal") -> None:
        stamp = _now()
        with self.lock:
            self.events.append(
                {
                    "metadata": {
                        "name": f"{pod.name}.{uuid.uuid4().hex[:10]}",
                        "namespace": pod.namespace,
                    },
                    "involvedObject": {
                        "kind": "Pod",
                        "name": pod.name,
                        "namespace": pod.namespace,
                        "uid": pod.manifest["metadata"]["uid"],
                    },
                    "reason": reason,
                    "message": message,
                    "type": kind,
                    "count": 1,
                    "firstTimestamp": stamp,
                    "lastTimestamp": stamp,
                    "source": {"component": "kube-emulator"},
                }
            )

    def create(self, namespace: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        meta = body.setdefault("metadata", {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                return 422, _status(422, "Invalid", "metadata.name or generateName is required")
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        containers = (body.get("spec") or {}).get("containers") or []
        if not containers or not all(c.get("name") and c.get("image") for c in containers):
            return 422, _status(422, "Invalid", "spec.containers[*].name and image are required")
        runtime_class = body["spec"].get("runtimeClassName")
        if runtime_class and (
            runtime_class not in RUNTIME_CLASSES
            or RUNTIME_CLASSES[runtime_class] not in self.kubelet.runtimes
        ):
            message = f'pod rejected: RuntimeClass "{runtime_class}" not found'
            return 403, _status(403, "Forbidden", message)
        with self.lock:
            key = (namespace, meta["name"])
            if key in self.pods:
                message = f'pods "{meta["name"]}" already exists'
                return 409, _status(409, "AlreadyExists", message)
            pod = Pod(namespace, body)
            self.pods[key] = pod
        threading.Thread(target=self._bring_up, args=(pod,), daemon=True).start()
        return 201, pod.manifest

    def _bring_up(self, pod: Pod) -> None:
        cpu, memory = requests(pod.manifest)
        if cpu > self.cpus or memory > self.memory:
            short = "cpu" if cpu > self.cpus else "memory"
            message = f"0/1 nodes are available: 1 Insufficient {short}."
            with pod.lock:
                pod.set_condition("PodScheduled", "False", "Unschedulable", message)
            self.event(pod, "FailedScheduling", message, "Warning")
            return
        with pod.lock:
            pod.set_condition("PodScheduled", "True")
        self.event(pod, "Scheduled", f"Successfully assigned {pod.namespace}/{pod.name}")
        if not self.kubelet.image_present(pod.image):
            message = f'Failed to pull image "{pod.image}": not found (the emulator pulls nothing)'
            with pod.lock:
                pod.set_state(
                    "Pending", {"waiting": {"reason": "ErrImagePull", "message": message}}
                )
            self.event(pod, "Failed", message, "Warning")
            time.sleep(PULL_BACKOFF_AFTER)
            backoff = f'Back-off pulling image "{pod.image}"'
            with pod.lock:
                pod.set_state(
                    "Pending", {"waiting": {"reason": "ImagePullBackOff", "message": backoff}}
                )
            self.event(pod, "BackOff", backoff, "Warning")
            return
        try:
            container_id = self.kubelet.run(
                pod.namespace, pod.manifest, network=not self.egress_denied(pod)
            )
        except PodRejected as exc:
            with pod.lock:
                state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
                pod.set_state("Pending", state)
            self.event(pod, "Failed", f"Error: {exc}", "Warning")
            return
        except Exception as exc:
            with pod.lock:
                pod.set_state("Pending", {"waiting": {"reason": "RunContainerError"}})
            self.event(pod, "Failed", f"Error: {exc}", "Warning")
            return
        with pod.lock, self.lock:
            if (pod.namespace, pod.name) not in self.pods:  # deleted meanwhile
                self.kubelet.remove(container_id)
                return
            pod.container_id = container_id
            pod.started = time.monotonic()
            pod.set_state("Running", {"running": {"startedAt": _now()}})
            pod.manifest["status"]["startTime"] = _now()
        self.event(pod, "Started", f"Started container {pod.container_name}")

    def _watch(self) -> None:
        """The kubelet's loop: deadlines and containers that ended."""
        while not self._stopping.wait(0.5):
            with self.lock:
                pods = list(self.pods.values())
            for pod in pods:
                with contextlib.suppress(Exception):
                    self._check(pod)

    def _check(self, pod: Pod) -> None:
        with pod.lock:
            if pod.container_id is None or pod.manifest["status"]["phase"] != "Running":
                return
            deadline = pod.manifest["spec"].get("activeDeadlineSeconds")
            assert pod.started is not None
            if deadline is not None and time.monotonic() - pod.started > deadline:
                self.kubelet.kill(pod.container_id)
                message = f"Pod was active on the node longer than {deadline} s"
                state = {"terminated": {"exitCode": 137, "reason": "DeadlineExceeded"}}
                pod.set_state("Failed", state, "DeadlineExceeded", message)
                self.event(pod, "DeadlineExceeded", message, "Warning")
                return
            state = self.kubelet.state(pod.container_id)
            if state and not state.get("Running"):
                reason = "OOMKilled" if state.get("OOMKilled") else "Error"
                exit_code = state.get("ExitCode")
                code = exit_code if isinstance(exit_code, int) else 0
                terminated = {"exitCode": code, "reason": reason if code else "Completed"}
                pod.set_state("Failed" if code else "Succeeded", {"terminated": terminated})

    def get(self, namespace: str, name: str) -> Pod | None:
        with self.lock:
            pod = self.pods.get((namespace, name))
        if pod is not None:
            with contextlib.suppress(Exception):
                self._check(pod)
        return pod

    def delete(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            pod = self.pods.pop((namespace, name), None)
        if pod is None:
            return None
        with pod.lock:
            if pod.container_id is not None:
                # Like a kubelet, after the API server has answered: a runtime that is slow to
                # kill (an exec stuck in its set-up) must not hold the DELETE up.
                threading.Thread(
                    target=self.kubelet.remove, args=(pod.container_id,), daemon=True
                ).start()
            pod.manifest["metadata"]["deletionTimestamp"] = _now()
        self.event(pod, "Killing", f"Stopping container {pod.container_name}")
        return pod.manifest

    def list_pods(self, namespace: str | None, selector: str) -> list[dict[str, Any]]:
        with self.lock:
            pods = list(self.pods.values())
        return [
            pod.manifest
            for pod in pods
            if (namespace is None or pod.namespace == namespace) and _matches(pod.labels, selector)
        ]

    def list_events(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        wanted = dict(
            term.split("=", 1) for term in filter(None, selector.split(",")) if "=" in term
        )
        with self.lock:
            events = list(self.events)
        found = []
        for event in events:
            involved = event["involvedObject"]
            fields = {f"involvedObject.{k}": v for k, v in involved.items()}
            if event["metadata"]["namespace"] == namespace and all(
                fields.get(k) == v for k, v in wanted.items()
            ):
                found.append(event)
        return found

    # --- NetworkPolicy ---------------------------------------------------------------------
    def egress_denied(self, pod: Pod) -> bool:
        """Whether a policy of the pod's namespace denies it every egress (see the docstring)."""
        with self.lock:
            policies = [p for (ns, _), p in self.policies.items() if ns == pod.namespace]
        for found in policies:
            spec = found.get("spec") or {}
            types = spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else [])
            denies = "Egress" in types and not spec.get("egress")
            if denies and _selects(spec.get("podSelector") or {}, pod.labels):
                return True
        return False

    def policy_request(
        self, method: str, namespace: str, name: str | None, body: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any]]:
        if self.forbid_network_policies:
            verb = {"GET": "list" if name is None else "get", "POST": "create"}.get(
                method, method.lower()
            )
            message = (
                f"networkpolicies.networking.k8s.io{'' if name is None else f' {name!r}'} is "
                f'forbidden: User "system:serviceaccount:{namespace}:default" cannot {verb} '
                f'resource "networkpolicies" in API group "networking.k8s.io" in the '
                f'namespace "{namespace}"'
            )
            return 403, _status(403, "Forbidden", message)
        with self.lock:
            if name is None and method == "GET":
                items = [p for (ns, _), p in self.policies.items() if ns == namespace]
                listing = _listing("NetworkPolicyList", items)
                listing["apiVersion"] = "networking.k8s.io/v1"
                return 200, listing
            if name is None and method == "POST":
                assert body is not None
                meta = body.setdefault("metadata", {})
                if not meta.get("name"):
                    return 422, _status(422, "Invalid", "metadata.name is required")
                if (namespace, meta["name"]) in self.policies:
                    message = f'networkpolicies.networking.k8s.io "{meta["name"]}" already exists'
                    return 409, _status(409, "AlreadyExists", message)
                meta.update(
                    namespace=namespace,
                    uid=str(uuid.uuid4()),
                    creationTimestamp=_now(),
                    resourceVersion="1",
                )
                body.setdefault("apiVersion", "networking.k8s.io/v1")
                body.setdefault("kind", "NetworkPolicy")
                self.policies[(namespace, meta["name"])] = body
                return 201, body
            key = (namespace, name or "")
            missing = _status(
                404, "NotFound", f'networkpolicies.networking.k8s.io "{name}" not found'
            )
            if key not in self.policies:
                return 404, missing
            if method == "GET":
                return 200, self.policies[key]
            if method == "DELETE":
                return 200, self.policies.pop(key)
            if method == "PUT" and body is not None:
                body.setdefault("metadata", {}).update(namespace=namespace, name=name)
                self.policies[key] = body
                return 200, body
        return 405, _status(405, "MethodNotAllowed", f"{method} networkpolicies")

    # --- exec ----------------------------------------------------------------------------------
    def exec_bridge(self, client: socket.socket, pod: Pod, argv: list[str], v5: bool) -> None:
        """Run argv in the pod's container, relaying channel frames until it ends."""
        with contextlib.suppress(OSError):  # as a Go API server does (Go's default)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        api = self.kubelet.client.api
        assert pod.container_id is not None
        exec_id = api.exec_create(pod.container_id, argv, stdin=True, stdout=True, stderr=True)
        raw = api.exec_start(exec_id, socket=True)
        engine: socket.socket = getattr(raw, "_sock", raw)
        buffer = bytearray()
        client_open = True
        try:
            while True:
                readable, _, _ = select.select(
                    [engine, client] if client_open else [engine], [], [], 1.0
                )
                if client in readable:
                    client_open = self._from_client(client, engine, v5)
                if engine in readable:
                    data = engine.recv(65536)
                    if not data:
                        break
                    buffer += data
                    while len(buffer) >= 8:
                        size = struct.unpack(">I", buffer[4:8])[0]
                        if len(buffer) < 8 + size:
                            break
                        channel = 2 if buffer[0] == 2 else 1
                        client.sendall(
                            ws.frame(ws.OP_BINARY, bytes([channel]) + bytes(buffer[8 : 8 + size]))
                        )
                        del buffer[: 8 + size]
        except (ConnectionError, OSError):
            return
        finally:
            with contextlib.suppress(OSError):
                engine.close()
                raw.close()
        code = self._exit_code(exec_id)
        if code == 0:
            status: dict[str, Any] = {"metadata": {}, "status": "Success"}
        else:
            status = _status(
                0, "NonZeroExitCode", f"command terminated with non-zero exit code: {code}"
            )
            status["details"] = {"causes": [{"reason": "ExitCode", "message": str(code)}]}
            del status["code"]
        with contextlib.suppress(OSError):
            client.sendall(ws.frame(ws.OP_BINARY, b"\x03" + json.dumps(status).encode()))
            client.sendall(ws.frame(ws.OP_CLOSE, struct.pack(">H", 1000)))

    @staticmethod
    def _from_client(client: socket.socket, engine: socket.socket, v5: bool) -> bool:
        """Handle one client message; False once the client closed."""
        opcode, payload = ws.read_frame(client)
        if opcode == ws.OP_CLOSE:
            with contextlib.suppress(OSError):
                engine.shutdown(socket.SHUT_WR)
            return False
        if opcode == ws.OP_PING:
            client.sendall(ws.frame(ws.OP_PONG, payload))
        elif opcode in (ws.OP_BINARY, ws.OP_TEXT) and payload:
            channel, data = payload[0], payload[1:]
            if channel == 0 and data:
                engine.sendall(data)
            elif v5 and channel == 255 and data[:1] == b"\x00":
                engine.shutdown(socket.SHUT_WR)
        return True

    def _exit_code(self, exec_id: str) -> int:
        api = self.kubelet.client.api
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            info = api.exec_inspect(exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            time.sleep(0.01)
        return 255


def _handler(emulator: KubeEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, code: int, body: Mapping[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _body(self) -> dict[str, Any]:
            size = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(size) if size else b""
            return json.loads(raw) if raw else {}

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            parts = [p for p in url.path.split("/") if p]
            one = {k: v[0] for k, v in query.items()}
            if parts[:4] == ["apis", "networking.k8s.io", "v1", "namespaces"] and (
                len(parts) in (6, 7) and parts[5] == "networkpolicies"
            ):
                body = self._body() if method in ("POST", "PUT") else None
                if method == "DELETE":
                    self._body()
                name = parts[6] if len(parts) == 7 else None
                code, answer = emulator.policy_request(method, parts[4], name, body)
                return self._send(code, answer)
            if parts == ["api", "v1", "pods"] and method == "GET":
                items = emulator.list_pods(None, one.get("labelSelector", ""))
                return self._send(200, _listing("PodList", items))
            if len(parts) < 5 or parts[:3] != ["api", "v1", "namespaces"]:
                return self._send(404, _status(404, "NotFound", f"no route {url.path}"))
            namespace, kind, rest = parts[3], parts[4], parts[5:]
            if kind == "events" and not rest and method == "GET":
                items = emulator.list_events(namespace, one.get("fieldSelector", ""))
                return self._send(200, _listing("EventList", items))
            if kind != "pods":
                return self._send(404, _status(404, "NotFound", f"no route {url.path}"))
            if not rest:
                if method == "POST":
                    code, body = emulator.create(namespace, self._body())
                    return self._send(code, body)
                if method == "GET":
                    items = emulator.list_pods(namespace, one.get("labelSelector", ""))
                    return self._send(200, _listing("PodList", items))
            name = rest[0]
            missing = _status(404, "NotFound", f'pods "{name}" not found')
            if len(rest) == 1 and method == "GET":
                pod = emulator.get(namespace, name)
                return self._send(200, pod.manifest) if pod else self._send(404, missing)
            if len(rest) == 1 and method == "DELETE":
                self._body()
                deleted = emulator.delete(namespace, name)
                return self._send(200, deleted) if deleted else self._send(404, missing)
            if rest[1:] == ["exec"] and method in ("GET", "POST"):
                return self._exec(namespace, name, query)
            return self._send(405, _status(405, "MethodNotAllowed", f"{method} {url.path}"))

        def _exec(self, namespace: str, name: str, query: dict[str, list[str]]) -> None:
            pod = emulator.get(namespace, name)
            if pod is None:
                return self._send(404, _status(404, "NotFound", f'pods "{name}" not found'))
            if pod.manifest["status"]["phase"] != "Running" or pod.container_id is None:
                message = f"container {pod.container_name} is not running"
                return self._send(400, _status(400, "BadRequest", message))
            key = self.headers.get("Sec-WebSocket-Key")
            offered = [
                p.strip() for p in (self.headers.get("Sec-WebSocket-Protocol") or "").split(",")
            ]
            protocol = next(
                (p for p in ("v5.channel.k8s.io", "v4.channel.k8s.io") if p in offered), None
            )
            if not key or protocol is None:
                return self._send(400, _status(400, "BadRequest", "websocket upgrade required"))
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", ws.accept_key(key))
            self.send_header("Sec-WebSocket-Protocol", protocol)
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            emulator.exec_bridge(
                self.connection, pod, query.get("command", []), protocol.startswith("v5")
            )

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_DELETE(self) -> None:
            self._route("DELETE")

        def do_PUT(self) -> None:
            self._route("PUT")

    return Handler


def _listing(kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}
