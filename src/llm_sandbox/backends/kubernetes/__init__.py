"""Kubernetes backend: one hardened pod per session, through the official `kubernetes` client.

This package only describes the backend; `client.py` (the client and the backend object),
`manifest.py` (the pod), `policy.py` (the no-network NetworkPolicy) and `sandbox.py` (how
runs work) import the SDK, so they are imported only when a session opens.
"""

from __future__ import annotations

from collections.abc import Callable

from llm_sandbox.backends.base import Backend
from llm_sandbox.backends.kubernetes.options import KubernetesOptions
from llm_sandbox.backends.registry import BackendCapabilities, BackendDefinition


def _backend() -> Backend:
    from llm_sandbox.backends.kubernetes.client import KubernetesBackend

    return KubernetesBackend()


def _gc(all_: bool, alive: Callable[[str], bool]) -> list[str]:
    try:
        from llm_sandbox.backends.kubernetes.client import gc_pods
    except ImportError:  # the kubernetes extra is not installed: nothing of ours to clean
        return []
    return gc_pods(all_, alive)


def _doctor_facts() -> dict[str, object]:
    from llm_sandbox.backends.kubernetes.client import doctor_facts

    return doctor_facts()


KUBERNETES = BackendDefinition(
    name="kubernetes",
    factory=_backend,
    capabilities=BackendCapabilities(
        container_images=True,
        pooling=True,
        filesystem_isolation=True,
        network_isolation=True,
        daemon_required=True,
    ),
    builtin=True,
    options=KubernetesOptions,
    extra="kubernetes",
    sdk="kubernetes",
    implied_by=frozenset({"pod_manifest", "kube_namespace"}),
    gc=_gc,
    doctor_facts=_doctor_facts,
)
