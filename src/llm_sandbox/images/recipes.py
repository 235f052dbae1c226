"""Image recipes: what goes into the default image of a language.

Pure data, no side effects. Each language module declares its own :class:`Recipe` (its handler's
``recipe``; see :mod:`llm_sandbox.language_handlers`); this module holds the type and what every
image shares. Every language has one image *we* own, named by
:func:`llm_sandbox.images.naming.image_name` and built one of two ways by
:mod:`llm_sandbox.images.builder`:

* offline: a Debian ``bookworm`` root filesystem (debootstrap, then apt) with
  ``debian_packages``, then the recipe's ``rootfs_commands`` (trims and warm-ups), without
  documentation, imported into the engine -- works without any container registry;
* online: ``FROM online_base`` (an official image) plus the same run-time set-up.

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

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from llm_sandbox.images.naming import image_name

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


@dataclass(frozen=True)
class Recipe:
    """How to build the default image for one language (declared by its handler)."""

    language: str
    debian_packages: tuple[str, ...]
    online_base: str
    optional_debian_packages: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Environment baked into the image on top of the common one (kept read-only)."""
    pre_install_commands: tuple[str, ...] = ()
    """POSIX shell commands run as root (one ``set -eu`` script) in the offline root filesystem
    before ``debian_packages`` are installed (e.g. a stand-in for a needless dependency)."""
    rootfs_commands: tuple[str, ...] = ()
    """POSIX shell commands run as root (one ``set -eu`` script) in the offline root filesystem
    once its packages are installed: trims of what a sandbox never uses, and warm-ups."""
    online_commands: tuple[str, ...] = ()
    """POSIX shell commands run as root on top of the official image of the online build: what
    the offline build gets from ``debian_packages`` beyond the base language (e.g. plotting)."""
    commands: tuple[str, ...] = ()
    """Command names the image answers to, for uid 1000 on the image's ``PATH``: the usual ones
    of the language, which code written for the previous generation calls (``python``,
    ``pip``...). The builder checks them in every image it builds, either way."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))

    @property
    def image(self) -> str:
        """The fully qualified name of the image we build for this language."""
        return image_name(self.language)

    @property
    def all_debian_packages(self) -> tuple[str, ...]:
        """Packages for the offline build: common ones first, then the language's, no repeats."""
        return tuple(dict.fromkeys(COMMON_DEBIAN_PACKAGES + self.debian_packages))

    def image_env(self, *, from_rootfs: bool) -> dict[str, str]:
        """The environment baked into the image: common variables overlaid by the recipe's."""
        base = {**ROOTFS_ENV, **COMMON_ENV} if from_rootfs else dict(COMMON_ENV)
        return {**base, **self.env}
