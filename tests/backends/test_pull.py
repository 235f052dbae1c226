"""Named images a session lacks are pulled, like the previous generation did: against a real
registry on loopback (Debian's `docker-registry`, started here on a free port), with Docker
and Podman.

Pure parts first (names, registries, what engines answer, progress lines), then real pulls:
an image pushed to the registry and removed locally is pulled and run; an unknown tag, a port
nothing listens on, a registry that never answers and one that wants credentials each give
their own error, naming the registry. The engines' credentials are the usual ones: Docker's
come from `DOCKER_CONFIG`/`~/.docker/config.json` through the SDK, Podman's from the service's
auth file (`podman login`).
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.backends.container.pull import (
    ENV_STALL,
    PullProgress,
    is_loopback,
    pull_error,
    qualified,
)
from llm_sandbox.exceptions import (
    ConfigurationError,
    ImageNotFoundError,
    ImagePullError,
    RegistryAuthError,
    RegistryUnreachableError,
    SandboxError,
)
from llm_sandbox.images import image_for
from llm_sandbox.images.naming import registry_of
from support import IN_CI

REGISTRY_BIN = "/usr/bin/docker-registry"
USER, PASSWORD = "sandbox-test", "s3cret-for-loopback"

# --- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "registry"),
    [
        ("python:3.11-slim", "docker.io"),
        ("library/python", "docker.io"),
        ("team/python:1", "docker.io"),
        ("docker.io/library/python:3.11", "docker.io"),
        ("localhost/llm-sandbox/python:1", "localhost"),
        ("localhost:5000/llm-sandbox-test/python:1", "localhost:5000"),
        ("myregistry.com/my-python:latest", "myregistry.com"),
        ("ghcr.io/owner/image@sha256:" + "a" * 64, "ghcr.io"),
    ],
)
def test_registry_of_follows_dockers_rule(name: str, registry: str) -> None:
    assert registry_of(name) == registry


@pytest.mark.parametrize(
    ("name", "full"),
    [
        ("python:3.11-slim", "docker.io/library/python:3.11-slim"),
        ("python", "docker.io/library/python"),
        ("team/tool:2", "docker.io/team/tool:2"),
        ("python@sha256:" + "b" * 64, "docker.io/library/python@sha256:" + "b" * 64),
        ("docker.io/library/python:3", "docker.io/library/python:3"),
        ("localhost:5000/x/python:1", "localhost:5000/x/python:1"),
    ],
)
def test_short_names_are_qualified_as_docker_reads_them(name: str, full: str) -> None:
    assert qualified(name) == full


def test_loopback_registries() -> None:
    assert all(map(is_loopback, ["localhost", "localhost:5000", "127.0.0.1:5000", "[::1]:5000"]))
    others = ["docker.io", "registry.local:5000", "10.0.0.1:5000", "127.example.com:5000"]
    assert not any(map(is_loopback, others))


# What Docker 20.10 and Podman 4.3 answer (copied from their replies to this test's registry).
ANSWERS = [
    (
        "manifest for localhost:5055/t/x:nope not found: manifest unknown: manifest unknown",
        ImageNotFoundError,
    ),
    (
        "initializing source docker://localhost:5055/t/x:nope: reading manifest nope in "
        "localhost:5055/t/x: manifest unknown: manifest unknown",
        ImageNotFoundError,
    ),
    (
        'Get "http://localhost:5056/v2/": dial tcp 127.0.0.1:5056: connect: connection refused',
        RegistryUnreachableError,
    ),
    (
        'Get "http://localhost:5057/v2/": net/http: request canceled (Client.Timeout exceeded '
        "while awaiting headers)",
        RegistryUnreachableError,
    ),
    (
        "initializing source docker://localhost:5055/t/x:1: pinging container registry "
        'localhost:5055: Get "https://localhost:5055/v2/": http: server gave HTTP response to '
        "HTTPS client",
        RegistryUnreachableError,
    ),
    (
        'Head "http://localhost:5058/v2/t/x/manifests/1": no basic auth credentials',
        RegistryAuthError,
    ),
    (
        "initializing source docker://localhost:5058/t/x:1: reading manifest 1 in "
        "localhost:5058/t/x: unauthorized: authentication required",
        RegistryAuthError,
    ),
    ("pull access denied for nope, repository does not exist", RegistryAuthError),
    ("something nobody foresaw", ImagePullError),
]


@pytest.mark.parametrize(("answer", "kind"), ANSWERS)
def test_engine_answers_are_told_apart(answer: str, kind: type[ImagePullError]) -> None:
    error = pull_error("localhost:5055/t/x:1", "localhost:5055", answer)
    assert type(error) is kind
    assert error.registry == "localhost:5055"
    assert error.image == "localhost:5055/t/x:1"
    assert error.error == answer
    assert "localhost:5055" in str(error)


def test_pull_errors_keep_the_previous_generations_signatures() -> None:
    pulled = ImagePullError("python:3.11-slim", "boom")
    assert (pulled.image, pulled.error, pulled.registry) == (
        "python:3.11-slim",
        "boom",
        "docker.io",
    )
    assert "docker.io" in str(pulled)
    assert "boom" in str(pulled)
    missing = ImageNotFoundError("python:3.99")
    assert missing.image == "python:3.99"
    assert "python:3.99" in str(missing)
    assert isinstance(missing, ConfigurationError)
    assert isinstance(missing, ImagePullError)
    assert isinstance(missing, ValueError)
    assert isinstance(RegistryUnreachableError("x"), ConnectionError)
    assert isinstance(RegistryAuthError("x"), PermissionError)
    for kind in (ImagePullError, ImageNotFoundError, RegistryUnreachableError, RegistryAuthError):
        assert issubclass(kind, SandboxError)
    assert "docker login ghcr.io" in str(RegistryAuthError("ghcr.io/o/i:1"))


def test_docker_progress_is_summed_up_per_layer() -> None:
    progress = PullProgress()
    events: list[dict[str, Any]] = [
        {"status": "Pulling from t/python", "id": "1"},
        {"status": "Already exists", "id": "aaa"},
        {"status": "Pulling fs layer", "id": "bbb"},
        {"status": "Downloading", "id": "bbb", "progressDetail": {"current": 5e6, "total": 2e7}},
    ]
    lines = [progress.feed(event) for event in events]
    assert lines[0] == (None, "Pulling from t/python")
    assert lines[3] == (None, None)  # byte counts go into the summary, not one line each
    assert progress.transferring
    assert progress.summary() == "1/2 layers, 5.0 of 20.0 MB"
    progress.feed({"status": "Pull complete", "id": "bbb"})
    assert progress.summary() == "2/2 layers, 20.0 of 20.0 MB"
    assert progress.feed({"error": "x", "errorDetail": {"message": "manifest unknown"}}) == (
        "manifest unknown",
        None,
    )


def test_podman_progress_counts_layers_and_waits_for_the_registry() -> None:
    progress = PullProgress()
    progress.feed({"stream": "Trying to pull localhost:5055/t/x:1...\n"})
    assert not progress.transferring
    assert progress.summary() == "waiting for the registry"
    progress.feed({"stream": "Getting image source signatures\n"})
    progress.feed({"stream": "Copying blob sha256:abc\n"})
    assert progress.transferring
    assert progress.summary() == "1 layer started"
    assert progress.feed({"error": "reading manifest: unauthorized"})[0] == (
        "reading manifest: unauthorized"
    )


def test_stall_timeout_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    from llm_sandbox.backends.container.pull import stall_timeout

    monkeypatch.setenv(ENV_STALL, "0")
    with pytest.raises(ConfigurationError, match=ENV_STALL):
        stall_timeout()
    monkeypatch.setenv(ENV_STALL, "2.5")
    assert stall_timeout() == 2.5


# --- a real registry on loopback --------------------------------------------------------------


@dataclass
class Registry:
    address: str
    process: subprocess.Popen[bytes]

    def ref(self, path: str) -> str:
        return f"{self.address}/{path}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _need(path: str, what: str) -> None:
    if shutil.which(path) is None:
        message = f"{path} is missing: {what} (scripts/engines.sh installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def _start_registry(root: Path, htpasswd: Path | None = None) -> Registry:
    _need(REGISTRY_BIN, "Debian's docker-registry")
    port = _free_port()
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex},
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "llm-sandbox-test", "path": str(htpasswd)}}
    path = root / "config.yml"
    path.write_text(json.dumps(config))  # YAML is a superset of JSON
    with (root / "registry.log").open("wb") as log:  # the registry keeps its own descriptor
        process = subprocess.Popen([REGISTRY_BIN, "serve", str(path)], stdout=log, stderr=log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                break
        except urllib.error.HTTPError as answer:  # 401 with auth: it answers
            answer.close()
            break
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail(f"the registry did not answer: {(root / 'registry.log').read_text()}")
    if process.poll() is not None:
        pytest.fail(f"the registry exited: {(root / 'registry.log').read_text()}")
    return Registry(f"localhost:{port}", process)


def _stop(registry: Registry) -> None:
    registry.process.terminate()
    try:
        registry.process.wait(10)
    except subprocess.TimeoutExpired:
        registry.process.kill()
        registry.process.wait()


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def _docker_ok() -> bool:
    try:
        return _run("docker", "image", "inspect", image_for("python")).returncode == 0
    except FileNotFoundError:
        return False


def _push_test_image(ref: str, docker_config: Path | None = None) -> None:
    """The default python image plus a fresh 3 MB layer (so a pull moves bytes), pushed to `ref`
    and removed from Docker again."""
    if not _docker_ok():
        if IN_CI:
            pytest.fail("docker and the default python image are needed under CI")
        pytest.skip("docker or the default python image is not available")
    base = image_for("python")
    with_config = ["--config", str(docker_config)] if docker_config else []
    context = Path(f"/tmp/llm-sandbox-pull-{uuid.uuid4().hex[:8]}")
    context.mkdir()
    try:
        (context / "Dockerfile").write_text(
            f"FROM {base}\nUSER 0:0\nRUN head -c 3000000 /dev/urandom > /opt/pull-test-blob\n"
            "USER 1000:1000\n"
        )
        built = _run("docker", "build", "-q", "-t", ref, str(context))
        assert built.returncode == 0, built.stderr
        pushed = _run("docker", *with_config, "push", ref)
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    finally:
        shutil.rmtree(context, ignore_errors=True)
        _run("docker", "rmi", ref)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry on loopback holding `llm-sandbox-test/python:1`, which no engine has locally."""
    started = _start_registry(tmp_path_factory.mktemp("registry"))
    try:
        _push_test_image(started.ref("llm-sandbox-test/python:1"))
        yield started
    finally:
        _stop(started)


