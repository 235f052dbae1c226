"""Command lines for bubblewrap: the session holder and each sandboxed command. Pure functions.

The session holder ("zygote") is a user + mount namespace that owns the session's private
tmpfs (size-capped, so the code cannot fill the host's disk, and gone when the session ends
even if the caller crashes). Each command is then started by `nsenter` into that namespace
and runs under its own bubblewrap: new user, pid, network, ipc, uts and cgroup namespaces,
a read-only root assembled from the host's runtime directories, the session's work directory
and /tmp bound in, no capabilities, a seccomp filter, and its own session (no TIOCSTI).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from llm_sandbox.layout import LIBS_DIR

SANDBOX_UID = 1000
SANDBOX_GID = 1000
HOSTNAME = "sandbox"

# Top-level host directories that hold programs and libraries (bound read-only, or recreated
# as the same symlink on merged-/usr systems).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

# The parts of /etc that language runtimes read. Nothing with secrets (shadow, ssh, sudoers).
ETC_ENTRIES = (
    "/etc/alternatives",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/fonts",
    "/etc/java-*",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/maven",
    "/etc/mime.types",
    "/etc/nsswitch.conf",
    "/etc/protocols",
    "/etc/python3*",
    "/etc/R",
    "/etc/services",
    "/etc/ssl",
    "/etc/timezone",
)
# Kernel knobs under /proc that must never be writable from inside. The sandbox's user is
# the caller's user outside; when that is root, writable sysctls would reach the host.
PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")
NETWORK_ETC_ENTRIES = ("/etc/resolv.conf", "/etc/gai.conf", "/etc/host.conf")


@dataclass(frozen=True)
class HostLayout:
    """What the host offers to build the sandbox's root from (probed once per process)."""

    system: tuple[tuple[str, str | None], ...]
    """(path, symlink target or None for a directory) for each SYSTEM_DIRS entry present."""
    etc: tuple[str, ...]
    network_etc: tuple[str, ...]

    @classmethod
    def probe(cls) -> HostLayout:
        system: list[tuple[str, str | None]] = []
        for path in SYSTEM_DIRS:
            if os.path.islink(path):
                system.append((path, os.readlink(path)))
            elif os.path.isdir(path):
                system.append((path, None))
        return cls(tuple(system), _existing(ETC_ENTRIES), _existing(NETWORK_ETC_ENTRIES))


def _existing(patterns: Sequence[str]) -> tuple[str, ...]:
    found: list[str] = []
    for pattern in patterns:
        found.extend(sorted(glob.glob(pattern)))
    return tuple(found)


@dataclass(frozen=True)
class SessionPaths:
    """Host paths of one session. `fs` is a tmpfs visible only inside the holder's namespace."""

    state: str

    @property
    def fs(self) -> str:
        return f"{self.state}/fs"

    @property
    def etc(self) -> str:
        return f"{self.state}/etc"

    def area(self, name: str) -> str:
        return f"{self.fs}/{name}"


AREAS = ("work", "tmp", "shm", "libs")


def holder_argv(
    bwrap: str, paths: SessionPaths, disk_bytes: int, max_files: int, status_fd: int
) -> list[str]:
    """The session holder: a user+mount namespace owning the capped session tmpfs.

    The holder mounts the tmpfs itself (CAP_SYS_ADMIN inside its own user namespace only),
    because bwrap's --tmpfs can cap bytes but not inodes, and a flood of empty files would
    otherwise pin unbounded kernel memory. It says "ready" once the mount is in place (bwrap
    reports its pid earlier, while the namespace is still being assembled), then waits for
    stdin to close.
    """
    argv = [bwrap, "--unshare-user", "--die-with-parent", "--dev-bind", "/", "/"]
    argv += ["--cap-add", "CAP_SYS_ADMIN", "--json-status-fd", str(status_fd), "--"]
    options = f"size={disk_bytes},nr_inodes={max_files},mode=0700"
    areas = " ".join(f'"$1/{area}"' for area in AREAS)
    script = f'mount -t tmpfs -o {options} tmpfs "$1" && mkdir {areas} && echo ready && exec cat'
    return [*argv, "sh", "-c", script, "sh", paths.fs]


