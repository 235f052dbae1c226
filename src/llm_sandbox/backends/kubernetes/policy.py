"""The deny-all NetworkPolicy that cuts session pods without network off the pod network.

A pod spec cannot switch the pod network off. Pods of sessions without network carry the
label `io.llm-sandbox.network=none` (see `manifest.py`); before creating such a pod the backend
makes sure its namespace holds `llm-sandbox-no-network`, a NetworkPolicy selecting exactly
those pods with `policyTypes: [Ingress, Egress]` and no rules: no traffic in or out.

* Idempotent: read it; create it when missing (a concurrent creator's 409 is fine); if it
  exists but differs from ours (someone edited it), refuse to open the session naming it.
* One check per (API server, namespace) per process: once the policy was seen (or made), later
  sessions in that namespace trust it. A policy deleted or edited afterwards goes unnoticed
  until the process restarts (`llm-sandbox doctor` reads it afresh).
* Without RBAC for it (403), the session refuses to open, saying what to grant.

Honest limit: a NetworkPolicy is enforced by the cluster's network plugin (CNI). Calico,
Cilium, Antrea, kube-router, ... enforce it; some plugins (flannel on its own, for one)
accept it and enforce nothing. The API offers no way to tell, so the
backend cannot detect a plugin that ignores the policy: check yours.
"""

from __future__ import annotations

import threading
from typing import Any

import kubernetes.client
from kubernetes.client.exceptions import ApiException

from llm_sandbox.backends.kubernetes import manifest
from llm_sandbox.backends.kubernetes.pods import _api_message, map_api_errors
from llm_sandbox.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    ControlUnavailableError,
    SandboxRuntimeError,
)
from llm_sandbox.layout import LABEL

POLICY_NAME = "llm-sandbox-no-network"
RBAC_HINT = "get and create on networkpolicies (API group networking.k8s.io)"

_ensured: set[tuple[str, str]] = set()
_lock = threading.Lock()


def policy_spec() -> dict[str, Any]:
    return {
        "podSelector": {"matchLabels": {manifest.NETWORK_LABEL: "none"}},
        "policyTypes": ["Ingress", "Egress"],
    }


def policy_manifest() -> dict[str, Any]:
    """Our NetworkPolicy: every pod labelled `io.llm-sandbox.network=none`, no traffic."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": POLICY_NAME, "labels": {LABEL: "1"}},
        "spec": policy_spec(),
    }


def differences(spec: dict[str, Any] | None) -> list[str]:
    """How a stored policy's spec (API field names) departs from ours; [] when it is ours."""
    spec = spec or {}
    found = []
    selector = spec.get("podSelector") or {}
    wanted = policy_spec()["podSelector"]
    if (selector.get("matchLabels") or {}) != wanted["matchLabels"] or selector.get(
        "matchExpressions"
    ):
        found.append(f"podSelector is {selector}, not {wanted}")
    if sorted(spec.get("policyTypes") or []) != ["Egress", "Ingress"]:
        found.append(f"policyTypes is {spec.get('policyTypes')}, not [Ingress, Egress]")
    for rules in ("ingress", "egress"):
        if spec.get(rules):
            found.append(f"it has {rules} rules (ours has none: deny all)")
    return found


def networking_api(core: Any) -> Any:
    """NetworkingV1Api over the same ApiClient (host, credentials) as the CoreV1Api."""
    return kubernetes.client.NetworkingV1Api(core.api_client)


def _host(core: Any) -> str:
    return str(getattr(core.api_client.configuration, "host", "?"))


def _refused(namespace: str, verb: str, exc: ApiException) -> ControlUnavailableError:
    return ControlUnavailableError(
        f"a session without network needs NetworkPolicy {POLICY_NAME} in namespace "
        f"{namespace}, and the Kubernetes API refused to {verb} it ({exc.status}: "
        f"{_api_message(exc)}); grant the credentials {RBAC_HINT} in namespace {namespace}, "
        f"or create the policy yourself (see `llm-sandbox doctor` / the README) and grant get, "
        f"or pass network=True to run with the pod network"
    )


def read(core: Any, namespace: str) -> dict[str, Any] | None:
    """The stored policy as a dict (API field names), None when absent. Raises ApiException."""
    api = networking_api(core)
    try:
        found = api.read_namespaced_network_policy(POLICY_NAME, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    stored: dict[str, Any] = core.api_client.sanitize_for_serialization(found)
    return stored


def _check(stored: dict[str, Any], namespace: str) -> None:
    problems = differences(stored.get("spec"))
    if problems:
        raise ControlUnavailableError(
            f"NetworkPolicy {POLICY_NAME} in namespace {namespace} is not the deny-all policy "
            f"llm-sandbox needs ({'; '.join(problems)}); sessions without network would not be "
            f"cut off. Delete it (kubectl delete networkpolicy {POLICY_NAME} -n {namespace}) "
            "so the next session recreates it, or restore its spec to podSelector "
            f"matchLabels {manifest.NETWORK_LABEL}=none, policyTypes [Ingress, Egress], no rules"
        )


def ensure(core: Any, namespace: str) -> None:
    """Make sure `namespace` holds our deny-all policy; raise if it cannot be guaranteed."""
    key = (_host(core), namespace)
    if key in _ensured:
        return
    with _lock:
        if key in _ensured:
            return
        with map_api_errors(f"ensuring NetworkPolicy {POLICY_NAME}", _host(core)):
            try:
                stored = read(core, namespace)
            except ApiException as exc:
                if exc.status == 403:
                    raise _refused(namespace, "read", exc) from exc
                raise
            if stored is None:
                try:
                    networking_api(core).create_namespaced_network_policy(
                        namespace, policy_manifest()
                    )
                except ApiException as exc:
                    if exc.status == 403:
                        raise _refused(namespace, "create", exc) from exc
                    if exc.status == 404:
                        raise ConfigurationError(
                            f"namespace {namespace!r} does not exist ({_api_message(exc)}); "
                            "create it or pass kube_namespace="
                        ) from exc
                    if exc.status != 409:  # 409: another process created it meanwhile
                        raise
                    stored = read(core, namespace)
            if stored is not None:
                _check(stored, namespace)
        _ensured.add(key)


def status(core: Any, namespace: str) -> str:
    """One line for `llm-sandbox doctor`: is the policy there and ours, or can it be made?

    Read-only: reads the policy afresh (not the cache) and never creates it.
    """
    where = f"{namespace}/{POLICY_NAME}"
    try:
        with map_api_errors(f"reading NetworkPolicy {where}", _host(core)):
            stored = read(core, namespace)
    except (SandboxRuntimeError, BackendUnavailableError) as exc:
        cause = exc.__cause__
        if not isinstance(cause, ApiException) or not cause.status:
            raise  # the API server is unreachable: the whole report says so
        if cause.status == 403:
            return (
                f"cannot read {where} (403: {_api_message(cause)}); sessions without network "
                f"will refuse to open until the credentials have {RBAC_HINT}"
            )
        return f"cannot read {where} ({cause.status}: {_api_message(cause)})"
    if stored is None:
        return (
            f"{where} missing; the first session without network creates it (needs create on "
            "networkpolicies)"
        )
    problems = differences(stored.get("spec"))
    if problems:
        return f"{where} differs from ours ({'; '.join(problems)}): sessions will refuse to open"
    return f"{where} present, deny-all (enforced only if the cluster's CNI implements it)"