def _forget(engine: str, ref: str) -> None:
    """Remove `ref` from `engine`, so that the next session has to pull it."""
    _run(engine, "rmi", "-f", ref)


@pytest.fixture
def no_docker_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Docker client configuration: the caller's own logins stay out of the test."""
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    return config


@pytest.mark.engines
@pytest.mark.usefixtures("no_docker_credentials")
def test_a_missing_image_is_pulled_and_runs(
    registry: Registry, container_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    ref = registry.ref("llm-sandbox-test/python:1")
    _forget(container_backend, ref)
    caplog.set_level(logging.INFO, logger="llm_sandbox")
    try:
        with SandboxSession(backend=container_backend, image=ref, verbose=True) as session:
            result = session.execute_command("python -c 'print(6 * 7)'; ls -l /opt/pull-test-blob")
        assert result.exit_code == 0, result.stderr
        assert result.stdout.startswith("42\n")
        assert "3000000" in result.stdout
        said = caplog.text
        assert f"pulling it from {registry.address}" in said
        assert f"pulled {ref} from {registry.address}" in said
        # A pulled image is kept: the next session starts without a pull.
        assert _run(container_backend, "image", "inspect", ref).returncode == 0
    finally:
        _forget(container_backend, ref)


@pytest.mark.engines
@pytest.mark.usefixtures("no_docker_credentials")
def test_an_unknown_tag_names_the_registry(registry: Registry, container_backend: str) -> None:
    ref = registry.ref("llm-sandbox-test/python:no-such-tag")
    with pytest.raises(ImageNotFoundError) as raised:
        SandboxSession(backend=container_backend, image=ref).open()
    assert raised.value.registry == registry.address
    assert f"not found on registry {registry.address}" in str(raised.value)
    assert isinstance(raised.value, ConfigurationError)
    with pytest.raises(ImageNotFoundError, match="manifest unknown"):
        SandboxSession(backend=container_backend, image=registry.ref("nobody/nothing:1")).open()


@pytest.mark.engines
def test_a_registry_nobody_listens_on_is_unreachable_within_seconds(
    container_backend: str,
) -> None:
    address = f"localhost:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(RegistryUnreachableError) as raised:
        SandboxSession(backend=container_backend, image=f"{address}/x/python:1").open()
    assert time.monotonic() - started < 20
    assert raised.value.registry == address
    assert "connection refused" in str(raised.value)
    assert f"registry {address} is not reachable" in str(raised.value)


@pytest.mark.engines
def test_a_registry_that_never_answers_is_given_up_on(
    container_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry that accepts connections and says nothing: the pull is abandoned after
    LLM_SANDBOX_PULL_STALL_TIMEOUT seconds (Podman would wait for ever; Docker 25 s)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    address = f"localhost:{server.getsockname()[1]}"
    monkeypatch.setenv(ENV_STALL, "2")
    started = time.monotonic()
    try:
        with pytest.raises(RegistryUnreachableError, match=ENV_STALL) as raised:
            SandboxSession(backend=container_backend, image=f"{address}/x/python:1").open()
        assert time.monotonic() - started < 15
        assert raised.value.registry == address
        assert "went silent" in str(raised.value)
    finally:
        stop.set()
        acceptor.join(5)
        server.close()
        for connection in held:
            connection.close()


@pytest.fixture(scope="module")
def private_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    """A registry that wants a login (htpasswd), holding `llm-sandbox-test/python:1`; and a
    Docker client configuration that has the login."""
    _need("htpasswd", "apache2-utils' htpasswd, to write the registry's bcrypt password file")
    root = tmp_path_factory.mktemp("private-registry")
    made = _run("htpasswd", "-Bbn", USER, PASSWORD)
    assert made.returncode == 0, made.stderr
    (root / "htpasswd").write_text(made.stdout)
    started = _start_registry(root, root / "htpasswd")
    config = root / "docker-config"
    config.mkdir()
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {started.address: {"auth": token}}}))
    try:
        _push_test_image(started.ref("llm-sandbox-test/python:1"), config)
        yield started, config
    finally:
        _stop(started)


