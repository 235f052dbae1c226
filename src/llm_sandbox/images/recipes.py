"""Image recipes: what goes into the default image of each supported language.

Pure data, no side effects. Every language has one image *we* own, built one of two ways by
:mod:`llm_sandbox.images.builder`:

* offline: a Debian ``bookworm`` root filesystem (debootstrap, then apt) with
  ``debian_packages``, then the recipe's ``rootfs_commands`` (trims and warm-ups), without
  documentation, imported into the engine -- works without any container registry;
* online: ``FROM online_base`` (an official image) plus the same run-time set-up.

Image naming
------------
Names are fully qualified: ``localhost/llm-sandbox/<language>:<IMAGE_VERSION>``. Podman stores a
short name such as ``llm-sandbox-python:1`` as ``localhost/llm-sandbox-python:1`` while Docker
stores it unchanged, so a short name would compare differently in the two engines (and in their
APIs' ``RepoTags``). With an explicit ``localhost/`` domain both engines store, list and look up the
very same string, and neither ever tries to pull it from Docker Hub. Bump :data:`IMAGE_VERSION`
whenever a recipe or the run-time set-up changes so stale local images are not reused.

Run-time contract common to all images
--------------------------------------
A non-root user ``sandbox`` (uid/gid 1000) whose home and working directory is ``/sandbox``
(owned by it), ``/tmp`` with mode 1777, default user ``1000:1000``, working directory
``/sandbox``, no entrypoint, and a default command that idles until it receives ``SIGTERM`` and
then exits at once. (A bare ``sleep infinity`` as PID 1 ignores ``SIGTERM``, so ``docker stop``
would wait out its 10 s grace period; Docker 20.10's ``import`` cannot set ``STOPSIGNAL``.)
Backends that pass their own command should still stop containers with ``SIGKILL``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

IMAGE_REPOSITORY: Final = "localhost/llm-sandbox"
IMAGE_VERSION: Final = "1"
DEBIAN_SUITE: Final = "bookworm"
DEFAULT_DEBIAN_MIRROR: Final = "http://deb.debian.org/debian"

SANDBOX_USER: Final = "sandbox"
SANDBOX_UID: Final = 1000
SANDBOX_GID: Final = 1000
SANDBOX_HOME: Final = "/sandbox"
DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_COMMAND: Final = ("/bin/sh", "-c", "trap 'exit 0' TERM INT; sleep infinity & wait")

#: Environment of every image (language recipes may add more).
COMMON_ENV: Final = MappingProxyType({"LANG": "C.UTF-8"})
#: Extra environment for images imported from a bare root filesystem, which carry no
#: configuration at all. Official base images bring their own ``PATH`` (e.g. ``/usr/local/go/bin``)
#: and must keep it.
ROOTFS_ENV: Final = MappingProxyType({"PATH": DEFAULT_PATH})

#: POSIX shell commands run as root inside the image (``chroot`` offline, ``RUN`` online).
#: Official base images sometimes own uid/gid 1000 already (``node``, ``ubuntu``, ``docker``);
#: that account is removed first so that 1000 is always ``sandbox``.
SETUP_COMMANDS: Final = (
    f'u="$(getent passwd {SANDBOX_UID} | cut -d: -f1)"',
    f'if [ -n "$u" ] && [ "$u" != {SANDBOX_USER} ]; then userdel "$u"; fi',
    f'g="$(getent group {SANDBOX_GID} | cut -d: -f1)"',
    f'if [ -n "$g" ] && [ "$g" != {SANDBOX_USER} ]; then groupdel "$g"; fi',
    f"getent group {SANDBOX_USER} >/dev/null || groupadd -g {SANDBOX_GID} {SANDBOX_USER}",
    (
        f"getent passwd {SANDBOX_USER} >/dev/null || useradd -u {SANDBOX_UID} -g {SANDBOX_GID}"
        f" -d {SANDBOX_HOME} -M -s /bin/bash {SANDBOX_USER}"
    ),
    f"mkdir -p {SANDBOX_HOME}",
    f"chown {SANDBOX_UID}:{SANDBOX_GID} {SANDBOX_HOME}",
    f"chmod 0755 {SANDBOX_HOME}",
    "chmod 1777 /tmp",
)

#: Packages every offline image gets on top of debootstrap's ``minbase`` variant.
COMMON_DEBIAN_PACKAGES: Final = ("ca-certificates",)


#: Plotting libraries of the python and r images (Debian packages, and the same from PyPI for the
#: online python build). Python's PIL is Pillow; plotly renders to HTML (no kaleido in Debian).
PYTHON_PLOTTING_PACKAGES: Final = (
    "python3-matplotlib",
    "python3-seaborn",
    "python3-plotly",
    "python3-pil",
)
PYTHON_PLOTTING_PYPI: Final = ("matplotlib", "seaborn", "plotly", "pillow")
R_PLOTTING_PACKAGES: Final = ("r-cran-ggplot2",)
PYTHON_STAND_INS: Final = ("python3-pythran", "python3-sympy", "unicode-data", "python3-lxml")


def stand_ins(*packages: str) -> tuple[str, ...]:
    """Commands installing an empty package for each name (run before the recipe's packages).

    For dependencies Debian declares but a sandbox never uses, which would otherwise pull in far
    more: seaborn needs scipy, whose package depends on the pythran compiler (g++, Boost and
    OpenBLAS headers, about 1 GB); fonttools, needed by matplotlib, depends on sympy (120 MB),
    unicode-data (37 MB) and lxml (with libxml2 and ICU, 50 MB) for features matplotlib does not
    use. A program that wants one of them installs it with `install()`.
    """
    commands = ["d=/tmp/stand-ins", 'mkdir -p "$d"']
    for package in packages:
        control = (
            f"Package: {package}",
            "Version: 999:0+llm-sandbox",
            "Architecture: all",
            "Maintainer: llm-sandbox <root@localhost>",
            "Description: empty stand-in for a dependency nothing in a sandbox uses",
        )
        lines = " ".join(f"'{line}'" for line in control)
        commands += [
            f'mkdir -p "$d/{package}/DEBIAN"',
            f"printf '%s\\n' {lines} > \"$d/{package}/DEBIAN/control\"",
            f'dpkg-deb --build "$d/{package}" "$d/{package}.deb" >/dev/null',
            f'dpkg -i "$d/{package}.deb" >/dev/null',
        ]
    return (*commands, 'rm -rf "$d"')


def _env(**values: str) -> MappingProxyType[str, str]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True)
class Recipe:
    """How to build the default image for one language."""

    language: str
    debian_packages: tuple[str, ...]
    online_base: str
    optional_debian_packages: tuple[str, ...] = ()
    env: MappingProxyType[str, str] = field(default_factory=_env, hash=False)
    pre_install_commands: tuple[str, ...] = ()
    """POSIX shell commands run as root (one ``set -eu`` script) in the offline root filesystem
    before ``debian_packages`` are installed (e.g. a stand-in for a needless dependency)."""
    rootfs_commands: tuple[str, ...] = ()
    """POSIX shell commands run as root (one ``set -eu`` script) in the offline root filesystem
    once its packages are installed: trims of what a sandbox never uses, and warm-ups."""
    online_commands: tuple[str, ...] = ()
    """POSIX shell commands run as root on top of the official image of the online build: what
    the offline build gets from ``debian_packages`` beyond the base language (e.g. plotting)."""

    @property
    def image(self) -> str:
        """The fully qualified name of the image we build for this language."""
        return f"{IMAGE_REPOSITORY}/{self.language}:{IMAGE_VERSION}"

    @property
    def all_debian_packages(self) -> tuple[str, ...]:
        """Packages for the offline build: common ones first, then the language's, no repeats."""
        return tuple(dict.fromkeys(COMMON_DEBIAN_PACKAGES + self.debian_packages))

    def image_env(self, *, from_rootfs: bool) -> dict[str, str]:
        """The environment baked into the image: common variables overlaid by the recipe's."""
        base = {**ROOTFS_ENV, **COMMON_ENV} if from_rootfs else dict(COMMON_ENV)
        return {**base, **self.env}


RECIPES: Final = MappingProxyType(
    {
        recipe.language: recipe
        for recipe in (
            Recipe(
                language="python",
                # The plotting libraries ArtifactSandboxSession captures from (numpy and pandas
                # come with them).
                debian_packages=(
                    "python3",
                    "python3-pip",
                    "python3-venv",
                    *PYTHON_PLOTTING_PACKAGES,
                ),
                online_base="docker.io/library/python:3.11-slim",
                optional_debian_packages=("python3-scipy",),
                pre_install_commands=stand_ins(*PYTHON_STAND_INS),
                online_commands=("pip install --no-cache-dir " + " ".join(PYTHON_PLOTTING_PYPI),),
                # Debian marks its interpreter "externally managed" (PEP 668); the official image
                # does not. Let `pip install` (falling back to --user as uid 1000) work in both.
                env=_env(PIP_BREAK_SYSTEM_PACKAGES="1", PIP_DISABLE_PIP_VERSION_CHECK="1"),
            ),
            Recipe(
                language="javascript",
                debian_packages=("nodejs", "npm"),
                online_base="docker.io/library/node:22-bookworm-slim",
            ),
            Recipe(
                language="java",
                debian_packages=("openjdk-17-jdk-headless",),
                online_base="docker.io/library/eclipse-temurin:17",
                # The JDK's module files are jlink's input only (javac and java read
                # lib/modules): 80 MB nobody in a sandbox needs.
                rootfs_commands=("rm -rf /usr/lib/jvm/*/jmods",),
            ),
            Recipe(
                language="cpp",
                debian_packages=("g++", "make"),
                online_base="docker.io/library/gcc:12",
                # GCC's LTO debugging tool (32 MB); compiling and linking never run it.
                rootfs_commands=("rm -f /usr/bin/*lto-dump*",),
            ),
            Recipe(
                language="go",
                debian_packages=("golang-go",),
                online_base="docker.io/library/golang:1.23",
                # No module proxy may be reachable: never try to download a newer toolchain. No C
                # compiler in the offline image: without CGO_ENABLED=0 Go 1.19 fails to build
                # anything importing net (it does not fall back to pure Go by itself).
                env=_env(GOTOOLCHAIN="local", CGO_ENABLED="0"),
                rootfs_commands=(
                    'goroot="$(go env GOROOT)"',
                    # Archives of the go tool's own packages (140 MB), used only to rebuild it.
                    'rm -rf "$goroot"/pkg/*/cmd',
                    # Debian ships the standard library precompiled with cgo; with CGO_ENABLED=0
                    # net, os/user and all their dependants (net/http...) would be stale and be
                    # recompiled into every sandbox's fresh GOCACHE (seconds, and 20 MB of tmpfs).
                    "CGO_ENABLED=0 GOCACHE=/tmp/go-build GOPATH=/tmp/go go install std",
                    "rm -rf /tmp/go-build /tmp/go",
                ),
            ),
            Recipe(
                language="ruby",
                debian_packages=("ruby",),
                online_base="docker.io/library/ruby:3.2",
            ),
            Recipe(
                language="r",
                debian_packages=("r-base-core", *R_PLOTTING_PACKAGES),
                online_base="docker.io/library/r-base:latest",
                online_commands=(
                    "apt-get update",
                    "apt-get install -y --no-install-recommends " + " ".join(R_PLOTTING_PACKAGES),
                    "rm -rf /var/lib/apt/lists/*",
                ),
                optional_debian_packages=("r-recommended",),
            ),
        )
    }
)

LANGUAGES: Final = tuple(RECIPES)
