"""The session pod manifest (pure): hardened defaults, the user's manifest honoured as given."""

from __future__ import annotations

import os
import socket
import time
from types import SimpleNamespace
from typing import Any

from llm_sandbox.backends.agent.protocol import ulimits
from llm_sandbox.backends.kubernetes import manifest
from llm_sandbox.backends.kubernetes.channel import exit_code_from_status
from llm_sandbox.config import MiB, ResourceLimits
from llm_sandbox.layout import HOST_LABEL, LABEL, PID_LABEL


def _defaults(**overrides: object) -> dict[str, Any]:
    options: dict[str, object] = {
        "image": "img:1",
        "workdir": "/sandbox",
        "limits": ResourceLimits(),
        "environment": {},
        "session_timeout": None,
    }
    options.update(overrides)
    return manifest.default_pod(**options)  # type: ignore[arg-type]


def test_default_pod_is_hardened() -> None:
    pod = _defaults(session_timeout=60.0, environment={"A": "1"})
    spec = pod["spec"]
    container = spec["containers"][0]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] >= manifest.UID_RANGE[0]
    assert spec["securityContext"]["runAsUser"] == context["runAsUser"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 60 + manifest.DEADLINE_GRACE
    assert container["resources"]["limits"]["memory"] == "512Mi"
    assert container["resources"]["requests"]["memory"] == "512Mi"
    assert "cpu" in container["resources"]["limits"]
    assert container["env"] == [{"name": "A", "value": "1"}]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/sandbox", "/tmp"} <= mounts
    assert all("emptyDir" in v for v in spec["volumes"])
    labels = pod["metadata"]["labels"]
    assert labels[LABEL] == "1"
    assert labels[PID_LABEL] == str(os.getpid())
    assert labels[manifest.NETWORK_LABEL] == "none"
    assert "runtimeClassName" not in spec


def test_names_and_uids_are_unique_per_session() -> None:
    pods = [_defaults() for _ in range(20)]
    assert len({p["metadata"]["name"] for p in pods}) == 20
    uids = {p["spec"]["securityContext"]["runAsUser"] for p in pods}
    assert len(uids) > 15


def test_runtime_class_from_the_environment(monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv(manifest.RUNTIME_CLASS_ENV, "gvisor")
    assert _defaults()["spec"]["runtimeClassName"] == "gvisor"


def test_user_manifest_wins_and_defaults_fill_only_gaps() -> None:
    user = {
        "metadata": {"name": "mine", "labels": {"app": "sandbox"}},
        "spec": {
            "containers": [
                {
                    "name": "sandbox-container",
                    "image": "python:3.9",
                    "securityContext": {"runAsUser": 1000, "readOnlyRootFilesystem": False},
                    "resources": {"limits": {"memory": "256Mi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    "env": [{"name": "A", "value": "user"}],
                },
                {"name": "sidecar", "image": "other"},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }
    pod = manifest.pod_manifest(user, _defaults(environment={"A": "ours", "B": "x"}))
    assert pod["metadata"]["name"] == "mine"
    assert pod["metadata"]["labels"]["app"] == "sandbox"
    assert pod["metadata"]["labels"][LABEL] == "1"
    first, second = pod["spec"]["containers"]
    assert first["name"] == "sandbox-container"
    assert first["image"] == "python:3.9"
    assert first["securityContext"]["runAsUser"] == 1000
    assert first["securityContext"]["readOnlyRootFilesystem"] is False  # explicit opt-out kept
    assert first["securityContext"]["capabilities"] == {"drop": ["ALL"]}  # gap filled
    assert first["resources"]["limits"]["memory"] == "256Mi"
    assert "cpu" in first["resources"]["limits"]
    assert {m["mountPath"] for m in first["volumeMounts"]} >= {"/data", "/sandbox", "/tmp"}
    assert {e["name"]: e["value"] for e in first["env"]} == {"A": "user", "B": "x"}
    assert second == {"name": "sidecar", "image": "other"}
    assert {v["name"] for v in pod["spec"]["volumes"]} >= {"data", manifest.WORK_VOLUME}
    assert user["metadata"] == {"name": "mine", "labels": {"app": "sandbox"}}  # not mutated


def test_generate_name_is_left_to_the_server() -> None:
    pod = manifest.pod_manifest({"metadata": {"generateName": "job-"}}, _defaults())
    assert "name" not in pod["metadata"]
    assert pod["metadata"]["generateName"] == "job-"


def test_quantities_and_label_values() -> None:
    assert manifest.quantity(512 * MiB) == "512Mi"
    assert manifest.quantity(1000) == "1000"
    assert manifest.label_value("host name/with:odd*chars") == "host-name-with-odd-chars"
    assert len(manifest.label_value("x" * 100)) == 63


def test_orphans() -> None:
    here = manifest.label_value(socket.gethostname())

    def meta(labels: dict[str, str], annotations: dict[str, str] | None = None) -> object:
        return SimpleNamespace(labels=labels, annotations=annotations or {})

    def dead(pid: str) -> bool:
        return False

    def alive(pid: str) -> bool:
        return True

    mine = {HOST_LABEL: here, PID_LABEL: "1"}
    elsewhere = {HOST_LABEL: "another-host", PID_LABEL: "1"}
    assert manifest.orphaned(meta(mine), "Running", dead)
    assert not manifest.orphaned(meta(mine), "Running", alive)
    assert not manifest.orphaned(meta(elsewhere), "Running", dead)
    assert manifest.orphaned(meta(elsewhere), "Failed", alive)
    past = {manifest.EXPIRES_ANNOTATION: str(int(time.time()) - 5)}
    assert manifest.orphaned(meta(elsewhere, past), "Running", alive)


def test_ulimits_cover_what_a_pod_spec_cannot() -> None:
    text = ulimits(ResourceLimits(processes=64, file_size=MiB, cpu_time=5))
    assert "ulimit -p 64" in text
    assert f"ulimit -f {MiB // 512}" in text
    assert "ulimit -t 5" in text
    assert "ulimit -c 0" in text


def test_exit_codes_from_the_status_channel() -> None:
    assert exit_code_from_status(b'{"metadata":{},"status":"Success"}') == 0
    failure = (
        b'{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":'
        b'[{"reason":"ExitCode","message":"42"}]}}'
    )
    assert exit_code_from_status(failure) == 42


def test_no_network_policy_selects_exactly_the_none_label() -> None:
    from llm_sandbox.backends.kubernetes import policy

    ours = policy.policy_manifest()
    assert ours["spec"]["podSelector"] == {"matchLabels": {manifest.NETWORK_LABEL: "none"}}
    assert policy.differences(ours["spec"]) == []
    assert policy.differences({**ours["spec"], "policyTypes": ["Egress", "Ingress"]}) == []
    for edited in (
        {**ours["spec"], "egress": [{}]},
        {**ours["spec"], "ingress": [{"from": [{"podSelector": {}}]}]},
        {**ours["spec"], "policyTypes": ["Ingress"]},
        {**ours["spec"], "podSelector": {}},
        {
            **ours["spec"],
            "podSelector": {
                "matchLabels": {manifest.NETWORK_LABEL: "none"},
                "matchExpressions": [{"key": "x", "operator": "Exists"}],
            },
        },
        None,
    ):
        assert policy.differences(edited), edited
