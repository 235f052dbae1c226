"""Every code example of the specification (the configuration guide), run as written.

Deviations, each forced by this machine and not by our API:
* Registry images (`python:3.9`, `python:3.11-slim`, `myregistry.com/my-python:latest`, ...)
  cannot be pulled here, so the default python image is tagged under those names first
  (the design allows "a locally built image of the same language" to stand in).
* The example Dockerfile installs packages from the network at build time; ours builds FROM
  the same stand-in and only adds a file, so it runs offline.
* Examples that contact remote hosts (a TCP Docker daemon) are not run: this machine may only
  talk to loopback. The Kubernetes examples run against the API emulator (tests/kube_emulator)
  on loopback: the kubeconfig path and the cluster URL name the emulator instead of
  `/path/to/custom/kubeconfig` and `https://k8s-cluster.example.com:6443`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_sandbox import SandboxBackend, SandboxSession
from llm_sandbox.backends.container.options import ContainerOptions
from llm_sandbox.exceptions import SandboxTimeoutError
from llm_sandbox.images import image_for
from support import IN_CI

STAND_INS = (
    "python:3.9",
    "python:3.11",
    "python:3.11-slim",
    "python:3.12-slim",
    "myregistry.com/my-python:latest",
)


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def registry_stand_ins() -> Iterator[None]:
    """Tag the default python image under the registry names the examples use."""
    try:
        ok = _docker("image", "inspect", image_for("python")).returncode == 0
    except FileNotFoundError:
        ok = False
    if not ok:
        if IN_CI:
            pytest.fail("docker and the default python image are needed under CI")
        pytest.skip("docker or the default python image is not available")
    for name in STAND_INS:
        _docker("tag", image_for("python"), name)
    yield
    for name in STAND_INS:
        _docker("rmi", name)


# --- Session Configuration ------------------------------------------------------------------


def test_basic_parameters() -> None:
    session = SandboxSession(
        lang="python",  # Programming language
        verbose=True,  # Enable verbose logging
        keep_template=False,  # Keep container image after session
        workdir="/sandbox",  # Working directory in container
    )
    assert session.config.workdir == "/sandbox"


def test_basic_timeout_configuration() -> None:
    with SandboxSession(
        lang="python",
        default_timeout=30.0,  # Default timeout for operations
        execution_timeout=60.0,  # Timeout for code execution
        session_timeout=300.0,  # Session expires after 5 minutes
        verbose=True,
    ) as session:
        # Fast operation - should complete
        result = session.run("""
print("Hello, World!")
import time
time.sleep(2)
print("Operation completed")
""")
    assert result.stdout == "Hello, World!\nOperation completed\n"


@pytest.mark.slow
def test_per_execution_timeout_override() -> None:
    timed_out = False
    with SandboxSession(lang="python", execution_timeout=10.0) as session:
        # This will use the session's execution_timeout (10 seconds)
        result1 = session.run("print('Normal execution')")

        # Override with a longer timeout for this specific execution
        result2 = session.run(
            """
import time
time.sleep(15) # This needs more time
print("Long operation completed")
""",
            timeout=20.0,
        )  # Override with 20 seconds

        # Override with a shorter timeout
        try:
            session.run(
                """
import time
time.sleep(5)
print("This might timeout")
""",
                timeout=2.0,
            )  # Override with 2 seconds
        except SandboxTimeoutError:
            print("Operation timed out as expected")
            timed_out = True
    assert result1.stdout == "Normal execution\n"
    assert result2.stdout == "Long operation completed\n"
    assert timed_out


@pytest.mark.slow
def test_timeout_error_handling_with_retry() -> None:
    def execute_with_retry(session: SandboxSession, code: str, max_retries: int = 3) -> object:
        """Execute code with automatic retry on timeout."""
        for attempt in range(max_retries):
            try:
                return session.run(code, timeout=10.0)
            except SandboxTimeoutError:
                print(f"Attempt {attempt + 1} timed out")
                if attempt == max_retries - 1:
                    raise
                print("Retrying...")
        return None

    # Usage example
    with SandboxSession(lang="python") as session:
        try:
            result = execute_with_retry(
                session,
                """
