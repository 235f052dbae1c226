"""Default images are built the first time a session needs one (``LLM_SANDBOX_AUTO_BUILD=0``: not).

A build takes minutes (offline: debootstrap and apt; online: ``FROM`` the official image), so it
is announced at WARNING and followed through the session's logger (:class:`ProgressLog`). One
build per image and engine at a time, across threads and processes: a file lock next to the
builder's cache, and whoever waited for it finds the image built.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, Protocol

from llm_sandbox.exceptions import ConfigurationError, ImageBuildError
from llm_sandbox.images.progress import ProgressLog

ENV_AUTO_BUILD: Final = "LLM_SANDBOX_AUTO_BUILD"
_OFF: Final = frozenset({"0", "false", "no", "off"})
_warned_stale: set[tuple[str, str]] = set()


class Build(Protocol):
    """The shape of :func:`llm_sandbox.images.builder.build_image` that is used here."""

    def __call__(self, lang: str, engine: str, *, progress: Callable[[str], None]) -> str: ...


def auto_build_enabled() -> bool:
    """Whether missing default images are built on first use (``LLM_SANDBOX_AUTO_BUILD``)."""
    return os.environ.get(ENV_AUTO_BUILD, "1").strip().lower() not in _OFF


def build_command(lang: str, engine: str) -> str:
    return f"llm-sandbox images build {lang} --engine {engine}"


def ensure_default_image(
    lang: str,
    engine: str,
    image: str,
    present: Callable[[], bool],
    log: ProgressLog,
    *,
    build: Build | None = None,
) -> None:
    """Build the missing default image ``image`` of ``lang`` with ``engine`` (once at a time).

    ``present`` asks the session's engine whether the image exists now. Raises
    :class:`ConfigurationError` when building on first use is turned off, and
    :class:`ImageBuildError` (naming the command to run) when the build fails.
    """
    from llm_sandbox.images import builder

    command = build_command(lang, engine)
    if not auto_build_enabled():
        raise ConfigurationError(
            f"the default {lang} image {image!r} is not built yet, and {ENV_AUTO_BUILD}=0 turns "
            f"off building it on first use; run: {command}"
        )
    try:
        builder.recipe_for(lang)
    except ValueError as exc:
        raise ConfigurationError(f"{image!r} names a default image, but {exc}") from exc
    run_build: Build = build or builder.build_image
    with _build_lock(engine, lang, log, image):
        if present():
            log.step(f"{image} was built meanwhile (by another session)")
            return
        log.announce(
            f"building the default {lang} image {image} for {engine} on first use; this takes "
            f"a few minutes ({ENV_AUTO_BUILD}=0 turns this off; `{command}` builds it beforehand)"
        )
        try:
            run_build(lang, engine, progress=_progress(log, image))
        except (ImageBuildError, OSError) as exc:
            raise ImageBuildError(
                f"the default {lang} image {image!r} is not built yet, and building it here "
                f"failed: {exc}\nBuild it with: {command} (an offline build, without a container "
                "registry, runs debootstrap and needs root)"
            ) from exc
        if not present():
            raise ImageBuildError(
                f"built {image} with the `{engine}` command, but the session's {engine} client "
                f"does not see it (do they talk to different daemons?); build it with the engine "
                f"the session uses: {command}"
            )
        log.step(f"built {image} in {log.elapsed:.0f} s")


def warn_if_stale(
    lang: str, engine: str, image: str, labels: dict[str, str], log: ProgressLog
) -> None:
    """Say once per process when a default image was built from an older recipe than ours."""
    from llm_sandbox.images import builder

    try:
        recipe = builder.recipe_for(lang)
    except ValueError:
        return
    built_from = labels.get(f"{builder.LABEL_PREFIX}.recipe")
    if built_from is None or built_from == builder.recipe_hash(recipe):
        return
    if (engine, image) in _warned_stale:
        return
    _warned_stale.add((engine, image))
    log.announce(
        f"{engine} image {image} was built from an older {lang} recipe than this version's; "
        f"rebuild it with: {build_command(lang, engine)} --if-missing"
    )


def _progress(log: ProgressLog, image: str) -> Callable[[str], None]:
    """The builder's progress lines ("[lang/engine] step", then "  tool output") for ``log``."""
    last = ["starting"]

    def progress(line: str) -> None:
        text = line.split("] ", 1)[1] if line.startswith("[") and "] " in line else line
        if text.startswith("  "):
            log.detail(text.strip())
        else:
            last[0] = text
            log.step(f"building {image}: {text}")
        log.status(f"still building {image}: {last[0]}")

    return progress


@contextlib.contextmanager
def _build_lock(engine: str, lang: str, log: ProgressLog, image: str) -> Iterator[None]:
    """Hold the lock on building ``lang``'s image with ``engine`` (threads and processes)."""
    from llm_sandbox.images.builder import cache_dir

    name = f"build-{engine}-{lang}.lock"
    try:
        directory = cache_dir()
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / name, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:
        fd = os.open(Path(tempfile.gettempdir()) / f"llm-sandbox-{name}", os.O_RDONLY | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.step(f"waiting for another session that is building {image}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
