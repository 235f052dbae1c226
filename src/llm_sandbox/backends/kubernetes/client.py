"""The Kubernetes client, and the backend object that opens session pods with it.

The client comes from `client=` (a configured `CoreV1Api`, or an `ApiClient`) or, by default,
from the kubeconfig the usual way (`KUBECONFIG`, else `~/.kube/config`), else from the
in-cluster service account. The namespace is `kube_namespace=`, else the kubeconfig
context's, else `default`. See `manifest.py` for the pod, `sandbox.py` for how runs work.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import kubernetes.client
import kubernetes.config
from kubernetes.client.exceptions import ApiException

from llm_sandbox.backends.base import Backend, Sandbox
from llm_sandbox.backends.kubernetes import manifest, policy
from llm_sandbox.backends.kubernetes.options import KubernetesOptions
from llm_sandbox.backends.kubernetes.pods import PodApi
from llm_sandbox.backends.kubernetes.sandbox import PodSandbox
from llm_sandbox.config import ResourceLimits, SessionConfig
from llm_sandbox.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    SandboxRuntimeError,
)
from llm_sandbox.language_handlers.base import RuntimeNeeds
from llm_sandbox.layout import LABEL

DEFAULT_NAMESPACE = "default"
_kube_config: Any = kubernetes.config  # typed package, but these loaders are unannotated


def default_client() -> tuple[Any, str | None]:
    """(CoreV1Api, the kubeconfig context's namespace) loaded the standard way."""
    # The client reads KUBECONFIG once, when imported; the variable may have changed since.
    config_file = os.environ.get("KUBECONFIG") or None
    try:
        api_client = _kube_config.new_client_from_config(config_file=config_file)
    except kubernetes.config.ConfigException as kube_exc:
        try:
            _kube_config.load_incluster_config()
        except kubernetes.config.ConfigException:
            raise BackendUnavailableError(
                f"no Kubernetes configuration found ({kube_exc}); set KUBECONFIG or create "
                "~/.kube/config, or pass client=kubernetes.client.CoreV1Api(...)"
            ) from kube_exc
        return kubernetes.client.CoreV1Api(), None
    namespace = None
    try:
        _, active = _kube_config.list_kube_config_contexts(config_file=config_file)
        namespace = (active or {}).get("context", {}).get("namespace")
    except kubernetes.config.ConfigException:
        pass
    return kubernetes.client.CoreV1Api(api_client), namespace


def core_api(client: Any) -> Any:
    """The user's `client=` as a CoreV1Api."""
    if isinstance(client, kubernetes.client.CoreV1Api):
        return client
    if isinstance(client, kubernetes.client.ApiClient):
        return kubernetes.client.CoreV1Api(client)
    raise ConfigurationError(
        f"client= for the kubernetes backend must be a kubernetes.client.CoreV1Api (or "
        f"ApiClient), got {type(client).__name__}"
    )


def pod_api(options: KubernetesOptions) -> PodApi:
    if options.client is not None:
        core, context_namespace = core_api(options.client), None
    else:
        core, context_namespace = default_client()
    namespace = options.kube_namespace or context_namespace or DEFAULT_NAMESPACE
    # A client we made is ours to close with the session; the user's stays open.
    return PodApi(core, namespace, owns_client=options.client is None)


def gc_pods(all_: bool, alive: Callable[[str], bool]) -> list[str]:
    """Delete orphaned session pods (see `llm_sandbox.cleanup`); a line per pod deleted.

    Looks in every namespace when the credentials allow, else in the context's namespace.
    Without a kubeconfig there is nothing to clean.
    """
    try:
        core, context_namespace = default_client()
    except BackendUnavailableError:
        return []
    api = PodApi(core, context_namespace or DEFAULT_NAMESPACE, owns_client=True)
    removed: list[str] = []
    try:
        with api.errors("listing session pods"):
            try:
                pods = core.list_pod_for_all_namespaces(label_selector=f"{LABEL}=1").items
            except ApiException as exc:
                if exc.status != 403:
                    raise
                pods = core.list_namespaced_pod(api.namespace, label_selector=f"{LABEL}=1").items
        for pod in pods:
            if all_ or manifest.orphaned(
                pod.metadata, pod.status.phase if pod.status else None, alive
            ):
                PodApi(core, pod.metadata.namespace).delete(pod.metadata.name, wait=10.0)
                removed.append(f"kubernetes pod {pod.metadata.namespace}/{pod.metadata.name}")
    except (BackendUnavailableError, SandboxRuntimeError):
        return removed  # an unreachable cluster has nothing we can clean now
    finally:
        api.close()
    return removed


class KubernetesBackend(Backend):
    name = "kubernetes"

    def open(self, config: SessionConfig, runtime: RuntimeNeeds) -> Sandbox:
        return PodSandbox(pod_api(config.options(KubernetesOptions)), config, runtime)


def doctor_facts() -> dict[str, object]:
    """What the default session pod asks the cluster to enforce, and where it runs."""
    core, namespace = default_client()
    pod = manifest.default_pod(
        image=None,
        workdir="/sandbox",
        limits=ResourceLimits(),
        environment={},
        session_timeout=None,
    )
    container = pod["spec"]["containers"][0]
    context = container["securityContext"]
    found: dict[str, object] = {
        "api_server": core.api_client.configuration.host,
        "namespace": namespace or DEFAULT_NAMESPACE,
        "runtime_class": pod["spec"].get("runtimeClassName") or "(cluster default)",
        "pod_seccomp": context["seccompProfile"]["type"],
        "pod_resources": container["resources"],
        "network_policy_label": f"{manifest.NETWORK_LABEL}=none",
        "no_network_policy": policy.status(core, namespace or DEFAULT_NAMESPACE),
        "process_limit_by": "rlimit (RLIMIT_NPROC, per-session uid)",
    }
    core.api_client.close()
    return found