import time
import random
time.sleep(random.uniform(5, 15)) # Variable execution time
print("Completed!")
""",
            )
            print(result.stdout)  # type: ignore[attr-defined]
        except SandboxTimeoutError:
            print("All retry attempts failed")


@pytest.mark.slow
def test_infinite_loop_protection() -> None:
    terminated = False
    with SandboxSession(lang="python", execution_timeout=5.0) as session:
        try:
            session.run("""
# This infinite loop will be terminated
i = 0
while True:
    i += 1
    if i % 100000 == 0:
        print(f"Iteration: {i}")
""")
        except SandboxTimeoutError:
            print("Infinite loop was terminated by timeout")
            terminated = True
    assert terminated


@pytest.mark.slow
def test_resource_intensive_operation_control() -> None:
    with SandboxSession(lang="python") as session:
        try:
            result = session.run(
                """
# CPU-intensive operation
total = 0
for i in range(10**8): # Large computation
    total += i * i
print(f"Result: {total}")
""",
                timeout=30.0,
            )  # Give enough time for legitimate computation
            assert result.stdout.startswith("Result: ")
        except SandboxTimeoutError:
            print("Computation took too long and was terminated")


@pytest.mark.slow
def test_session_lifetime_management() -> None:
    expired = False
    # Session that automatically expires
    with SandboxSession(
        lang="python",
        session_timeout=60.0,  # Session expires after 1 minute
    ) as session:
        # This will work
        session.run("print('First execution')")

        # Wait and try again
        time.sleep(30)
        session.run("print('Second execution')")

        # This might fail if session has expired
        time.sleep(40)  # Total elapsed: 70 seconds
        try:
            session.run("print('This might fail')")
        except SandboxTimeoutError:
            print("Session expired")
            expired = True
    assert expired


# --- Container Images -----------------------------------------------------------------------


@pytest.mark.usefixtures("registry_stand_ins")
def test_using_custom_images() -> None:
    # Use a specific image
    with SandboxSession(lang="python", image="python:3.12-slim") as session:
        pass

    # Use your own custom image
    with SandboxSession(lang="python", image="myregistry.com/my-python:latest") as session:
        pass
    assert session.config.backend is SandboxBackend.DOCKER


@pytest.mark.usefixtures("registry_stand_ins")
def test_building_from_dockerfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "custom").mkdir()
    (tmp_path / "custom" / "Dockerfile").write_text(
        "FROM python:3.11-slim\nUSER 0\nRUN echo ready > /etc/custom-marker\nUSER 1000\n"
        "WORKDIR /sandbox\n"
    )
    monkeypatch.chdir(tmp_path)
    # Build image from Dockerfile
    with SandboxSession(lang="python", dockerfile="./custom/Dockerfile") as session:
        assert session.run("print(open('/etc/custom-marker').read())").stdout == "ready\n\n"


# --- Runtime Configuration ------------------------------------------------------------------


def test_docker_runtime_config() -> None:
    # Docker-specific runtime configuration
    runtime_config = {
        "privileged": False,
        "memory": "512m",
        "cpu_period": 100000,
        "cpu_quota": 50000,
        "network_mode": "bridge",
        "volumes": {"/host/path": {"bind": "/container/path", "mode": "ro"}},
        "environment": {"PYTHONPATH": "/app"},
        "working_dir": "/workspace",
    }

    session = SandboxSession(image="python:3.9", backend="docker", runtime_config=runtime_config)
    assert session.config.options(ContainerOptions).runtime_config["memory"] == "512m"


def test_podman_runtime_config() -> None:
    # Podman-specific runtime configuration
    runtime_config = {
        "privileged": False,
        "memory": "512m",
        "cpu_shares": 512,
        "network_mode": "bridge",
        "volumes": {"/host/path": {"bind": "/container/path", "mode": "ro"}},
        "environment": {"PYTHONPATH": "/app"},
        "working_dir": "/workspace",
    }

    session = SandboxSession(image="python:3.9", backend="podman", runtime_config=runtime_config)
    assert session.config.backend is SandboxBackend.PODMAN


@pytest.mark.usefixtures("registry_stand_ins", "kubeconfig")
def test_kubernetes_pod_manifest_session() -> None:
    # Generate unique pod name to avoid conflicts
    unique_suffix = str(uuid.uuid4())[:8]
    pod_name = f"sandbox-{unique_suffix}"

    # Define custom pod manifest
    pod_manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "labels": {"app": "sandbox"},
        },
        "spec": {
            "containers": [
                {
                    "name": "sandbox-container",
                    "image": "python:3.9",
                    "tty": True,
                    "securityContext": {
                        "runAsUser": 1000,
                        "runAsGroup": 1000,
                    },
                    "resources": {
                        "limits": {"memory": "512Mi", "cpu": "500m"},
                        "requests": {"memory": "256Mi", "cpu": "250m"},
                    },
                }
            ],
            "securityContext": {
                "runAsUser": 1000,
                "runAsGroup": 1000,
            },
        },
    }

    session = SandboxSession(
        backend="kubernetes",
        lang="python",
        image="python:3.9",
        pod_manifest=pod_manifest,
        workdir="/tmp/sandbox",  # Use writable directory for non-root
    )
    assert session.config.workdir == "/tmp/sandbox"
    with session:
        result = session.run("import os; print(os.getuid(), os.getcwd())")
    assert result.stdout == "1000 /tmp/sandbox\n", result.stderr


# --- Custom Client Configuration ------------------------------------------------------------


def test_podman_custom_socket() -> None:
    podman = pytest.importorskip("podman")
    # The example's /run/user/1000 socket stands in for this machine's rootful socket.
    socket_path = "/run/podman/podman.sock"
    if not Path(socket_path).exists():
        if IN_CI:
            pytest.fail("the podman service is needed under CI")
        pytest.skip("no podman service")
    client = podman.PodmanClient(base_url=f"unix://{socket_path}", timeout=60)

    with SandboxSession(
        backend="podman",
        client=client,  # Use custom client
        lang="python",
    ) as session:
        pass
    used_ours = session.config.options(ContainerOptions).client is client
    assert used_ours
    client.close()  # the user's client stays theirs to close


# --- Advanced Configuration -----------------------------------------------------------------


def test_custom_language_handler() -> None:
    from llm_sandbox.language_handlers import AbstractLanguageHandler, LanguageConfig
    from llm_sandbox.language_handlers.factory import LanguageHandlerFactory

    class CustomLanguageHandler(AbstractLanguageHandler):
        def __init__(self, logger: logging.Logger | None = None) -> None:
            super().__init__(logger)
            self.config = LanguageConfig(
                name="custom",
                file_extension="custom",
                execution_commands=["custom-runner {file}"],
                package_manager="custom-pm install",
            )

        def get_import_patterns(self, module: str) -> str:
            return rf"import\s+{module}"

    # Register custom handler
    LanguageHandlerFactory.register_handler("custom", CustomLanguageHandler)

    # Use custom language
    with SandboxSession(lang="custom") as session:
        pass
    assert session.language_handler.name == "custom"


def test_logging_configuration() -> None:
    # Configure logging
    logging.basicConfig(
        level=logging.DEBUG, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s"
    )

    # Create logger
    logger = logging.getLogger("llm_sandbox")

    # Use custom logger
    with SandboxSession(lang="python", logger=logger, verbose=True) as session:
        pass
    assert session.logger is logger


@pytest.mark.slow
@pytest.mark.usefixtures("registry_stand_ins")
def test_session_persistence() -> None:
    # Keep container running for reuse
    with SandboxSession(lang="python", keep_template=True, commit_container=True) as session:
        # Install packages
        session.install(["numpy", "pandas", "scikit-learn"])

        # Run initial setup
        result = session.run("""
