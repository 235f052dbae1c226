"""Image builder: pure helpers, and (marked ``engines``) real builds with Docker and Podman.

The ``engines`` tests build the python image offline (debootstrap; ~1 min the first time on a
machine, seconds once the root filesystem tarball is cached) and run it as uid 1000 without a
network. They skip when the engine is unreachable or the machine cannot debootstrap.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from llm_sandbox.images import (
    RECIPES,
    ImageBuildError,
    build_image,
    builder,
    debian_mirror,
    image_exists,
)
from llm_sandbox.images.recipes import DEFAULT_DEBIAN_MIRROR

# --- pure helpers ----------------------------------------------------------------------------

SOURCES_DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
"""


@pytest.fixture
def apt_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(builder.ENV_MIRROR, raising=False)
    (tmp_path / "sources.list.d").mkdir()
    return tmp_path


def test_mirror_from_deb822_sources_ignores_commented_snapshot(apt_dir: Path) -> None:
    (apt_dir / "sources.list.d" / "debian.sources").write_text(SOURCES_DEB822)
    assert debian_mirror(apt_dir) == "http://mirror.example/debian"


def test_mirror_from_one_line_sources_list(apt_dir: Path) -> None:
    (apt_dir / "sources.list").write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] https://one.example/debian bookworm main\n"
    )
    (apt_dir / "sources.list.d" / "debian.sources").write_text(SOURCES_DEB822)
    assert debian_mirror(apt_dir) == "https://one.example/debian"


def test_mirror_skips_disabled_other_suites_and_falls_back(apt_dir: Path) -> None:
    (apt_dir / "sources.list.d" / "x.sources").write_text(
        "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://trixie.example/debian\nSuites: trixie\n"
    )
    (apt_dir / "sources.list.d" / "y.list.disabled").write_text(
        "deb http://disabled.example/debian bookworm main\n"
    )
    assert debian_mirror(apt_dir) == DEFAULT_DEBIAN_MIRROR


def test_mirror_environment_override(apt_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (apt_dir / "sources.list.d" / "debian.sources").write_text(SOURCES_DEB822)
    monkeypatch.setenv(builder.ENV_MIRROR, "http://override.example/debian/")
    assert debian_mirror(apt_dir) == "http://override.example/debian"


@pytest.mark.parametrize(
    ("reference", "address"),
    [
        ("docker.io/library/python:3.11-slim", ("registry-1.docker.io", 443)),
        ("python:3.11-slim", ("registry-1.docker.io", 443)),
        ("library/python:3.11", ("registry-1.docker.io", 443)),
        ("ghcr.io/owner/image:1", ("ghcr.io", 443)),
        ("registry.local:5000/team/image:1", ("registry.local", 5000)),
    ],
)
def test_registry_address(reference: str, address: tuple[str, int]) -> None:
    assert builder._registry_address(reference) == address


def test_registry_probe_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(address: tuple[str, int], timeout: float) -> socket.socket:
        time.sleep(5)
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", hang)
    started = time.monotonic()
    assert not builder.registry_reachable("python:3.11-slim", timeout=0.2)
    assert time.monotonic() - started < 2


def test_build_mode_environment_forces_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = RECIPES["python"]
    monkeypatch.setenv(builder.ENV_BUILD_MODE, "offline")
    assert builder._should_build_offline(recipe, "docker")
    monkeypatch.setenv(builder.ENV_BUILD_MODE, "online")
    assert not builder._should_build_offline(recipe, "docker")


def test_dockerfile_sets_up_the_sandbox_user() -> None:
    text = builder.dockerfile(RECIPES["javascript"])
    lines = text.splitlines()
    assert lines[0] == "FROM docker.io/library/node:22-bookworm-slim"
    assert "userdel" in text  # the node image's own uid 1000 account makes way
    assert "USER 1000:1000" in lines
    assert "WORKDIR /sandbox" in lines
    assert "ENTRYPOINT []" in lines
    assert not any(line.startswith("ENV PATH=") for line in lines)


def test_failing_command_raises_with_output_tail() -> None:
    seen: list[str] = []
    with pytest.raises(ImageBuildError) as caught:
        builder._run(["sh", "-c", "echo first; echo boom >&2; exit 3"], seen.append)
    assert "exit code 3" in str(caught.value)
    assert caught.value.output_tail.splitlines()[-1] == "boom"
    assert caught.value.command[0] == "sh"
    assert seen == ["  first", "  boom"]


def test_missing_binary_raises_build_error() -> None:
    with pytest.raises(ImageBuildError, match="cannot run"):
        builder._run(["llm-sandbox-no-such-binary"], lambda line: None)


def test_superseded_tarballs_are_removed(tmp_path: Path) -> None:
    names = ["rootfs-go-old.tar", "rootfs-go-old.lock", "rootfs-go-new.tar", "rootfs-ruby-x.tar"]
    for name in names:
        (tmp_path / name).touch()
    builder._remove_stale(tmp_path / "rootfs-go-new.tar", "rootfs-go-*")
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "rootfs-go-new.tar",
        "rootfs-ruby-x.tar",
    ]


