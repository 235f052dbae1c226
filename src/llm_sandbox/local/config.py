"""`LocalSandboxConfig` and `SeccompPolicy`: the previous generation's configuration objects of
its bubblewrap sessions (`BubblewrapSession(sandbox_config=...)`), mapped onto our options.

Our embedded backend always has a fixed, hardened layout (read-only system directories, a
private size-capped work directory and /tmp, our seccomp filter). Settings that would weaken
or change that layout are refused with an error naming what to do instead; the rest become the
session's options (`network`, `env_vars`, `limits`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from llm_sandbox.backends.seccomp import DENIED_SYSCALLS
from llm_sandbox.config import ResourceLimits, check_environment
from llm_sandbox.exceptions import ConfigurationError

MiB = 1024 * 1024
DEFAULT_READ_ONLY_PATHS = (
    "/usr",
    "/bin",
    "/lib",
    "/lib64",
    "/etc/ld.so.cache",
    "/etc/alternatives",
)
DEFAULT_BLOCKED_SYSCALLS = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "move_mount",
    "mount_setattr",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "kexec_load",
    "kexec_file_load",
    "open_by_handle_at",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
)
_SYSCALL = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class SeccompPolicy:
    """Syscalls a local sandbox refuses. Ours refuses every one of these and more; naming one
    it does not know is an error (the filter is fixed: see `llm_sandbox.backends.seccomp`)."""

    blocked_syscalls: tuple[str, ...] = DEFAULT_BLOCKED_SYSCALLS

    def __post_init__(self) -> None:
        names = tuple(dict.fromkeys(self.blocked_syscalls))
        if not names or not all(isinstance(n, str) and _SYSCALL.fullmatch(n) for n in names):
            raise ConfigurationError("blocked_syscalls must be one or more syscall names")
        missing = sorted(set(names) - DENIED_SYSCALLS)
        if missing:
            raise ConfigurationError(
                f"our seccomp filter does not block {', '.join(missing)}; it blocks: "
                + ", ".join(sorted(DENIED_SYSCALLS))
            )
        object.__setattr__(self, "blocked_syscalls", names)

    def model_dump(self) -> dict[str, object]:
        return {"blocked_syscalls": self.blocked_syscalls}


@dataclass(frozen=True)
class LocalSandboxConfig:
    """The previous generation's local-sandbox settings, accepted where ours can honour them."""

    network: Literal["none", "host"] = "none"
    read_only_paths: tuple[str, ...] = DEFAULT_READ_ONLY_PATHS
    seccomp: SeccompPolicy | None = field(default_factory=SeccompPolicy)
    python_executable: str = "/usr/bin/python3"
    env: Mapping[str, str] = field(default_factory=dict)
    max_output_bytes: int = 8 * MiB
    max_artifact_bytes: int = 8 * MiB
    memory_limit_bytes: int | None = None
    cpu_time_limit: int | None = None
    file_size_limit: int | None = None
    open_files_limit: int | None = None

    def __post_init__(self) -> None:
        if self.network not in ("none", "host"):
            raise ConfigurationError(f"network must be 'none' or 'host', got {self.network!r}")
        if tuple(self.read_only_paths) != DEFAULT_READ_ONLY_PATHS:
            raise ConfigurationError(
                "read_only_paths cannot be changed: the embedded backend always mounts the host's "
                "system directories read-only and nothing else; copy data in with "
                "copy_to_runtime()"
            )
        if self.seccomp is None:
            raise ConfigurationError("the seccomp filter cannot be switched off")
        check_environment(self.env, "env")
        if self.open_files_limit is not None and self.open_files_limit < 16:
            raise ConfigurationError("open_files_limit must be at least 16")

    def session_options(self) -> dict[str, object]:
        """These settings as `SandboxSession` options."""
        limits = ResourceLimits()
        changes = {
            "output": self.max_output_bytes,
            "memory": self.memory_limit_bytes,
            "cpu_time": self.cpu_time_limit,
            "file_size": self.file_size_limit,
            "open_files": self.open_files_limit,
        }
        limits = dataclasses.replace(limits, **{k: v for k, v in changes.items() if v is not None})
        return {"network": self.network == "host", "env_vars": dict(self.env), "limits": limits}

    def model_dump(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["seccomp"] = self.seccomp.model_dump() if self.seccomp else None
        data["env"] = dict(self.env)
        return data