import numpy as np
import pandas as pd
from sklearn import datasets
print("Environment ready!")
""")

        # Container state is saved and can be reused
    assert result.stdout == "Environment ready!\n", result.stderr
    assert session.committed_image
    _docker("rmi", "-f", session.committed_image)


@pytest.mark.usefixtures("registry_stand_ins")
def test_environment_specific_images(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    # Environment-based configuration
    env = os.getenv("ENVIRONMENT", "development")

    configs = {
        "development": {"image": "python:3.11", "keep_template": True, "verbose": True},
        "production": {"image": "python:3.11-slim", "keep_template": False, "verbose": False},
    }

    with SandboxSession(**configs[env]) as session:  # type: ignore[arg-type]
        pass
    assert session.config.backend is SandboxBackend.DOCKER


def test_handle_backend_failover() -> None:
    def create_session_with_fallback(**kwargs: object) -> SandboxSession:
        """Create session with backend fallback"""
        backends = [SandboxBackend.DOCKER, SandboxBackend.PODMAN, SandboxBackend.KUBERNETES]

        for backend in backends:
            try:
                return SandboxSession(backend=backend, **kwargs)  # type: ignore[arg-type]
            except Exception as e:
                print(f"Backend {backend} failed: {e}")
                continue

        raise RuntimeError("No available backends")

    session = create_session_with_fallback(lang="python")
    assert session.config.backend is SandboxBackend.DOCKER


def test_security_policies() -> None:
    from llm_sandbox.security import (
        RestrictedModule,
        SecurityIssueSeverity,
        SecurityPattern,
        SecurityPolicy,
    )

    # Create custom security policy
    policy = SecurityPolicy(
        severity_threshold=SecurityIssueSeverity.MEDIUM,
        patterns=[
            SecurityPattern(
                pattern=r"os\.system",
                description="System command execution",
                severity=SecurityIssueSeverity.HIGH,
            ),
            SecurityPattern(
                pattern=r"open\s*\([^)]*['\"][wa]",
                description="File write operation",
                severity=SecurityIssueSeverity.MEDIUM,
            ),
        ],
        restricted_modules=[
            RestrictedModule(
                name="subprocess",
                description="Process execution",
                severity=SecurityIssueSeverity.HIGH,
            )
        ],
    )

    with SandboxSession(lang="python", security_policy=policy) as session:
        pass
    assert session.config.security_policy is policy


def test_layer_security_policies() -> None:
    from llm_sandbox.security import SecurityIssueSeverity, SecurityPattern, get_security_policy

    # Base policy
    base_policy = get_security_policy("production")

    # Add custom patterns
    base_policy.add_pattern(
        SecurityPattern(
            pattern=r"requests\.get\s*\(.*internal",
            description="Internal network access",
            severity=SecurityIssueSeverity.HIGH,
        )
    )
    safe, violations = base_policy.is_safe("requests.get('http://internal/x')", "python")
    assert not safe
    assert violations


def test_artifact_extraction(capsys: pytest.CaptureFixture[str]) -> None:
    from llm_sandbox import ArtifactSandboxSession

    with ArtifactSandboxSession(lang="python", enable_plotting=True, verbose=True) as session:
        result = session.run("""
