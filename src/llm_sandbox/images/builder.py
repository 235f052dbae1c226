"""Build the default language images for Docker or Podman through the engines' CLIs.

Two ways to the same image (see :mod:`llm_sandbox.images.recipes` for the contract):

* **offline** -- ``debootstrap --variant=minbase`` a Debian root filesystem, ``apt-get install``
  the recipe's packages and add the ``sandbox`` user inside it (``chroot``), strip caches, pack it
  as a tarball and ``<engine> import`` it. Needs root, ``debootstrap`` and a Debian mirror, but
  no container registry. Both the bare debootstrap result (shared by all languages) and each
  language's finished tarball are cached (see :func:`cache_dir`), so a second language skips
  debootstrap and a second engine skips everything but the import.
* **online** -- ``<engine> build`` a generated Dockerfile ``FROM`` the recipe's official image.

``offline=None`` picks online only when that can work: the base image is already present locally,
or its registry accepts a TCP connection within :data:`REGISTRY_PROBE_SECONDS`.

Environment variables: ``LLM_SANDBOX_IMAGE_BUILD`` (``auto``/``offline``/``online``),
``LLM_SANDBOX_DEBIAN_MIRROR`` (mirror for debootstrap), ``LLM_SANDBOX_CACHE_DIR`` (tarball cache).
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Final

from llm_sandbox import exceptions
from llm_sandbox.images.recipes import (
    COMMON_DEBIAN_PACKAGES,
    DEBIAN_SUITE,
    DEFAULT_COMMAND,
    DEFAULT_DEBIAN_MIRROR,
    SANDBOX_GID,
    SANDBOX_HOME,
    SANDBOX_UID,
    SETUP_COMMANDS,
    Recipe,
)
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory

Progress = Callable[[str], None]

ENGINES: Final = ("docker", "podman")
REGISTRY_PROBE_SECONDS: Final = 2.0
#: Bump when the way a root filesystem is prepared changes (invalidates cached tarballs).
ROOTFS_FORMAT: Final = 3
LABEL_PREFIX: Final = "io.llm-sandbox"
ENV_BUILD_MODE: Final = "LLM_SANDBOX_IMAGE_BUILD"
ENV_MIRROR: Final = "LLM_SANDBOX_DEBIAN_MIRROR"
ENV_CACHE_DIR: Final = "LLM_SANDBOX_CACHE_DIR"

_OUTPUT_TAIL_LINES: Final = 25
_CHROOT_ENV: Final = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C",
    "DEBIAN_FRONTEND": "noninteractive",
}
#: Globs (relative to the root filesystem) removed before packing: apt caches and package lists,
#: logs, backups dpkg and debconf keep, manuals and message translations (the images run with
#: ``LANG=C.UTF-8``). Documentation goes too, except the packages' copyright files (see
#: :func:`_remove_docs`).
_ROOTFS_JUNK: Final = (
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/*.bin",
    "var/lib/apt/lists/*_*",
    "var/log/*.log",
    "var/log/apt/*",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*/LC_MESSAGES/*",
)
_DOC_DIR: Final = "usr/share/doc"
_DOC_KEEP: Final = "copyright"
#: GNU tar in pax format keeps nanosecond modification times, which both engines' ``import``
#: preserve: fontconfig, for one, only trusts its prebuilt cache while each font directory's
#: time matches to the nanosecond -- a stale cache makes R's ``png()`` rebuild it in
#: ``$HOME/.cache`` (the sandbox's work directory) on every run. Access and change times are
#: left out (nothing reads them; they would only bloat the tarball).
_TAR_FORMAT: Final = ("--format=posix", "--pax-option=delete=atime,delete=ctime")
_TAR_EXCLUDES: Final = ("./dev/*", "./proc/*", "./sys/*", "./run/*")
_DEB_LINE: Final = re.compile(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)")
_MIRROR_SCHEMES: Final = ("http://", "https://", "ftp://", "file:/")


class ImageBuildError(exceptions.ImageBuildError):
    """An image could not be built; ``output_tail`` holds the failing command's last lines."""

    def __init__(self, message: str, *, command: Sequence[str] = (), output_tail: str = "") -> None:
        details = f"{message}\n--- last output of {' '.join(command)} ---\n{output_tail}"
        super().__init__(details if output_tail else message)
        self.command = tuple(command)
        self.output_tail = output_tail


