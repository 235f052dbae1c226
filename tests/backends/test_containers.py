"""What only the container engines offer: images, dockerfiles, commits, runtime_config, gc."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.exceptions import ConfigurationError, RegistryUnreachableError
from llm_sandbox.images import image_for
from llm_sandbox.layout import LABEL

BASE = image_for("python")


def engine(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([name, *args], capture_output=True, text=True, timeout=120, check=False)


def image_id(name: str, image: str) -> str:
    return engine(name, "image", "inspect", "--format", "{{.Id}}", image).stdout.strip()


def containers_of_this_process(name: str) -> list[str]:
    listing = engine(name, "ps", "-aq", "--filter", f"label={LABEL}.pid={os.getpid()}")
    return listing.stdout.split()


def test_defaults_are_hardened(container_backend: str) -> None:
    with SandboxSession(backend=container_backend) as session:
        status = session.execute_command(
            "grep -E '^(Uid|CapEff|NoNewPrivs|Seccomp):' /proc/self/status; ls /sys/class/net"
        ).stdout
        writes = session.run(
            "import os\nfor p in ('/usr/x', '/etc/x', '/x'):\n"
            "    try:\n        open(p, 'w')\n        print('wrote', p)\n"
            "    except OSError:\n        pass\n"
            "open('/sandbox/ok', 'w'); open('/tmp/ok', 'w'); print('done')"
        )
    assert "Uid:\t1000" in status
    assert "CapEff:\t0000000000000000" in status
    assert "NoNewPrivs:\t1" in status
    assert status.split()[-1] == "lo"
    assert writes.stdout == "done\n"


def test_close_removes_the_container(container_backend: str) -> None:
    with SandboxSession(backend=container_backend) as session:
        session.run("pass")
        assert len(containers_of_this_process(container_backend)) >= 1
    assert containers_of_this_process(container_backend) == []


def test_a_named_image_that_is_nowhere_is_a_clear_error(container_backend: str) -> None:
    """Not local, so pulled: from `localhost` (port 443), where no registry listens. (Pulls
    from a real registry, and default images built on first use: tests/backends/test_pull.py,
    tests/images/test_first_use.py.)"""
    session = SandboxSession(backend=container_backend, image="localhost/no-such-image:1")
    with pytest.raises(RegistryUnreachableError, match="registry localhost is not reachable"):
        session.open()


def test_the_default_image_answers_to_python(container_backend: str) -> None:
    with SandboxSession(backend=container_backend) as session:
        result = session.execute_command("python -c 'print(6 * 7)' && pip --version")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("42\npip ")


def test_dockerfile_is_built_and_removed_unless_kept(
    container_backend: str, tmp_path: Path
) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        f"FROM {BASE}\nUSER 0\nRUN echo built-here > /etc/llm-sandbox-marker\nUSER 1000\n"
    )
    with SandboxSession(backend=container_backend, dockerfile=str(dockerfile)) as session:
        built = session._sandbox.image  # type: ignore[union-attr]
        assert session.run("print(open('/etc/llm-sandbox-marker').read())").stdout == (
            "built-here\n\n"
        )
    assert image_id(container_backend, built) == ""
    with SandboxSession(
        backend=container_backend, dockerfile=str(dockerfile), keep_template=True
    ) as session:
        kept = session._sandbox.image  # type: ignore[union-attr]
    assert image_id(container_backend, kept) != ""
    engine(container_backend, "rmi", "-f", kept)


def test_named_image_is_never_removed(container_backend: str) -> None:
    before = image_id(container_backend, BASE)
    with SandboxSession(backend=container_backend, image=BASE) as session:
        session.run("pass")
    assert image_id(container_backend, BASE) == before


@pytest.mark.slow
def test_commit_container_saves_installed_libraries_in_a_new_image(
    container_backend: str,
) -> None:
    base_before = image_id(container_backend, BASE)
    with SandboxSession(
        backend=container_backend, keep_template=True, commit_container=True
    ) as session:
        session.install(["six==1.16.0"])
    committed = session.committed_image
    assert committed is not None
    assert committed != BASE
    try:
        with SandboxSession(backend=container_backend, image=committed) as later:
            result = later.run("import six; print(six.__version__)")
        assert result.stdout == "1.16.0\n"
        assert image_id(container_backend, BASE) == base_before
    finally:
        engine(container_backend, "rmi", "-f", committed)


def test_runtime_config_environment_and_working_dir(container_backend: str) -> None:
    config = {"environment": {"GREETING": "hi"}, "working_dir": "/workspace"}
    with SandboxSession(backend=container_backend, runtime_config=config) as session:
        result = session.run("import os; print(os.environ['GREETING'], os.getcwd())")
    assert result.stdout == "hi /workspace\n"


def test_runtime_config_network_mode_bridge_turns_network_on(container_backend: str) -> None:
    with SandboxSession(
        backend=container_backend, runtime_config={"network_mode": "bridge"}
    ) as session:
        devices = session.execute_command("ls /sys/class/net").stdout.split()
    assert devices != ["lo"]


def test_runtime_config_limits_are_applied(container_backend: str) -> None:
    config = {"mem_limit": "256m", "pids_limit": 50}
    with SandboxSession(backend=container_backend, runtime_config=config) as session:
        result = session.run("a = bytearray(512 * 1024 * 1024)")
    assert result.out_of_memory


def test_unknown_runtime_config_key_lists_accepted(container_backend: str) -> None:
    with pytest.raises(ConfigurationError, match="accept: cap_add"):
        SandboxSession(backend=container_backend, runtime_config={"shm_size": "1g"})


def test_user_made_client_is_used(container_backend: str) -> None:
    if container_backend == "docker":
        import docker

        client = docker.DockerClient(base_url="unix:///var/run/docker.sock")
    else:
        from podman import PodmanClient

        client = PodmanClient(base_url="unix:///run/podman/podman.sock")
    with SandboxSession(client=client, lang="python") as session:
        assert session.config.backend == container_backend
        assert session.run("print('via client')").stdout == "via client\n"
    client.close()


def test_gc_removes_containers_whose_owner_died(container_backend: str) -> None:
    from llm_sandbox.cleanup import collect

    created = engine(
        container_backend,
        "create",
        "--label",
        f"{LABEL}=1",
        "--label",
        f"{LABEL}.pid=999999999",
        BASE,
        "true",
    ).stdout.strip()
    assert created
    removed = collect()
    assert any(created[:12] in line for line in removed)
    assert engine(container_backend, "inspect", created).returncode != 0


def test_failing_dockerfile_is_an_image_build_error(container_backend: str, tmp_path: Path) -> None:
    """The build fails clearly, and leaves no container of its failed step behind."""
    from llm_sandbox.exceptions import ImageBuildError

    step = f"exit 3 # {os.urandom(8).hex()}"
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {BASE}\nRUN {step}\n")
    session = SandboxSession(backend=container_backend, dockerfile=str(dockerfile))
    with pytest.raises(ImageBuildError, match="failed"):
        session.open()
    listed = engine(container_backend, "ps", "-a", "--no-trunc", "--format", "{{.Command}}")
    assert step not in listed.stdout