def test_docs_are_removed_but_copyright_files_and_links_kept(tmp_path: Path) -> None:
    doc = tmp_path / "usr/share/doc"
    (doc / "libfoo/examples").mkdir(parents=True)
    (doc / "libfoo/copyright").write_text("MIT")
    (doc / "libfoo/changelog.Debian.gz").write_text("x")
    (doc / "libfoo/examples/demo.c").write_text("x")
    (doc / "nocopy").mkdir()
    (doc / "nocopy/README").write_text("x")
    (doc / "libfoo-dev").symlink_to("libfoo")
    builder._remove_docs(doc)
    left = sorted(str(path.relative_to(doc)) for path in doc.rglob("*"))
    assert left == ["libfoo", "libfoo-dev", "libfoo/copyright"]
    assert (doc / "libfoo-dev").is_symlink()


def test_tarballs_keep_nanosecond_modification_times(tmp_path: Path) -> None:
    """fontconfig's prebuilt cache is only valid while its font directories' times match."""
    rootfs = tmp_path / "rootfs"
    (rootfs / "fonts").mkdir(parents=True)
    (rootfs / "fonts/a.ttf").write_text("x")
    stamp = 1_700_000_000_123_456_789
    os.utime(rootfs / "fonts", ns=(stamp, stamp))
    (tmp_path / "work").mkdir()
    target = tmp_path / "out.tar"
    builder._pack(rootfs, target, tmp_path / "work", lambda line: None, excludes=())
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xf", str(target), "-C", str(unpacked)], check=True)
    assert (unpacked / "fonts").stat().st_mtime_ns == stamp


def test_tarball_cache_key_covers_the_recipe_commands() -> None:
    recipe = RECIPES["java"]
    changed = dataclasses.replace(recipe, rootfs_commands=(*recipe.rootfs_commands, "true"))
    assert builder._rootfs_material(recipe) != builder._rootfs_material(changed)
    assert builder.recipe_hash(recipe) != builder.recipe_hash(changed)


def test_unknown_engine_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown engine"):
        image_exists("x", "containerd")


# --- real builds -----------------------------------------------------------------------------