# --- public helpers --------------------------------------------------------------------------


def builtin_recipes() -> Mapping[str, Recipe]:
    """The recipe of each built-in language that has one (``images.RECIPES``)."""
    return MappingProxyType(_recipes(LanguageHandlerFactory.builtin_languages()))


def _recipes(languages: Sequence[str]) -> dict[str, Recipe]:
    handlers = {lang: LanguageHandlerFactory.lookup(lang) for lang in languages}
    return {
        lang: handler.recipe
        for lang, handler in handlers.items()
        if handler is not None and handler.recipe is not None
    }


def recipe_for(lang: str) -> Recipe:
    """The recipe of language ``lang`` (its handler's); :class:`ValueError` for a language
    without one."""
    handler = LanguageHandlerFactory.lookup(lang)
    if handler is None or handler.recipe is None:
        known = ", ".join(sorted(_recipes(LanguageHandlerFactory.get_supported_languages())))
        raise ValueError(f"unknown language {lang!r}; known: {known}")
    return handler.recipe


def image_for(lang: str) -> str:
    """The name of the default image for ``lang`` (the same string in Docker and Podman)."""
    return recipe_for(lang).image


def image_exists(name: str, engine: str = "docker") -> bool:
    """Whether ``engine`` has image ``name`` locally (``False`` too if the engine is unusable)."""
    _check_engine(engine)
    return _inspect(name, engine, "{{.Id}}") is not None


def image_up_to_date(lang: str, engine: str = "docker") -> bool:
    """Whether the default image of ``lang`` exists and was built from the current recipe."""
    _check_engine(engine)
    recipe = recipe_for(lang)
    label = _inspect(recipe.image, engine, f'{{{{index .Config.Labels "{LABEL_PREFIX}.recipe"}}}}')
    return label == recipe_hash(recipe)


def _inspect(image: str, engine: str, template: str) -> str | None:
    """``<engine> image inspect --format TEMPLATE``, or ``None`` without such image (or engine)."""
    try:
        result = subprocess.run(
            [engine, "image", "inspect", "--format", template, image],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def recipe_hash(recipe: Recipe) -> str:
    """A short digest of everything that shapes the image of ``recipe`` (stored as a label)."""
    material = {
        "rootfs": _rootfs_material(recipe),
        "base": recipe.online_base,
        "online": recipe.online_commands,
        "env": sorted(recipe.env.items()),
        "command": DEFAULT_COMMAND,
        "user": [SANDBOX_UID, SANDBOX_GID, SANDBOX_HOME],
    }
    return _digest(material)


def _rootfs_material(recipe: Recipe) -> dict[str, object]:
    """What shapes the offline root filesystem of ``recipe`` (its tarball's cache key)."""
    return {
        "format": ROOTFS_FORMAT,
        "suite": DEBIAN_SUITE,
        "packages": sorted(recipe.all_debian_packages),
        "commands": recipe.rootfs_commands,
        "pre_install": recipe.pre_install_commands,
        "setup": SETUP_COMMANDS,
        "junk": _ROOTFS_JUNK,
        "docs": [_DOC_DIR, _DOC_KEEP],
        "tar": _TAR_FORMAT,
    }


def _digest(material: object) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:12]


