"""The deploy manifests: the Role grants exactly the API calls the Kubernetes backend makes
(derived from its source), and the NetworkPolicy is the one the backend requires."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # comes with the kubernetes extra

from llm_sandbox.backends.kubernetes.policy import policy_manifest
from llm_sandbox.service.settings import load_settings

ROOT = Path(__file__).parents[2]
BACKEND = ROOT / "src" / "llm_sandbox" / "backends" / "kubernetes"
DEPLOY = ROOT / "deploy" / "kubernetes"

CALL = re.compile(
    r"\.(?P<verb>create|read|list|delete|patch|replace|connect_get|connect_post)"
    r"_namespaced_(?P<kind>[a-z]+(?:_[a-z]+)*?)(?P<sub>_exec)?\b"
)
VERBS = {
    "create": {"create"},
    "read": {"get"},
    "list": {"list"},
    "delete": {"delete"},
    "patch": {"patch"},
    "replace": {"update"},
    # a websocket exec is a GET upgrade; newer API servers check `create` on pods/exec
    "connect_get": {"get", "create"},
    "connect_post": {"create"},
}
RESOURCES = {
    "pod": ("", "pods"),
    "event": ("", "events"),
    "network_policy": ("networking.k8s.io", "networkpolicies"),
}


def calls_in_source() -> dict[tuple[str, str], set[str]]:
    """(API group, resource) -> verbs, from every namespaced call in the backend's source.

    Calls across all namespaces (`list_pod_for_all_namespaces`, used by `llm-sandbox gc
    --all`) are not namespaced: a Role cannot grant them and the service does not make them."""
    found: dict[tuple[str, str], set[str]] = {}
    for path in BACKEND.glob("*.py"):
        for match in CALL.finditer(path.read_text()):
            group, resource = RESOURCES[match["kind"]]
            if match["sub"]:
                resource += "/exec"
            found.setdefault((group, resource), set()).update(VERBS[match["verb"]])
    return found


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def test_role_grants_exactly_what_the_backend_calls() -> None:
    role = next(d for d in documents("role.yaml") if d["kind"] == "Role")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    derived = calls_in_source()
    assert ("", "pods/exec") in derived  # the derivation sees the exec
    assert granted == derived


def test_network_policy_is_the_backends() -> None:
    (policy,) = documents("networkpolicy.yaml")
    ours = policy_manifest()
    assert policy["metadata"]["name"] == ours["metadata"]["name"]
    assert policy["spec"] == ours["spec"]


def test_deployment_wires_service_account_config_and_probes(tmp_path: Path) -> None:
    docs = {d["kind"]: d for d in documents("deployment.yaml")}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == documents("serviceaccount.yaml")[0]["metadata"]["name"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    config = tmp_path / "service.toml"
    config.write_text(docs["ConfigMap"]["data"]["service.toml"])
    settings = load_settings(config, {})
    assert settings.backend == "kubernetes"
    assert settings.options == {"kube_namespace": "llm-sandbox"}