@dataclass(frozen=True)
class CommandSpec:
    """One sandboxed command, as the bwrap argv needs it."""

    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: str
    workdir: str
    network: bool
    writable_libs: bool
    host_paths: Sequence[str]
    data_files: Mapping[str, int]
    """Sandbox path → readable fd whose content bwrap copies into a read-only file."""
    seccomp_fd: int
    status_fd: int
    block_fd: int
    links: Mapping[str, str] = field(default_factory=dict)
    """Sandbox path → target: symbolic links made in the sandbox's own root (not the host's)."""
    scratch: Mapping[str, int] = field(default_factory=dict)
    """Sandbox path → size in bytes: writable in-memory directories of this command's own."""
    as_pid_1: bool = False
    """The command is the sandbox's pid 1 (no bwrap reaper): it must reap what it starts."""


def sandbox_argv(
    bwrap: str, layout: HostLayout, paths: SessionPaths, spec: CommandSpec
) -> list[str]:
    argv = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns"]
    if spec.network:
        argv.append("--share-net")
    if spec.as_pid_1:
        argv.append("--as-pid-1")
    argv += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID), "--hostname", HOSTNAME]
    argv += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv"]
    argv += _root_mounts(layout, paths, spec)
    for name, value in sorted(spec.env.items()):
        argv += ["--setenv", name, value]
    argv += ["--remount-ro", "/", "--chdir", spec.cwd]
    argv += ["--seccomp", str(spec.seccomp_fd)]
    argv += ["--json-status-fd", str(spec.status_fd), "--block-fd", str(spec.block_fd)]
    return [*argv, "--", *spec.argv]


def _root_mounts(layout: HostLayout, paths: SessionPaths, spec: CommandSpec) -> list[str]:
    argv: list[str] = []
    for path, target in layout.system:
        argv += ["--symlink", target, path] if target is not None else ["--ro-bind", path, path]
    for path in (*layout.etc, *(layout.network_etc if spec.network else ())):
        argv += ["--ro-bind", path, path]
    for name in ("passwd", "group", "hosts", "hostname"):
        argv += ["--ro-bind", f"{paths.etc}/{name}", f"/etc/{name}"]
    for path in spec.host_paths:
        argv += ["--ro-bind", path, path]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    for path in PROC_READ_ONLY:
        argv += ["--ro-bind-try", path, path]
    # /tmp before the work directory, which may live below it (e.g. /tmp/sandbox).
    argv += ["--bind", paths.area("tmp"), "/tmp", "--bind", paths.area("shm"), "/dev/shm"]
    argv += ["--bind", paths.area("work"), spec.workdir]
    argv += ["--bind" if spec.writable_libs else "--ro-bind", paths.area("libs"), LIBS_DIR]
    for dest, fd in sorted(spec.data_files.items()):
        argv += ["--ro-bind-data", str(fd), dest]
    for path, target in sorted(spec.links.items()):
        argv += ["--symlink", target, path]
    for path, size in sorted(spec.scratch.items()):
        argv += ["--size", str(size), "--tmpfs", path]
    return argv


def etc_files(workdir: str) -> dict[str, str]:
    """Synthesised identity files: the sandbox user and nothing of the host's accounts."""
    return {
        "passwd": (
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"sandbox:x:{SANDBOX_UID}:{SANDBOX_GID}:sandbox:{workdir}:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        "group": f"root:x:0:\nsandbox:x:{SANDBOX_GID}:\nnogroup:x:65534:\n",
        "hosts": f"127.0.0.1 localhost\n::1 localhost\n127.0.1.1 {HOSTNAME}\n",
        "hostname": f"{HOSTNAME}\n",
    }


def prlimit_argv(prlimit: str, limits: Mapping[str, int]) -> list[str]:
    """`prlimit --nofile=N:N ... --` for the resource limits that have no cgroup here."""
    return [prlimit, *(f"--{name}={value}:{value}" for name, value in sorted(limits.items())), "--"]


def nsenter_argv(nsenter: str, holder_pid: int) -> list[str]:
    return [nsenter, f"--target={holder_pid}", "--user", "--mount", "--preserve-credentials", "--"]
