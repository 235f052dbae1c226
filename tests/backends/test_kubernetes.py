"""What only the kubernetes backend does, checked through the API (emulator or real cluster).

The shared suites (session API, containment, attacks, languages, installs) also run on
kubernetes through `conftest.py`; these tests read the pods back from the API server.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest
from kubernetes.client.exceptions import ApiException

from llm_sandbox import ResourceLimits, SandboxSession
from llm_sandbox.backends.kubernetes import manifest, policy
from llm_sandbox.backends.registry import get_backend
from llm_sandbox.cleanup import collect
from llm_sandbox.exceptions import (
    ConfigurationError,
    ControlUnavailableError,
    PodStartError,
    SandboxTimeoutError,
)
from llm_sandbox.layout import LABEL, PID_LABEL

pytestmark = pytest.mark.usefixtures("kubeconfig")


@pytest.fixture(scope="module")
def core(kubeconfig: str) -> Iterator[Any]:
    loader: Any = kubernetes.config
    api_client = loader.new_client_from_config(config_file=kubeconfig)
    yield kubernetes.client.CoreV1Api(api_client)
    api_client.close()


@pytest.fixture(scope="module")
def session(kubeconfig: str) -> Iterator[SandboxSession]:
    with SandboxSession(lang="python", backend="kubernetes", session_timeout=600) as opened:
        yield opened


def pod_of(session: SandboxSession) -> Any:
    sandbox: Any = session._sandbox
    return sandbox


def read_pod(core: Any, namespace: str, name: str) -> Any:
    return core.read_namespaced_pod(name, namespace)


def gone(core: Any, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, namespace)
    except ApiException as exc:
        return bool(exc.status == 404)
    return False


def test_default_pod_is_hardened_as_the_api_server_stores_it(
    session: SandboxSession, core: Any
) -> None:
    sandbox = pod_of(session)
    pod = read_pod(core, sandbox._api.namespace, sandbox.name)
    spec = pod.spec
    container = spec.containers[0]
    context = container.security_context
    assert context.run_as_non_root is True
    assert context.run_as_user > 0
    assert context.allow_privilege_escalation is False
    assert context.read_only_root_filesystem is True
    assert context.capabilities.drop == ["ALL"]
    assert context.seccomp_profile.type == "RuntimeDefault"
    assert spec.automount_service_account_token is False
    assert spec.restart_policy == "Never"
    assert spec.active_deadline_seconds >= 600
    assert container.resources.limits["memory"] == "512Mi"
    assert container.resources.requests["memory"] == "512Mi"
    assert "cpu" in container.resources.limits
    assert pod.metadata.labels[LABEL] == "1"
    assert pod.metadata.labels[PID_LABEL] == str(os.getpid())
    empty_dirs = {v.name for v in spec.volumes if v.empty_dir is not None}
    mounts = {m.mount_path for m in container.volume_mounts if m.name in empty_dirs}
    assert {session.config.workdir, "/tmp"} <= mounts
    # ... and what the code inside sees
    probe = session.run(
        "import os, json\n"
        "s = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)\n"
        "try:\n    open('/rootfs-write', 'w'); ro = False\nexcept OSError:\n    ro = True\n"
        "print(json.dumps({'uid': os.getuid(), 'cap': s['CapEff'].strip(), "
        "'nnp': s['NoNewPrivs'].strip(), 'ro': ro}))"
    )
    seen = json.loads(probe.stdout)
    assert seen == {"uid": context.run_as_user, "cap": "0" * 16, "nnp": "1", "ro": True}


def test_exit_codes_and_streams_through_the_status_channel(session: SandboxSession) -> None:
    sandbox = pod_of(session)
    assert sandbox._internal(["sh", "-c", "exit 7"])[0] == 7
    assert sandbox._internal(["sh", "-c", "echo hi"]) == (0, b"hi\n")
    seen: list[str] = []
    result = session.execute_command(
        ["sh", "-c", "echo out; echo err >&2; exit 5"], on_stdout=seen.append
    )
    assert (result.exit_code, result.stdout, result.stderr) == (5, "out\n", "err\n")
    assert "".join(seen) == "out\n"


def test_timeout_kills_every_process_and_the_pod_stays_usable(session: SandboxSession) -> None:
    with pytest.raises(SandboxTimeoutError):
        session.execute_command(["sh", "-c", "sleep 300 & sleep 301 & wait"], timeout=2)
    left = session.execute_command(
        [
            "sh",
            "-c",
            "for d in /proc/[0-9]*; do cat $d/cmdline 2>/dev/null | tr '\\0' ' '; echo; done",
        ]
    )
    assert "sleep 30" not in left.stdout
    assert session.run("print('still here')").stdout == "still here\n"


def test_user_manifest_is_honoured_and_gaps_filled(core: Any) -> None:
    """The specification's pod_manifest example, run (python:3.9 stands in as a local tag)."""
    name = f"sandbox-{os.urandom(4).hex()}"
    pod_manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "sandbox"}},
        "spec": {
            "containers": [
                {
                    "name": "sandbox-container",
                    "image": image(),
                    "tty": True,
                    "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
                    "resources": {
                        "limits": {"memory": "256Mi", "cpu": "500m"},
                        "requests": {"memory": "128Mi", "cpu": "250m"},
                    },
                }
            ],
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
        },
    }
    with SandboxSession(
        backend="kubernetes", lang="python", pod_manifest=pod_manifest, workdir="/tmp/sandbox"
    ) as session:
        namespace = pod_of(session)._api.namespace
        pod = read_pod(core, namespace, name)
        container = pod.spec.containers[0]
        assert container.name == "sandbox-container"
        assert container.resources.limits == {"memory": "256Mi", "cpu": "500m"}
        assert container.security_context.run_as_user == 1000
        assert container.security_context.capabilities.drop == ["ALL"]
        assert container.security_context.read_only_root_filesystem is True
        assert pod.metadata.labels["app"] == "sandbox"
        assert pod.metadata.labels[LABEL] == "1"
        result = session.run("import os; print(os.getuid(), os.getcwd())")
        assert result.stdout == "1000 /tmp/sandbox\n"
    assert gone(core, namespace, name)


