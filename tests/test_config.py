"""Option validation: unknown or inapplicable options are errors, never silently ignored."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import llm_sandbox
from llm_sandbox import ResourceLimits, SandboxBackend, SandboxSession
from llm_sandbox.backends.registry import configure
from llm_sandbox.config import parse_size
from llm_sandbox.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    LanguageNotSupportedError,
)


def test_public_api_is_sorted_and_importable() -> None:
    assert llm_sandbox.__all__ == sorted(llm_sandbox.__all__)
    for name in llm_sandbox.__all__:
        assert hasattr(llm_sandbox, name)


def test_unknown_option_names_the_closest_match() -> None:
    with pytest.raises(ConfigurationError, match="Did you mean 'execution_timeout'") as info:
        SandboxSession(lang="python", execution_timout=5)  # type: ignore[call-arg]
    assert "Accepted options" in str(info.value)


def test_container_option_on_local_backend_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="'dockerfile' does not apply to the local"):
        SandboxSession(backend="local", dockerfile="./Dockerfile")


def test_runtime_config_on_kubernetes_points_to_pod_manifest() -> None:
    with pytest.raises(ConfigurationError, match="pod_manifest"):
        configure({"backend": "kubernetes", "runtime_config": {"memory": "1g"}})


def test_unknown_backend_lists_the_choices() -> None:
    with pytest.raises(ConfigurationError, match="'local', 'docker'"):
        SandboxSession(backend="lxc")


def test_backend_accepts_enum_and_string() -> None:
    assert configure({"backend": SandboxBackend.LOCAL}).backend is SandboxBackend.LOCAL
    assert configure({"backend": "LOCAL"}).backend is SandboxBackend.LOCAL


def test_auto_backend_is_local_without_container_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_SANDBOX_BACKEND", raising=False)
    assert configure({"lang": "python"}).backend is SandboxBackend.LOCAL
    # the specification's basic example: keep_template=False is the default, so still local
    config = configure({"lang": "python", "keep_template": False, "workdir": "/sandbox"})
    assert config.backend is SandboxBackend.LOCAL


def test_environment_variable_chooses_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_SANDBOX_BACKEND", "kubernetes")
    assert configure({}).backend is SandboxBackend.KUBERNETES
    monkeypatch.setenv("LLM_SANDBOX_BACKEND", "nonsense")
    with pytest.raises(ConfigurationError, match="unknown backend"):
        configure({})


def test_kubernetes_options_select_kubernetes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_SANDBOX_BACKEND", raising=False)
    assert configure({"kube_namespace": "x"}).backend is SandboxBackend.KUBERNETES


def test_unavailable_backend_fails_promptly_with_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("kubernetes")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="KUBECONFIG"):
        SandboxSession(backend="kubernetes").open()
    unreachable = tmp_path / "kubeconfig"
    unreachable.write_text(
        '{"apiVersion": "v1", "kind": "Config", "current-context": "c",'
        ' "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],'
        ' "users": [{"name": "c", "user": {}}],'
        ' "contexts": [{"name": "c", "context": {"cluster": "c", "user": "c"}}]}'
    )
    monkeypatch.setenv("KUBECONFIG", str(unreachable))
    with pytest.raises(BackendUnavailableError, match="cannot reach the Kubernetes API"):
        SandboxSession(backend="kubernetes").open()
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("execution_timeout", 0),
        ("execution_timeout", -1),
        ("session_timeout", "soon"),
        ("default_timeout", float("inf")),
        ("workdir", "relative"),
        ("workdir", "/etc"),
        ("workdir", "/a/../etc"),
        ("limits", {"memory": 1}),
    ],
)
def test_malformed_values_are_rejected(option: str, value: object) -> None:
    with pytest.raises(ConfigurationError):
        SandboxSession(**{option: value})  # type: ignore[arg-type]


def test_timeout_defaults_follow_the_specification() -> None:
    config = configure({})
    assert config.default_timeout == 30.0
    assert config.run_timeout == 30.0
    assert configure({"execution_timeout": 5}).run_timeout == 5
    assert configure({"default_timeout": 7}).run_timeout == 7
    assert config.session_timeout is None


def test_unknown_language_lists_registered_ones() -> None:
    with pytest.raises(LanguageNotSupportedError, match="python"):
        SandboxSession(lang="cobol")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512m", 512 * 2**20), ("1g", 2**30), ("256MiB", 256 * 2**20), (4096, 4096), ("10k", 10240)],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text, "memory") == expected


@pytest.mark.parametrize("text", ["lots", "-1", "", True])
def test_parse_size_rejects(text: object) -> None:
    with pytest.raises(ConfigurationError):
        parse_size(text, "memory")


def test_local_runtime_config_maps_docker_keys_to_limits() -> None:
    config = configure(
        {
            "backend": "local",
            "runtime_config": {"mem_limit": "256m", "pids_limit": 50, "cpu_count": 1},
        }
    )
    assert config.limits.memory == 256 * 2**20
    assert config.limits.processes == 50
    assert config.limits.cpus == 1.0


def test_local_runtime_config_rejects_container_only_keys() -> None:
    with pytest.raises(ConfigurationError, match="privileged"):
        configure({"backend": "local", "runtime_config": {"privileged": True}})


def test_resource_limits_validate() -> None:
    with pytest.raises(ConfigurationError, match=r"limits\.memory"):
        ResourceLimits(memory=-5)
    assert ResourceLimits(memory=None).memory is None
