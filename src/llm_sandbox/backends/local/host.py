"""What this machine can enforce for the embedded backend, found by probing, not guessing.

`probe()` locates bubblewrap, nsenter and prlimit, proves that an unprivileged user namespace
can actually be created, and finds where cgroups can be made. The result is cached per process.
Any failure is raised as an error that says what is missing and how to fix it.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass

from llm_sandbox.backends.local import cgroups
from llm_sandbox.backends.local.bwrap import HostLayout
from llm_sandbox.backends.seccomp import build_filter
from llm_sandbox.exceptions import BackendUnavailableError

INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`, Fedora: "
    "`dnf install bubblewrap`, Arch: `pacman -S bubblewrap`)"
)


@dataclass(frozen=True)
class LocalHost:
    bwrap: str
    nsenter: str
    prlimit: str
    layout: HostLayout
    cgroups: cgroups.CgroupHost | None
    seccomp: bytes
    is_root: bool

    @property
    def cgroup_controllers(self) -> frozenset[str]:
        return self.cgroups.controllers if self.cgroups else frozenset()


def _tool(name: str, hint: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if path is None:
        raise BackendUnavailableError(
            f"the local backend needs `{name}`, which is not on PATH; {hint}"
        )
    return path


def _check_user_namespaces(bwrap: str) -> None:
    result = subprocess.run(
        [bwrap, "--unshare-user", "--unshare-pid", "--ro-bind", "/", "/", "--", "true"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode == 0:
        return
    detail = result.stderr.strip()
    hint = "enable unprivileged user namespaces: `sysctl -w kernel.unprivileged_userns_clone=1`"
    if os.path.exists("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"):
        hint += " or `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (Ubuntu 24.04+)"
    if os.path.exists("/proc/sys/user/max_user_namespaces"):
        hint += " and make sure `user.max_user_namespaces` is not 0"
    raise BackendUnavailableError(
        f"bubblewrap cannot create a user namespace here ({detail}); {hint}"
    )


@functools.lru_cache(maxsize=1)
def probe() -> LocalHost:
    if platform.system() != "Linux":
        raise BackendUnavailableError(
            "the local backend needs Linux namespaces; on this system use backend='docker'"
        )
    bwrap = _tool("bwrap", INSTALL_HINT)
    util_linux = "install util-linux (it provides nsenter and prlimit)"
    nsenter = _tool("nsenter", util_linux)
    prlimit = _tool("prlimit", util_linux)
    try:
        seccomp = build_filter()
    except ValueError as exc:
        raise BackendUnavailableError(f"no seccomp filter for this machine: {exc}") from exc
    _check_user_namespaces(bwrap)
    return LocalHost(
        bwrap=bwrap,
        nsenter=nsenter,
        prlimit=prlimit,
        layout=HostLayout.probe(),
        cgroups=cgroups.detect(),
        seccomp=seccomp,
        is_root=os.geteuid() == 0,
    )
