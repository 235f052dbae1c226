"""The previous generation's environment variables, read into the server's settings."""

from __future__ import annotations

import pytest

from llm_sandbox.exceptions import ConfigurationError
from llm_sandbox.mcp_server.environment import mcp_settings, runtime_config


def test_sandbox_variables_become_the_container_runtime_config() -> None:
    env = {
        "SANDBOX_NETWORK_MODE": " none ",
        "SANDBOX_READ_ONLY": "true",
        "SANDBOX_MEMORY": "512m",
        "SANDBOX_CPUS": "0.5",
        "SANDBOX_CAP_DROP": "ALL, NET_RAW,",
        "SANDBOX_SECURITY_OPT": "no-new-privileges",
        "SANDBOX_PRIVILEGED": "off",
    }
    assert runtime_config(env) == {
        "network_mode": "none",
        "mem_limit": "512m",
        "cpu_period": 100000,
        "cpu_quota": 50000,
        "read_only": True,
        "privileged": False,
        "cap_drop": ["ALL", "NET_RAW"],
        "security_opt": ["no-new-privileges"],
    }
    assert runtime_config({"SANDBOX_MEM_LIMIT": "1g", "SANDBOX_MEMORY": "2g"})["mem_limit"] == "1g"
    assert runtime_config({"SANDBOX_CPU_COUNT": "2", "SANDBOX_CPUS": "0.1"})["cpu_quota"] == 200000


def test_backend_and_session_options() -> None:
    settings = mcp_settings(
        environ={
            "BACKEND": "Docker",
            "COMMIT_CONTAINER": "yes",
            "KEEP_TEMPLATE": "garbage",
            "SANDBOX_MEMORY": "256m",
        }
    )
    assert settings.backend == "docker"
    assert settings.options["commit_container"] is True
    assert settings.options["keep_template"] is False
    assert settings.options["runtime_config"] == {"mem_limit": "256m"}
    kube = mcp_settings(environ={"BACKEND": "kubernetes", "NAMESPACE": "team-a"})
    assert kube.options == {"kube_namespace": "team-a"}
    assert mcp_settings(environ={}).backend is None  # automatic, as the library chooses


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BACKEND": "docker", "SANDBOX_CPUS": "-1"}, "SANDBOX_CPUS"),
        ({"BACKEND": "docker", "SANDBOX_PRIVILEGED": "sure"}, "SANDBOX_PRIVILEGED"),
        ({"BACKEND": "kubernetes", "SANDBOX_NETWORK_MODE": "none"}, "docker and podman"),
        ({"NAMESPACE": "x"}, "BACKEND=kubernetes"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        mcp_settings(environ=env)