def _engine_answers(engine: str) -> bool:
    if shutil.which(engine) is None:
        return False
    probe = [engine, "info", "--format", "{{.ServerVersion}}" if engine == "docker" else "ok"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _can_build_offline() -> bool:
    return os.geteuid() == 0 and shutil.which("debootstrap") is not None


_BUILT: dict[str, str] = {}


def _built_python_image(engine: str) -> str:
    """The python image, built (for real) once per test session and engine."""
    if not _engine_answers(engine):
        pytest.skip(f"{engine} is not reachable (run scripts/engines.sh as root)")
    if not _can_build_offline():
        pytest.skip("offline image builds need root and debootstrap")
    if engine not in _BUILT:
        _BUILT[engine] = build_image("python", engine, offline=True, progress=lambda line: None)
    return _BUILT[engine]


@pytest.fixture
def docker_python() -> str:
    return _built_python_image("docker")


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.engines
def test_docker_python_image_runs_as_sandbox_user(docker_python: str) -> None:
    assert image_exists(docker_python, "docker")
    result = _run(
        ["docker", "run", "--rm", "--network", "none", "--user", "1000:1000", docker_python,
         "python3", "-c", "import os; print(1, os.getuid(), os.getcwd(), os.environ['HOME'])"]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1000", "/sandbox", "/sandbox"]


@pytest.mark.engines
def test_docker_python_image_defaults(docker_python: str) -> None:
    script = "id -u; stat -c '%u:%g %a' /sandbox; stat -c '%a' /tmp; pwd"
    result = _run(["docker", "run", "--rm", "--network", "none", docker_python, "sh", "-c", script])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:4] == ["1000", "1000:1000 755", "1777", "/sandbox"]


@pytest.mark.engines
def test_docker_python_image_stops_promptly(docker_python: str) -> None:
    started = _run(["docker", "run", "-d", "--network", "none", docker_python])
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        began = time.monotonic()
        assert _run(["docker", "stop", container]).returncode == 0
        assert time.monotonic() - began < 5  # SIGTERM ends the default command at once
    finally:
        _run(["docker", "rm", "-f", container])


@pytest.mark.engines
def test_docker_python_image_runs_under_gvisor(docker_python: str) -> None:
    runtimes = _run(["docker", "info", "--format", "{{json .Runtimes}}"]).stdout
    if '"runsc"' not in runtimes:
        pytest.skip("runsc is not registered with dockerd")
    result = _run(["docker", "run", "--rm", "--runtime=runsc", docker_python,
                   "python3", "-c", "print(1)"])  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


@pytest.mark.engines
def test_podman_python_image_runs_as_sandbox_user() -> None:
    image = _built_python_image("podman")
    assert image_exists(image, "podman")
    result = _run(
        ["podman", "run", "--rm", "--network", "none", "--user", "1000:1000", image,
         "python3", "-c", "import os; print(1, os.getuid(), os.getcwd())"]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1000", "/sandbox"]


@pytest.mark.engines
@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_online_build_replaces_an_existing_uid_1000_account(engine: str) -> None:
    """The online Dockerfile, checked without a registry: FROM a local image that, like the
    official node image, already has a uid 1000 account of its own."""
    source = _built_python_image(engine)
    fake_base = "localhost/llm-sandbox-test/fake-official:1"
    recipe = dataclasses.replace(RECIPES["python"], language="online-test", online_base=fake_base)
    with tempfile.TemporaryDirectory() as context:
        (Path(context) / "Dockerfile").write_text(
            f"FROM {source}\nUSER 0:0\n"
            "RUN userdel sandbox && groupadd -g 1000 node && useradd -u 1000 -g 1000 -m node\n"
        )
        made = _run([engine, "build", "-q", "-t", fake_base, context])
        assert made.returncode == 0, made.stderr
    try:
        builder._build_online(recipe, engine, lambda line: None)
        assert not builder._should_build_offline(recipe, engine)  # base present: no network
        result = _run(
            [engine, "run", "--rm", "--network", "none", recipe.image, "sh", "-c",
             "id -un; id -u; pwd; stat -c %U /sandbox; getent passwd node || echo gone"]
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["sandbox", "1000", "/sandbox", "sandbox", "gone"]
    finally:
        _run([engine, "rmi", "-f", recipe.image, fake_base])


def _built_or_skip(language: str, engine: str) -> str:
    if not _engine_answers(engine):
        pytest.skip(f"{engine} is not reachable (run scripts/engines.sh as root)")
    image = RECIPES[language].image
    if not image_exists(image, engine):
        pytest.skip(f"{image} is not built: llm-sandbox images build {language} --engine {engine}")
    return image


@pytest.mark.engines
@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_online_javascript_build_answers_to_nodejs(engine: str) -> None:
    """The official node image has no `nodejs`: the online recipe links it (checked without a
    registry, FROM a local stand-in that lacks it)."""
    source = _built_or_skip("javascript", engine)
    fake_base = "localhost/llm-sandbox-test/fake-node:1"
    recipe = dataclasses.replace(
        RECIPES["javascript"], language="online-js-test", online_base=fake_base
    )
    with tempfile.TemporaryDirectory() as context:
        (Path(context) / "Dockerfile").write_text(
            f"FROM {source}\nUSER 0:0\nRUN rm /usr/bin/nodejs\n"
        )
        made = _run([engine, "build", "-q", "-t", fake_base, context])
        assert made.returncode == 0, made.stderr
    try:
        builder._build_online(recipe, engine, lambda line: None)
        builder._check_commands(recipe, engine, lambda line: None)
        result = _run([engine, "run", "--rm", "--network", "none", recipe.image,
                       "nodejs", "-e", "console.log(6 * 7)"])  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout == "42\n"
    finally:
        _run([engine, "rmi", "-f", recipe.image, fake_base])


@pytest.mark.engines
@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_an_image_without_a_promised_command_is_refused(engine: str) -> None:
    source = _built_or_skip("ruby", engine)
    recipe = dataclasses.replace(
        RECIPES["ruby"], language="promise-test", commands=("ruby", "no-such-command")
    )
    tagged = _run([engine, "tag", source, recipe.image])
    assert tagged.returncode == 0, tagged.stderr
    try:
        with pytest.raises(ImageBuildError, match="lacks no-such-command"):
            builder._check_commands(recipe, engine, lambda line: None)
        assert not image_exists(recipe.image, engine)  # not left for sessions to use
    finally:
        _run([engine, "rmi", "-f", recipe.image])