def image() -> str:
    from llm_sandbox.images import image_for

    return image_for("python")


def test_runtime_config_is_rejected_pointing_to_pod_manifest() -> None:
    with pytest.raises(ConfigurationError, match="pod_manifest"):
        SandboxSession(backend="kubernetes", runtime_config={"memory": "1g"})


def test_a_configured_core_v1_api_is_used(core: Any) -> None:
    namespace = "custom-namespace" if not os.environ.get("LLM_SANDBOX_TEST_KUBECONFIG") else None
    with SandboxSession(
        backend="kubernetes", client=core, lang="python", kube_namespace=namespace
    ) as session:
        sandbox = pod_of(session)
        assert sandbox._api.core is core
        if namespace:
            assert sandbox._api.namespace == namespace
        assert session.run("print(6 * 7)").stdout == "42\n"
    core.list_namespaced_pod(sandbox._api.namespace)  # the caller's client is still open


def test_image_pull_error_is_clear_and_the_pod_deleted(core: Any) -> None:
    with pytest.raises(PodStartError) as info:
        SandboxSession(backend="kubernetes", image="localhost/llm-sandbox/no-such-image:1").open()
    error = info.value
    assert error.reason in ("ErrImagePull", "ImagePullBackOff")
    assert "no-such-image" in str(error)
    assert error.events
    assert "the pod was deleted" in str(error)
    assert gone(core, namespace_of(core), error.pod)


def namespace_of(core: Any) -> str:
    loader: Any = kubernetes.config
    _, active = loader.list_kube_config_contexts(config_file=os.environ["KUBECONFIG"])
    return str(active["context"].get("namespace") or "default")


