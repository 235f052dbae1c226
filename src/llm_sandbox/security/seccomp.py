"""The seccomp policy, under the previous generation's module name.

`SeccompPolicy` and `DEFAULT_BLOCKED_SYSCALLS` describe what a local sandbox refuses (ours
refuses all of those and more: `llm_sandbox.backends.seccomp`); `compile_seccomp(policy)`
yields a file descriptor holding our BPF program, as `bwrap --seccomp FD` reads it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from llm_sandbox.backends.seccomp import build_filter
from llm_sandbox.local.config import DEFAULT_BLOCKED_SYSCALLS, SeccompPolicy

__all__ = ["DEFAULT_BLOCKED_SYSCALLS", "SeccompPolicy", "compile_seccomp", "seccomp_available"]


def seccomp_available() -> bool:
    """Whether this machine's architecture has a filter (x86_64, aarch64)."""
    try:
        build_filter()
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def compile_seccomp(policy: SeccompPolicy | None = None) -> Iterator[int]:
    """A readable file descriptor with the BPF program for `policy` (every policy this version
    accepts is within our filter, so the program is always ours); closed on exit."""
    fd = os.memfd_create("llm-sandbox-seccomp", os.MFD_CLOEXEC)
    try:
        os.write(fd, build_filter())
        os.lseek(fd, 0, os.SEEK_SET)
        yield fd
    finally:
        os.close(fd)
