"""Each option the previous generation accepted is accepted, with its meaning (fake backend:
what reaches the sandbox; the real backends' behaviour is in test_layout.py)."""

from __future__ import annotations

import pytest

from fake_backend import FakeBackend, Script, _Step
from llm_sandbox import SandboxSession, create_session
from llm_sandbox.backends.container.options import ContainerOptions
from llm_sandbox.docker import SandboxDockerSession
from llm_sandbox.exceptions import (
    ConfigurationError,
    LibraryInstallationNotSupportedError,
    OutputDecodeError,
    UnsupportedBackendError,
)
from llm_sandbox.kubernetes import SandboxKubernetesSession
from llm_sandbox.micromamba import MicromambaSession

pytestmark = pytest.mark.usefixtures("fake_backend")


def test_runtime_configs_is_runtime_config() -> None:
    session = SandboxSession(backend="docker", runtime_configs={"mem_limit": "256m"})
    assert session.config.options(ContainerOptions).runtime_config == {"mem_limit": "256m"}
    with pytest.raises(ConfigurationError, match="same option"):
        SandboxSession(backend="docker", runtime_configs={}, runtime_config={"memory": "1g"})


def test_mounts_join_runtime_config() -> None:
    session = SandboxSession(backend="docker", mounts=[{"type": "tmpfs", "target": "/data"}])
    mounts = session.config.options(ContainerOptions).runtime_config["mounts"]
    assert mounts == [{"type": "tmpfs", "target": "/data"}]


def test_environment_mapping_and_env_vars_reach_every_command() -> None:
    with SandboxSession(backend="fake", environment={"A": "1"}) as session:
        assert session.config.environment == {"A": "1"}
    with SandboxSession(backend="fake", env_vars={"B": "2"}) as session:
        session.run("out x")
        assert FakeBackend.opened[-1].execs[-1].env["B"] == "2"
    with pytest.raises(ConfigurationError, match="micromamba"):
        SandboxSession(backend="fake", environment="base")  # type: ignore[arg-type]


def test_libraries_are_installed_when_the_session_opens() -> None:
    with SandboxSession(backend="fake", libraries=["numpy"]) as session:
        first = FakeBackend.opened[-1].execs[0]
        assert "numpy" in first.argv
        assert first.egress is not None  # through the egress gate (the package index)
        assert session.is_open


def test_skip_environment_setup_refuses_installs() -> None:
    with SandboxSession(backend="fake", skip_environment_setup=True) as session:
        assert session.install([]).exit_code == 0  # nothing to install: nothing happens
        with pytest.raises(LibraryInstallationNotSupportedError, match="skip_environment_setup"):
            session.install(["numpy"])
    with pytest.raises(ConfigurationError, match="skip_environment_setup"):
        SandboxSession(backend="fake", skip_environment_setup=True, libraries=["numpy"])


def test_encoding_errors() -> None:
    with SandboxSession(backend="fake", encoding_errors="strict") as session:
        assert session.run("out plain").stdout == "plain\n"
        FakeBackend.opened[-1].next_result = Script.parse("exit 3")
        FakeBackend.opened[-1].next_result.steps.insert(0, _bytes(b"a\xffb"))
        with pytest.raises(OutputDecodeError) as info:
            session.execute_command("ignored")
        assert info.value.exit_code == 3
        assert info.value.raw_stdout == b"a\xffb"
        assert info.value.stdout == "a\ufffdb"
    with SandboxSession(backend="fake", encoding_errors="ignore") as session:
        FakeBackend.opened[-1].next_result = Script(steps=[_bytes(b"a\xffb")])
        assert session.execute_command("ignored").stdout == "ab"
    with pytest.raises(ConfigurationError, match="decoding mode"):
        SandboxSession(backend="fake", encoding_errors="xmlcharrefreplace")


def _bytes(data: bytes) -> _Step:
    return _Step(0.0, 1, data)


def test_stream_is_accepted_and_exit_codes_stay_exact() -> None:
    seen: list[str] = []
    with SandboxSession(backend="fake", stream=True) as session:
        result = session.run("out x\nexit 3", on_stdout=seen.append)
    assert (result.exit_code, seen) == (3, ["x\n"])


def test_commit_image_tag_and_positional_forms() -> None:
    session = SandboxDockerSession(None, "python:3.11", None, "python", False, True, "me/img:v1")
    options = session.config.options(ContainerOptions)
    assert (options.image, options.commit_container, options.commit_image_tag) == (
        "python:3.11",
        True,
        "me/img:v1",
    )
    assert create_session().config.backend == "docker"
    positional = create_session("docker", None, None, "img:1")
    assert positional.config.options(ContainerOptions).image == "img:1"
    kube = SandboxKubernetesSession(None, "python:3.11", "python", False, "ns", {"A": "1"})
    assert kube.config.environment == {"A": "1"}
    assert SandboxSession("docker").config.backend == "docker"
    with pytest.raises(UnsupportedBackendError, match="micromamba"):
        MicromambaSession()


def test_execute_command_takes_workdir_second() -> None:
    with SandboxSession(backend="fake") as session:
        session.execute_command("out x", "/tmp")
        assert FakeBackend.opened[-1].execs[-1].cwd == "/tmp"
        result = session.execute_commands(["out a", ("exit 4", "/tmp"), "out never"])
        assert result.exit_code == 4
        assert [e.argv[-1] for e in FakeBackend.opened[-1].execs[-2:]] == ["out a", "exit 4"]


def test_a_closed_session_opens_again() -> None:
    session = SandboxSession(backend="fake")
    session.open()
    session.close()
    session.open()
    assert session.run("out again").stdout == "again\n"
    session.close()