def test_unschedulable_pod_is_clear_and_deleted(core: Any) -> None:
    absurd = ResourceLimits(memory=64 * 1024**4)  # 64 TiB
    with pytest.raises(PodStartError) as info:
        SandboxSession(backend="kubernetes", limits=absurd).open()
    assert info.value.reason == "Unschedulable"
    assert any("FailedScheduling" in e for e in info.value.events)
    assert gone(core, namespace_of(core), info.value.pod)


def test_refused_pod_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """An admission refusal (403, as a quota or a missing RuntimeClass gives) says why."""
    monkeypatch.setenv(manifest.RUNTIME_CLASS_ENV, "no-such-runtime-class")
    with pytest.raises(PodStartError, match="no-such-runtime-class") as info:
        SandboxSession(backend="kubernetes").open()
    assert info.value.reason == "Forbidden"


def test_close_deletes_the_pod(core: Any) -> None:
    session = SandboxSession(backend="kubernetes")
    session.open()
    sandbox = pod_of(session)
    session.close()
    assert gone(core, sandbox._api.namespace, sandbox.name)


def test_gc_removes_orphaned_pods_only(session: SandboxSession, core: Any) -> None:
    namespace = pod_of(session)._api.namespace
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    orphan = manifest.pod_manifest(
        None,
        manifest.default_pod(
            image=image(),
            workdir="/sandbox",
            limits=ResourceLimits(),
            environment={},
            session_timeout=None,
        ),
    )
    orphan["metadata"]["labels"][PID_LABEL] = dead.stdout.strip()
    name = core.create_namespaced_pod(namespace, orphan).metadata.name
    removed = collect()
    assert f"kubernetes pod {namespace}/{name}" in removed
    assert gone(core, namespace, name)
    live = pod_of(session).name
    assert not gone(core, namespace, live)  # a live session's pod is not an orphan
    assert session.run("print('alive')").stdout == "alive\n"


# --- NetworkPolicy: sessions without network ----------------------------------------------------


def fresh_namespace() -> str:
    """A namespace no session of this process used (the policy check is cached per namespace).

    The emulator has every namespace; against a real cluster these tests need to create one.
    """
    if os.environ.get("LLM_SANDBOX_TEST_KUBECONFIG"):
        pytest.skip("needs fresh namespaces; the emulator has every namespace")
    return f"np-{uuid.uuid4().hex[:10]}"


def networking(core: Any) -> Any:
    return kubernetes.client.NetworkingV1Api(core.api_client)