def cache_dir() -> Path:
    """Where root filesystem tarballs are cached.

    ``$LLM_SANDBOX_CACHE_DIR``, else ``/var/cache/llm-sandbox`` for root, else
    ``$XDG_CACHE_HOME/llm-sandbox`` (default ``~/.cache/llm-sandbox``).
    """
    override = os.environ.get(ENV_CACHE_DIR)
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/var/cache/llm-sandbox")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "llm-sandbox"


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror for debootstrap.

    ``$LLM_SANDBOX_DEBIAN_MIRROR`` if set, else the first ``deb`` source for the ``bookworm``
    suite in ``apt_dir``'s ``sources.list``, ``sources.list.d/*.list`` and deb822
    ``sources.list.d/*.sources`` (commented lines, such as snapshot URLs, are ignored), else
    :data:`~llm_sandbox.images.recipes.DEFAULT_DEBIAN_MIRROR`.
    """
    override = os.environ.get(ENV_MIRROR)
    if override:
        return override.rstrip("/")
    for uri, suite in _apt_sources(apt_dir):
        if suite == DEBIAN_SUITE and uri.startswith(_MIRROR_SCHEMES):
            return uri.rstrip("/")
    return DEFAULT_DEBIAN_MIRROR


def dockerfile(recipe: Recipe) -> str:
    """The Dockerfile of the online build: the official image plus the run-time set-up."""
    commands = (*SETUP_COMMANDS, *recipe.online_commands)
    script = " \\\n    && ".join(f"{{ {command}; }}" for command in commands)
    lines = [
        f"FROM {recipe.online_base}",
        "USER 0:0",
        f"RUN {script}",
        *_metadata_instructions(recipe, from_rootfs=False),
    ]
    return "\n".join(lines) + "\n"


# --- the build -------------------------------------------------------------------------------


def build_image(
    lang: str,
    engine: str = "docker",
    *,
    offline: bool | None = None,
    progress: Progress = print,
    mirror: str | None = None,
) -> str:
    """Build the default image for ``lang`` with ``engine`` and return its name.

    ``offline``: ``True`` builds from Debian packages (debootstrap), ``False`` from the recipe's
    official image, ``None`` decides (see the module docstring). ``mirror`` overrides the Debian
    mirror of the offline build. Progress lines go to ``progress``. Raises
    :class:`ImageBuildError` when a step fails.
    """
    recipe = recipe_for(lang)
    _check_engine(engine)
    if offline is None:
        offline = _should_build_offline(recipe, engine)
    say = _prefixed(progress, f"[{lang}/{engine}]")
    previous = _inspect(recipe.image, engine, "{{.Id}}")
    if offline:
        _build_offline(recipe, engine, say, mirror)
    else:
        _build_online(recipe, engine, say)
    _check_commands(recipe, engine, say)
    say(f"built {recipe.image}")
    if previous:
        _remove_if_dangling(previous, engine)
    return recipe.image


def _check_commands(recipe: Recipe, engine: str, say: Progress) -> None:
    """Fail (and remove the image) unless it answers to every name in ``recipe.commands``."""
    if not recipe.commands:
        return
    say(f"checking the commands {' '.join(recipe.commands)}")
    script = 'for c in "$@"; do command -v "$c" >/dev/null || printf "%s " "$c"; done'
    command = [
        engine, "run", "--rm", "--network", "none", "--user", f"{SANDBOX_UID}:{SANDBOX_GID}",
        "--entrypoint", "/bin/sh", recipe.image, "-c", script, "sh", *recipe.commands,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    missing = result.stdout.split()
    if result.returncode == 0 and not missing:
        return
    subprocess.run([engine, "rmi", recipe.image], capture_output=True, check=False)
    problem = f"lacks {', '.join(missing)}" if missing else f"did not start: {result.stderr}"
    raise ImageBuildError(
        f"the {recipe.language} image {problem} (the recipe promises "
        f"{', '.join(recipe.commands)}); it was removed",
        command=command,
        output_tail=result.stderr,
    )


def _remove_if_dangling(image_id: str, engine: str) -> None:
    """Delete an image a rebuild has untagged, unless it has other tags or a container uses it."""
    if _inspect(image_id, engine, "{{len .RepoTags}}") == "0":
        subprocess.run([engine, "rmi", image_id], capture_output=True, check=False)


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; supported: {', '.join(ENGINES)}")


def _prefixed(progress: Progress, prefix: str) -> Progress:
    return lambda line: progress(f"{prefix} {line}")


def _should_build_offline(recipe: Recipe, engine: str) -> bool:
    mode = os.environ.get(ENV_BUILD_MODE, "auto").strip().lower()
    if mode in ("offline", "online"):
        return mode == "offline"
    if image_exists(recipe.online_base, engine):
        return False
    return not registry_reachable(recipe.online_base)


def registry_reachable(reference: str, timeout: float = REGISTRY_PROBE_SECONDS) -> bool:
    """Whether the registry serving image ``reference`` accepts a TCP connection in ``timeout``.

    Name resolution has no timeout of its own, so the probe runs in a daemon thread that is
    abandoned when it takes too long.
    """
    address = _registry_address(reference)
    outcome: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection(address, timeout=timeout):
                outcome.append(True)
        except OSError:
            outcome.append(False)

    worker = threading.Thread(target=probe, name="llm-sandbox-registry-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    return outcome == [True]


def _registry_address(reference: str) -> tuple[str, int]:
    first, _, rest = reference.partition("/")
    is_domain = bool(rest) and ("." in first or ":" in first or first == "localhost")
    if not is_domain or first == "docker.io":
        return ("registry-1.docker.io", 443)
    host, _, port = first.partition(":")
    return (host, int(port) if port.isdigit() else 443)


def _build_online(recipe: Recipe, engine: str, say: Progress) -> None:
    say(f"building FROM {recipe.online_base}")
    with tempfile.TemporaryDirectory(prefix="llm-sandbox-build-") as context:
        path = Path(context) / "Dockerfile"
        path.write_text(dockerfile(recipe), encoding="utf-8")
        _run([engine, "build", "-t", recipe.image, "-f", str(path), context], say)


def _build_offline(recipe: Recipe, engine: str, say: Progress, mirror: str | None) -> None:
    tarball = rootfs_tarball(recipe.language, progress=say, mirror=mirror)
    say(f"importing {tarball.name} ({tarball.stat().st_size / 2**20:.0f} MiB)")
    changes = [
        arg
        for line in _metadata_instructions(recipe, from_rootfs=True)
        for arg in ("--change", line)
    ]
    _run([engine, "import", *changes, str(tarball), recipe.image], say)


def _metadata_instructions(recipe: Recipe, *, from_rootfs: bool) -> list[str]:
    env = recipe.image_env(from_rootfs=from_rootfs)
    labels = {
        f"{LABEL_PREFIX}.language": recipe.language,
        f"{LABEL_PREFIX}.recipe": recipe_hash(recipe),
        f"{LABEL_PREFIX}.build": "debootstrap" if from_rootfs else recipe.online_base,
    }
    entrypoint = [] if from_rootfs else ["ENTRYPOINT []"]
    return [
        *(f"ENV {key}={json.dumps(value)}" for key, value in env.items()),
        *(f"LABEL {key}={json.dumps(value)}" for key, value in labels.items()),
        f"WORKDIR {SANDBOX_HOME}",
        f"USER {SANDBOX_UID}:{SANDBOX_GID}",
        *entrypoint,
        f"CMD {json.dumps(list(DEFAULT_COMMAND))}",
    ]


# --- root filesystem tarballs ----------------------------------------------------------------


def rootfs_tarball(lang: str, *, progress: Progress = print, mirror: str | None = None) -> Path:
    """The cached root filesystem tarball of ``lang``, made (debootstrap + apt) when missing."""
    recipe = recipe_for(lang)
    target = cache_dir() / f"rootfs-{lang}-{_digest(_rootfs_material(recipe))}.tar"

    def make() -> None:
        _make_rootfs_tarball(recipe, target, progress, mirror or debian_mirror())
        _remove_stale(target, f"rootfs-{lang}-*")

    return _cached(target, make, progress)


def _base_tarball(say: Progress, mirror: str) -> Path:
    """The cached bare ``minbase`` system every language starts from (debootstrap runs once)."""
    digest = _digest([ROOTFS_FORMAT, DEBIAN_SUITE, COMMON_DEBIAN_PACKAGES])
    target = cache_dir() / f"debootstrap-{DEBIAN_SUITE}-{digest}.tar"

    def make() -> None:
        _make_base_tarball(target, say, mirror)
        _remove_stale(target, f"debootstrap-{DEBIAN_SUITE}-*")

    return _cached(target, make, say)


def _remove_stale(target: Path, pattern: str) -> None:
    """Delete older cached tarballs (and their lock files) that ``target`` supersedes."""
    for path in target.parent.glob(pattern):
        if path.suffix in (".tar", ".lock") and path.stem != target.stem:
            path.unlink(missing_ok=True)


def _cached(target: Path, make: Callable[[], None], say: Progress) -> Path:
    """``target``, after running ``make`` to create it unless it exists (one maker at a time)."""
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with _locked(target.with_suffix(".lock")):
            if not target.is_file():  # another process may have made it while we waited
                make()
                return target
    say(f"using cached {target}")
    return target


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _work_dir(target: Path) -> Iterator[Path]:
    """A scratch directory next to ``target`` (same file system, so results can be renamed)."""
    work = Path(tempfile.mkdtemp(prefix=f".{target.stem}-", dir=target.parent))
    try:
        yield work
    finally:
        _remove_tree(work)


def _make_base_tarball(target: Path, say: Progress, mirror: str) -> None:
    _check_can_debootstrap()
    with _work_dir(target) as work:
        rootfs = work / "rootfs"
        _debootstrap(rootfs, mirror, say)
        _remove_globs(rootfs, ("var/cache/apt/archives/*.deb",))
        _pack(rootfs, target, work, say, excludes=())  # keeps /dev: apt needs /dev/null


def _make_rootfs_tarball(recipe: Recipe, target: Path, say: Progress, mirror: str) -> None:
    _check_can_debootstrap()
    base = _base_tarball(say, mirror)
    with _work_dir(target) as work:
        rootfs = work / "rootfs"
        rootfs.mkdir()
        say(f"unpacking {base.name}")
        _run(["tar", "--numeric-owner", "-xpf", str(base), "-C", str(rootfs)], say)
        _run_rootfs_commands(rootfs, recipe.pre_install_commands, say)
        _apt_install(rootfs, recipe.all_debian_packages, mirror, say)
        _run_rootfs_commands(rootfs, recipe.rootfs_commands, say)
        _add_sandbox_user(rootfs, say)
        _strip(rootfs, say)
        _pack(rootfs, target, work, say, excludes=_TAR_EXCLUDES)


def _pack(
    rootfs: Path, target: Path, work: Path, say: Progress, *, excludes: Sequence[str]
) -> None:
    say(f"packing {target.name}")
    partial = work / target.name
    options = [f"--exclude={pattern}" for pattern in excludes]
    command = ["tar", "--numeric-owner", *_TAR_FORMAT, "-C", str(rootfs), *options]
    _run([*command, "-cf", str(partial), "."], say)
    partial.replace(target)


def _check_can_debootstrap() -> None:
    if shutil.which("debootstrap") is None:
        raise ImageBuildError(
            "debootstrap is not installed (apt-get install debootstrap), and it is needed to "
            "build an image without a container registry"
        )
    if os.geteuid() != 0:
        raise ImageBuildError(
            "building an image without a container registry runs debootstrap, which needs root; "
            f"build it once as root (the tarball is cached in {cache_dir()})"
        )


def _debootstrap(rootfs: Path, mirror: str, say: Progress) -> None:
    """A minimal Debian system; the recipe's packages come next, through apt.

    debootstrap's own dependency resolver ignores virtual packages (``npm`` in bookworm needs
    ``node-has``, provided only by ``node-function-bind``), so it installs just the basics.
    """
    say(f"debootstrap {DEBIAN_SUITE} (minbase) from {mirror}")
    include = ",".join(COMMON_DEBIAN_PACKAGES)
    command = ["debootstrap", "--variant=minbase", f"--include={include}", DEBIAN_SUITE]
    try:
        _run([*command, str(rootfs), mirror], say)
    except ImageBuildError as exc:
        log = _tail(rootfs / "debootstrap" / "debootstrap.log")
        if not log:
            raise
        raise ImageBuildError(
            "debootstrap failed", command=exc.command, output_tail=f"{exc.output_tail}\n{log}"
        ) from exc


def _apt_install(rootfs: Path, packages: Sequence[str], mirror: str, say: Progress) -> None:
    say(f"apt-get install {' '.join(packages)}")
    # The cached base may come from another mirror, with an outdated copy of the host's DNS set-up.
    (rootfs / "etc/apt/sources.list").write_text(f"deb {mirror} {DEBIAN_SUITE} main\n")
    resolv = rootfs / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        shutil.copyfile("/etc/resolv.conf", resolv)
    install = "apt-get install -y -q --no-install-recommends " + shlex.join(packages)
    with _proc_mounted(rootfs, say):
        _chroot(rootfs, f"apt-get update -q && {install}", say)


def _run_rootfs_commands(rootfs: Path, commands: Sequence[str], say: Progress) -> None:
    if not commands:
        return
    say("running the recipe's root filesystem commands")
    with _proc_mounted(rootfs, say):
        _chroot(rootfs, "set -eu\n" + "\n".join(commands), say)


def _add_sandbox_user(rootfs: Path, say: Progress) -> None:
    say(f"adding user uid {SANDBOX_UID} and {SANDBOX_HOME}")
    _chroot(rootfs, "set -eu\n" + "\n".join(SETUP_COMMANDS), say)


def _strip(rootfs: Path, say: Progress) -> None:
    say("removing apt caches, package lists, logs, documentation, manuals and translations")
    _remove_globs(rootfs, _ROOTFS_JUNK)
    _remove_docs(rootfs / _DOC_DIR)
    # Engines mount their own resolv.conf/hostname/hosts; do not ship the build host's.
    for name in ("etc/resolv.conf", "etc/hostname"):
        (rootfs / name).unlink(missing_ok=True)
        (rootfs / name).touch()


def _remove_docs(doc: Path) -> None:
    """Empty ``/usr/share/doc`` but for the copyright files, as Debian's slim images do.

    Links to directories (a package's doc directory often points to another package's) are kept
    and never followed.
    """
    for top, _dirs, files in os.walk(doc, topdown=False):
        here = Path(top)
        for name in files:
            if name != _DOC_KEEP:
                (here / name).unlink()
        if here != doc:
            with contextlib.suppress(OSError):  # not empty: a copyright file or a link is left
                here.rmdir()


def _chroot(rootfs: Path, script: str, say: Progress) -> None:
    _run(["chroot", str(rootfs), "/bin/sh", "-c", script], say, env=dict(_CHROOT_ENV))


@contextlib.contextmanager
def _proc_mounted(rootfs: Path, say: Progress) -> Iterator[None]:
    """``/proc`` inside ``rootfs`` while package scripts run (some, e.g. Java's, need it)."""
    proc = rootfs / "proc"
    _run(["mount", "-t", "proc", "proc", str(proc)], say)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(proc)], check=False, capture_output=True)


def _tail(path: Path, lines: int = _OUTPUT_TAIL_LINES) -> str:
    return "\n".join(_read(path).splitlines()[-lines:])


def _remove_globs(rootfs: Path, patterns: Sequence[str]) -> None:
    for pattern in patterns:
        for path in rootfs.glob(pattern):
            _remove_path(path)


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _remove_tree(path: Path) -> None:
    """Delete a build directory, but never through something still mounted inside it."""
    if _unmount_below(path):
        shutil.rmtree(path, ignore_errors=True)


def _unmount_below(path: Path) -> bool:
    """Unmount everything below ``path`` (deepest first); ``True`` when nothing is left."""
    for mount_point in _mounts_below(path):
        subprocess.run(["umount", "-l", mount_point], check=False, capture_output=True)
    return not _mounts_below(path)


def _mounts_below(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    try:
        lines = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    points = [_unescape_mount(line.split()[1]) for line in lines if len(line.split()) > 1]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def _unescape_mount(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


# --- apt sources -----------------------------------------------------------------------------


def _apt_sources(apt_dir: Path) -> Iterator[tuple[str, str]]:
    """``(uri, suite)`` for every enabled ``deb`` entry, in apt's file order."""
    lists = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in lists:
        yield from _one_line_sources(_read(path))
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        yield from _deb822_sources(_read(path))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _one_line_sources(text: str) -> Iterator[tuple[str, str]]:
    for line in text.splitlines():
        match = _DEB_LINE.match(line.split("#", 1)[0].strip())
        if match:
            yield match.group(1), match.group(2)


def _deb822_sources(text: str) -> Iterator[tuple[str, str]]:
    for stanza in re.split(r"\n[ \t]*\n", text):
        fields = _deb822_fields(stanza)
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").strip().lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                yield uri, suite


def _deb822_fields(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in stanza.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t" and key is not None:
            fields[key] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
    return fields


# --- running commands ------------------------------------------------------------------------


def _run(command: Sequence[str], say: Progress, *, env: dict[str, str] | None = None) -> None:
    """Run ``command``, streaming its output lines to ``say``; raise on failure."""
    tail: collections.deque[str] = collections.deque(maxlen=_OUTPUT_TAIL_LINES)
    try:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise ImageBuildError(f"cannot run {command[0]}: {exc}", command=command) from exc
    with process:
        for raw in process.stdout or ():
            line = raw.rstrip()
            tail.append(line)
            say(f"  {line}")
    if process.returncode != 0:
        raise ImageBuildError(
            f"{command[0]} failed with exit code {process.returncode}",
            command=command,
            output_tail="\n".join(tail),
        )
