"""A default image that is missing is built when a session first needs it.

Each test registers a language of its own ("firstuse…", a copy of Ruby's handler and recipe
under a fresh name), so that its default image `localhost/llm-sandbox/firstuse…:1` is missing
for real in the engine, whatever else runs on the machine.

* The decisions (build once, also when two sessions open at once; the opt-out; a failed build)
  use a stand-in for the builder that only tags the ruby image under the new name: a real
  build takes minutes. The session, the engine, the lock and the progress are real.
* One real end to end (`slow`): the real builder, offline, from a root filesystem tarball put
  in its cache beforehand (exported from the ruby image), so that it needs neither debootstrap
  nor a Debian mirror; only the import and the command check run.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.exceptions import ConfigurationError, ImageBuildError
from llm_sandbox.images import builder, first_use, image_for
from llm_sandbox.images.naming import image_name
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory
from llm_sandbox.language_handlers.ruby import RubyHandler
from support import IN_CI

pytestmark = pytest.mark.engines


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def engine(container_backend: str) -> str:
    if _run(container_backend, "image", "inspect", image_for("ruby")).returncode != 0:
        message = f"the default ruby image is not built for {container_backend}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return container_backend


@pytest.fixture
def language(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str]]:
    """A registered language whose default image is missing: (name, image)."""
    name = f"firstuse{uuid.uuid4().hex[:8]}"
    image = image_name(name)

    class FirstUseHandler(RubyHandler):
        aliases = (f"{name}-alias",)
        recipe = dataclasses.replace(RubyHandler.recipe, language=name)

        def __init__(self, logger: logging.Logger | None = None) -> None:
            super().__init__(logger)
            self.config.image = image

    monkeypatch.setenv(builder.ENV_CACHE_DIR, str(tmp_path / "cache"))
    monkeypatch.delenv(first_use.ENV_AUTO_BUILD, raising=False)
    LanguageHandlerFactory.register_handler(name, FirstUseHandler)
    try:
        yield name, image
    finally:
        LanguageHandlerFactory.unregister_handler(name)
        _run(engine, "rmi", "-f", image)


class TagBuilder:
    """Stands in for `build_image`: counts calls, takes a while, tags the ruby image."""

    def __init__(self, seconds: float = 2.0, fail: str | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.seconds = seconds
        self.fail = fail

    def __call__(self, lang: str, engine: str, *, progress: Callable[[str], None]) -> str:
        self.calls.append((lang, engine))
        progress(f"[{lang}/{engine}] pretending to build")
        progress(f"[{lang}/{engine}]   some tool output")
        time.sleep(self.seconds)
        if self.fail:
            raise builder.ImageBuildError(self.fail)
        image = image_name(lang)
        tagged = _run(engine, "tag", image_for("ruby"), image)
        assert tagged.returncode == 0, tagged.stderr
        return image


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> TagBuilder:
    fake = TagBuilder()
    monkeypatch.setattr(builder, "build_image", fake)
    return fake


def test_a_missing_default_image_is_built_once_for_sessions_opening_together(
    engine: str,
    language: tuple[str, str],
    stand_in: TagBuilder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name, image = language
    caplog.set_level(logging.DEBUG, logger="llm_sandbox")
    outputs: list[str] = []
    failures: list[BaseException] = []

    def open_and_run() -> None:
        try:
            with SandboxSession(lang=name, backend=engine) as session:
                outputs.append(session.run("puts 6 * 7").stdout)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_and_run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    assert outputs == ["42\n", "42\n"]
    assert stand_in.calls == [(name, engine)]
    said = caplog.text
    assert f"building the default {name} image {image} for {engine} on first use" in said
    assert "LLM_SANDBOX_AUTO_BUILD=0" in said
    assert "pretending to build" in said
    assert "was built meanwhile" in said  # the second session waited, then found it
    # Built once, it stays: the next session does not build.
    with SandboxSession(lang=name, backend=engine) as session:
        assert session.run("puts 1").stdout == "1\n"
    assert len(stand_in.calls) == 1


def test_building_on_first_use_can_be_turned_off(
    engine: str, language: tuple[str, str], stand_in: TagBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, image = language
    monkeypatch.setenv(first_use.ENV_AUTO_BUILD, "0")
    with pytest.raises(ConfigurationError) as raised:
        SandboxSession(lang=name, backend=engine).open()
    message = str(raised.value)
    assert f"llm-sandbox images build {name} --engine {engine}" in message
    assert image in message
    assert "LLM_SANDBOX_AUTO_BUILD=0" in message
    assert stand_in.calls == []


def test_a_failed_build_names_the_command(
    engine: str, language: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _ = language
    reason = "building an image without a container registry runs debootstrap, which needs root"
    monkeypatch.setattr(builder, "build_image", TagBuilder(seconds=0, fail=reason))
    with pytest.raises(ImageBuildError) as raised:
        SandboxSession(lang=name, backend=engine).open()
    message = str(raised.value)
    assert reason in message
    assert f"llm-sandbox images build {name} --engine {engine}" in message


def test_an_image_from_an_older_recipe_is_used_with_a_warning(
    engine: str,
    language: tuple[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name, image = language
    (tmp_path / "Dockerfile").write_text(
        f'FROM {image_for("ruby")}\nLABEL {builder.LABEL_PREFIX}.recipe="0ld"\n'
    )
    made = _run(engine, "build", "-q", "-t", image, str(tmp_path))
    assert made.returncode == 0, made.stderr
    with SandboxSession(lang=name, backend=engine) as session:
        assert session.run("puts 2").stdout == "2\n"
    assert "built from an older" in caplog.text
    assert f"llm-sandbox images build {name} --engine {engine} --if-missing" in caplog.text


@pytest.mark.slow
def test_the_real_builder_builds_on_first_use(
    engine: str,
    language: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, image = language
    recipe = builder.recipe_for(name)
    # The root filesystem the offline build would make, put in the builder's cache.
    cached = (
        builder.cache_dir()
        / f"rootfs-{name}-{builder._digest(builder._rootfs_material(recipe))}.tar"
    )
    cached.parent.mkdir(parents=True)
    container = _run(engine, "create", image_for("ruby")).stdout.strip()
    try:
        exported = _run(engine, "export", "-o", str(cached), container)
        assert exported.returncode == 0, exported.stderr
    finally:
        _run(engine, "rm", "-f", container)
    monkeypatch.setenv(builder.ENV_BUILD_MODE, "offline")  # no registry probe
    real = builder.build_image
    calls: list[str] = []

    def counted(lang: str, engine: str, *, progress: Callable[[str], None]) -> str:
        calls.append(lang)
        return real(lang, engine, progress=progress)

    monkeypatch.setattr(builder, "build_image", counted)
    results: list[str] = []

    def open_and_run() -> None:
        with SandboxSession(lang=name, backend=engine) as session:
            results.append(session.execute_command("ruby -e 'puts 6 * 7' && gem --version").stdout)

    threads = [threading.Thread(target=open_and_run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert len(results) == 2
    assert all(output.startswith("42\n") for output in results)
    assert calls == [name]
    assert builder.image_up_to_date(name, engine)
    assert builder.image_exists(image, engine)