@pytest.mark.engines
def test_a_private_registry_refuses_without_credentials_and_pulls_with_the_engines_own(
    private_registry: tuple[Registry, Path],
    container_backend: str,
    no_docker_credentials: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry, docker_config = private_registry
    ref = registry.ref("llm-sandbox-test/python:1")
    _forget(container_backend, ref)
    with pytest.raises(RegistryAuthError) as raised:
        SandboxSession(backend=container_backend, image=ref).open()
    assert raised.value.registry == registry.address
    assert f"{container_backend} login {registry.address}" in str(raised.value)
    # Now with the login where the engine's own tools keep it.
    if container_backend == "docker":
        monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    else:
        # Where the service looks: podman's default auth file (not $DOCKER_CONFIG's).
        monkeypatch.delenv("DOCKER_CONFIG")
        login = _run(
            "podman", "login", "--tls-verify=false", "-u", USER, "-p", PASSWORD, registry.address
        )
        assert login.returncode == 0, login.stderr
    try:
        with SandboxSession(backend=container_backend, image=ref) as session:
            assert session.run("print(6 * 7)").stdout == "42\n"
    finally:
        if container_backend == "podman":
            _run("podman", "logout", registry.address)
        _forget(container_backend, ref)


def test_a_local_image_is_never_pulled(monkeypatch: pytest.MonkeyPatch) -> None:
    """No registry is asked about an image the engine has (`pull_image` is not called)."""
    from llm_sandbox.backends.container import engine as engine_module

    if not _docker_ok():
        pytest.skip("docker or the default python image is not available")

    def refuse(*args: object) -> str:
        raise AssertionError("pulled an image that is local")

    monkeypatch.setattr(engine_module, "pull_image", refuse)
    with SandboxSession(backend="docker", image=image_for("python")) as session:
        assert session.run("print(1)").stdout == "1\n"
