"""The options the Kubernetes backend understands (beyond the common ones)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from llm_sandbox.config import BackendOptions, check_type
from llm_sandbox.exceptions import ConfigurationError


@dataclass(frozen=True)
class KubernetesOptions(BackendOptions):
    image: str | None = None
    """The sandbox container's image; None: the language's default image."""
    client: object | None = None
    """Your own `kubernetes.client.CoreV1Api` (or `ApiClient`)."""
    pod_manifest: Mapping[str, object] | None = None
    """A pod manifest honoured as given; our hardened defaults fill only what it leaves unset."""
    kube_namespace: str | None = None
    """The namespace of session pods; else the kubeconfig context's, else `default`."""
    container_id: str | None = None
    """Run in this existing pod (its name, in `kube_namespace`) instead of creating one; it
    keeps running after the session (see `agent/attached.py`)."""
    keep_template: bool = False
    """Accepted for code written for container engines: a pod never builds an image, so there
    is no template to keep or remove (0.3.x ignored it here too)."""

    accepted_by_hint: ClassVar[Mapping[str, str]] = {
        "runtime_config": "Describe resources and security settings in pod_manifest instead."
    }

    def __post_init__(self) -> None:
        for name in ("image", "kube_namespace", "container_id"):
            value = getattr(self, name)
            if value is not None:
                check_type(value, str, name, "a string")
        check_type(self.keep_template, bool, "keep_template", "True or False")
        if self.pod_manifest is not None:
            check_type(self.pod_manifest, Mapping, "pod_manifest", "a pod manifest (a dict)")
            if self.container_id is not None:
                raise ConfigurationError(
                    "pod_manifest= describes a new pod, and container_id= runs in an existing "
                    "one; pass only one of them"
                )