def test_no_network_policy_is_created_once_and_matches(
    core: Any, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = fresh_namespace()
    reads: list[str] = []
    original = kubernetes.client.NetworkingV1Api.read_namespaced_network_policy

    def counted(self: Any, name: str, ns: str, **kwargs: Any) -> Any:
        reads.append(f"{ns}/{name}")
        return original(self, name, ns, **kwargs)

    monkeypatch.setattr(
        kubernetes.client.NetworkingV1Api, "read_namespaced_network_policy", counted
    )
    for _ in range(2):
        with SandboxSession(backend="kubernetes", kube_namespace=namespace) as session:
            sandbox = pod_of(session)
            labels = read_pod(core, namespace, sandbox.name).metadata.labels
            assert labels[manifest.NETWORK_LABEL] == "none"
            pod = emulator.get(namespace, sandbox.name)
            host_config = emulator.kubelet.client.api.inspect_container(pod.container_id)
            assert host_config["HostConfig"]["NetworkMode"] == "none"
            assert session.run("print('ok')").stdout == "ok\n"
    assert reads == [f"{namespace}/{policy.POLICY_NAME}"]  # one GET per process and namespace
    stored = networking(core).read_namespaced_network_policy(policy.POLICY_NAME, namespace)
    spec = core.api_client.sanitize_for_serialization(stored)["spec"]
    assert spec == {
        "podSelector": {"matchLabels": {manifest.NETWORK_LABEL: "none"}},
        "policyTypes": ["Ingress", "Egress"],
    }
    assert policy.differences(spec) == []


def test_a_session_with_network_needs_no_policy_and_is_not_selected(
    core: Any, emulator: Any
) -> None:
    namespace = fresh_namespace()
    with SandboxSession(backend="kubernetes", kube_namespace=namespace, network=True) as session:
        sandbox = pod_of(session)
        labels = read_pod(core, namespace, sandbox.name).metadata.labels
        assert labels[manifest.NETWORK_LABEL] == "on"
        pod = emulator.get(namespace, sandbox.name)
        inspected = emulator.kubelet.client.api.inspect_container(pod.container_id)
        assert inspected["HostConfig"]["NetworkMode"] != "none"
    with pytest.raises(ApiException) as info:
        networking(core).read_namespaced_network_policy(policy.POLICY_NAME, namespace)
    assert info.value.status == 404


def test_an_edited_policy_refuses_the_session(core: Any) -> None:
    namespace = fresh_namespace()
    edited = policy.policy_manifest()
    edited["spec"]["egress"] = [{}]  # someone allowed all egress
    networking(core).create_namespaced_network_policy(namespace, edited)
    with pytest.raises(ControlUnavailableError) as info:
        SandboxSession(backend="kubernetes", kube_namespace=namespace).open()
    message = str(info.value)
    assert policy.POLICY_NAME in message
    assert namespace in message
    assert "egress rules" in message
    assert f"kubectl delete networkpolicy {policy.POLICY_NAME} -n {namespace}" in message
    assert core.list_namespaced_pod(namespace).items == []  # refused before any pod existed
    # Deleting it, as the message says, lets the next session recreate it.
    networking(core).delete_namespaced_network_policy(policy.POLICY_NAME, namespace)
    with SandboxSession(backend="kubernetes", kube_namespace=namespace) as session:
        assert session.run("print('ok')").stdout == "ok\n"


def test_no_rbac_for_network_policies_refuses_to_open(core: Any, emulator: Any) -> None:
    namespace = fresh_namespace()
    emulator.forbid_network_policies = True
    try:
        with pytest.raises(ControlUnavailableError) as info:
            SandboxSession(backend="kubernetes", kube_namespace=namespace).open()
        message = str(info.value)
        assert "403" in message
        assert policy.POLICY_NAME in message
        assert "get and create on networkpolicies" in message
        assert namespace in message
        assert "network=True" in message
        assert core.list_namespaced_pod(namespace).items == []
        # A session with network needs no policy, so the same credentials open it.
        with SandboxSession(
            backend="kubernetes", kube_namespace=namespace, network=True
        ) as session:
            assert session.run("print('ok')").stdout == "ok\n"
    finally:
        emulator.forbid_network_policies = False


def test_a_users_client_is_used_for_the_policy(core: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    namespace = fresh_namespace()
    seen: list[Any] = []
    original = kubernetes.client.NetworkingV1Api.__init__

    def recording(self: Any, api_client: Any = None) -> None:
        seen.append(api_client)
        original(self, api_client)

    monkeypatch.setattr(kubernetes.client.NetworkingV1Api, "__init__", recording)
    with SandboxSession(backend="kubernetes", client=core, kube_namespace=namespace) as session:
        assert session.run("print('ok')").stdout == "ok\n"
    assert seen
    assert all(api_client is core.api_client for api_client in seen)


def test_doctor_reports_the_no_network_policy(core: Any, emulator: Any) -> None:

    namespace = fresh_namespace()
    assert "missing; the first session without network creates it" in policy.status(core, namespace)
    policy.ensure(core, namespace)
    assert "present, deny-all" in policy.status(core, namespace)
    edited = policy.policy_manifest()
    edited["spec"]["policyTypes"] = ["Ingress"]
    networking(core).replace_namespaced_network_policy(policy.POLICY_NAME, namespace, edited)
    assert "differs from ours" in policy.status(core, namespace)
    emulator.forbid_network_policies = True
    try:
        shown = policy.status(core, namespace)
    finally:
        emulator.forbid_network_policies = False
    assert "403" in shown
    assert "get and create on networkpolicies" in shown
    facts = get_backend("kubernetes").doctor_facts
    assert facts is not None
    assert "no_network_policy" in facts()