import matplotlib.pyplot as plt
plt.plot([1, 2, 3], [1, 4, 9])
plt.show()
""")
        # Access captured plots
        for plot in result.plots:
            print(f"Plot format: {plot.format}")
            print(f"Plot size: {len(plot.content_base64)} bytes")

    if session.missing_plot_libraries and not IN_CI:
        pytest.skip(f"the host lacks {', '.join(session.missing_plot_libraries)}")
    assert result.exit_code == 0, result.stderr
    assert [plot.format for plot in result.plots] == ["png"]
    assert result.plots[0].content.startswith(b"\x89PNG")
    assert (result.plots[0].width, result.plots[0].height) == (640, 480)
    assert "Plot format: png\n" in capsys.readouterr().out


@pytest.mark.skip(reason="contacts a remote Docker daemon; only loopback is allowed here")
def test_remote_docker_clients() -> None: ...


def test_kubernetes_remote_cluster(kubeconfig: str, tmp_path: Path) -> None:
    from kubernetes import client, config

    if os.environ.get("LLM_SANDBOX_TEST_KUBECONFIG"):
        pytest.skip("rewrites the emulator's kubeconfig; the real cluster's is left alone")

    # The emulator's kubeconfig with the example's context name stands in for the remote one.
    custom = tmp_path / "kubeconfig"
    custom.write_text(
        Path(kubeconfig).read_text().replace('"kube-emulator"', '"remote-cluster-context"')
    )
    server = json.loads(custom.read_text())["clusters"][0]["cluster"]["server"]

    # Load config from custom file or remote cluster
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(custom),
        context="remote-cluster-context",
    )

    # Or configure for remote cluster programmatically
    configuration = client.Configuration()
    configuration.host = server  # the example's https://k8s-cluster.example.com:6443
    configuration.api_key_prefix["authorization"] = "Bearer"
    configuration.api_key["authorization"] = "your-token-here"
    k8s_client = client.CoreV1Api(client.ApiClient(configuration))

    with SandboxSession(
        backend="kubernetes",
        client=k8s_client,  # Use custom configured client
        lang="python",
        kube_namespace="custom-namespace",
    ) as session:
        assert session.run("print('remote')").stdout == "remote\n"
    k8s_client.api_client.close()
