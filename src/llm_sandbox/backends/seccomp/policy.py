"""The seccomp policy, written once: which syscalls fail, how, and under which argument values.

Two encodings are generated from this table and nothing else: the classic-BPF program that
bubblewrap installs for the embedded backend (:mod:`.bpf`) and the OCI seccomp profile that Docker
and Podman hand to their runtime (:mod:`.oci`). A test runs both over every syscall named here and
the argument values that matter, and requires the same answer from each.

The policy
----------
Allow by default: namespaces, dropped capabilities and ``no_new_privs`` are the boundary, and the
filter removes kernel surface that untrusted code never needs. :data:`RULES` has one rule per
syscall:

* :data:`DENIED_SYSCALLS` always fail with ``EPERM``: tracing other processes, mounting, modules,
  kexec, BPF, perf, keyrings, namespaces, io_uring, clock and host-name changes, and so on.
* ``clone3`` fails with ``ENOSYS``. Its flags live in memory, which a filter cannot read;
  ``ENOSYS`` makes libc fall back to ``clone``, whose flags it can.
* ``clone`` with any ``CLONE_NEW*`` flag, ``ioctl`` with ``TIOCSTI``/``TIOCLINUX`` (typing into
  the controlling terminal) and ``personality`` other than ``PER_LINUX``, ``PER_LINUX32`` or the
  query value fail with ``EPERM``. A personality flag such as ``ADDR_NO_RANDOMIZE`` or
  ``READ_IMPLIES_EXEC`` would weaken the address-space hardening of whatever the code executes.

Arguments are judged by their low 32 bits only (:class:`AnyBitSet`, :class:`OneOf`,
:class:`NoneOf`). That is all the kernel reads of these three (``unsigned int cmd`` and ``unsigned
int personality``; every ``CLONE_NEW*`` flag is in the low half of clone's flags), so a caller
cannot slip past a rule by setting upper bits the kernel then ignores, and the same rule reads the
same on 32-bit and 64-bit ABIs.

Where the two encodings differ on purpose
-----------------------------------------
A syscall that does not use the native ABI is where the encodings part ways; see
:data:`DELIBERATE_DIFFERENCES`. For every native syscall they agree.

Syscall numbers are hard-coded per architecture. They were taken from the kernel UAPI headers
(``asm/unistd_64.h`` for x86_64; ``asm-generic/unistd.h``, which aarch64 uses) and from the
kernel's syscall tables for syscalls newer than those headers; a test cross-checks them against
the headers installed on the machine. A denied name that does not exist on an architecture (for
example ``iopl`` on aarch64) is simply absent from that architecture's table. The OCI profile
names syscalls instead and leaves the numbers to the engine's libseccomp.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

__all__ = [
    "DELIBERATE_DIFFERENCES",
    "DENIED_SYSCALLS",
    "ENOSYS",
    "EPERM",
    "LOW32",
    "RULES",
    "SUPPORTED_ARCHES",
    "X32_ACTION",
    "AnyBitSet",
    "Arch",
    "Condition",
    "Errno",
    "NoneOf",
    "OneOf",
    "Rule",
    "resolve_arch",
    "rules_for",
]

LOW32: Final = 0xFFFFFFFF


@dataclass(frozen=True)
class Errno:
    """The action of every rule: the syscall fails with this errno (Linux numbering, which is
    the same on x86_64 and aarch64 whatever machine builds the filter)."""

    name: str
    value: int


EPERM: Final = Errno("EPERM", 1)
ENOSYS: Final = Errno("ENOSYS", 38)


# --- argument conditions --------------------------------------------------------------------------


@dataclass(frozen=True)
class _ArgCondition:
    """A test of the low 32 bits of argument ``index`` against named constants."""

    index: int
    constants: tuple[tuple[str, int], ...]

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(value for _, value in self.constants)

    def _clause(self, verb: str, test: str) -> str:
        names = [f"{name} ({value:#x})" for name, value in self.constants]
        listed = ", ".join(names[:-1])
        named = f"{listed} or {names[-1]}" if listed else names[-1]
        return f"{verb} arg{self.index} (low 32 bits) {test} {named}"


class AnyBitSet(_ArgCondition):
    """Holds when the argument has any of the constants' bits set."""

    @property
    def mask(self) -> int:
        mask = 0
        for value in self.values:
            mask |= value
        return mask

    def holds(self, arg: int) -> bool:
        return bool(arg & self.mask)

    def describe(self) -> str:
        return self._clause("if", "has any of")


class OneOf(_ArgCondition):
    """Holds when the argument equals one of the constants."""

    def holds(self, arg: int) -> bool:
        return arg & LOW32 in self.values

    def describe(self) -> str:
        return self._clause("if", "is")


class NoneOf(_ArgCondition):
    """Holds when the argument equals none of the constants (they are the allowed values)."""

    def holds(self, arg: int) -> bool:
        return arg & LOW32 not in self.values

    def describe(self) -> str:
        return self._clause("unless", "is")


Condition: TypeAlias = AnyBitSet | OneOf | NoneOf


@dataclass(frozen=True)
class Rule:
    """``syscall`` fails with ``action`` when ``when`` holds (always, if it is None)."""

    syscall: str
    action: Errno
    when: Condition | None = None

    def applies(self, args: Sequence[int]) -> bool:
        """Whether the rule fires for these six argument values (the reference semantics)."""
        return self.when is None or self.when.holds(args[self.when.index])

    def describe(self) -> str:
        return (
            self.action.name if self.when is None else f"{self.action.name} {self.when.describe()}"
        )


# --- the rules ------------------------------------------------------------------------------------

DENIED_SYSCALLS: Final[frozenset[str]] = frozenset(
    {
        # other processes' memory, file descriptors and kernel objects
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "pidfd_getfd",
        "kcmp",
        # mounts and the new mount API
        "mount",
        "umount2",
        "pivot_root",
        "move_mount",
        "open_tree",
        "open_tree_attr",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "mount_setattr",
        # namespaces (clone is filtered by flags, clone3 answers ENOSYS)
        "unshare",
        "setns",
        # kernel code, kernel state, the machine itself
        "init_module",
        "finit_module",
        "delete_module",
        "create_module",
        "get_kernel_syms",
        "query_module",
        "kexec_load",
        "kexec_file_load",
        "reboot",
        "swapon",
        "swapoff",
        "acct",
        "quotactl",
        "quotactl_fd",
        "syslog",
        "lookup_dcookie",
        "nfsservctl",
        "uselib",
        "vhangup",
        "iopl",
        "ioperm",
        # large attack surface rarely needed by untrusted code
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "fanotify_init",
        "open_by_handle_at",
        "name_to_handle_at",
        "migrate_pages",
        "move_pages",
        # kernel keyrings are not namespaced
        "keyctl",
        "add_key",
        "request_key",
        # clocks and host identity
        "settimeofday",
        "clock_settime",
        "clock_adjtime",
        "adjtimex",
        "sethostname",
        "setdomainname",
    }
)
"""Syscalls that always fail with ``EPERM`` (on the architectures where they exist)."""

# clone flags that create a namespace. CLONE_NEWTIME (0x80) is deliberately absent: for clone the
# low byte is the exit signal, and new time namespaces are only reachable via unshare or clone3,
# which are denied anyway.
_CLONE_NEW: Final = AnyBitSet(
    0,
    (
        ("CLONE_NEWNS", 0x00020000),
        ("CLONE_NEWCGROUP", 0x02000000),
        ("CLONE_NEWUTS", 0x04000000),
        ("CLONE_NEWIPC", 0x08000000),
        ("CLONE_NEWUSER", 0x10000000),
        ("CLONE_NEWPID", 0x20000000),
        ("CLONE_NEWNET", 0x40000000),
    ),
)
_TERMINAL_INJECTION: Final = OneOf(1, (("TIOCSTI", 0x5412), ("TIOCLINUX", 0x541C)))
_PERSONA_OTHER_THAN: Final = NoneOf(
    0,
    (
        ("PER_LINUX", 0x00000000),
        ("PER_LINUX32", 0x00000008),
        ("the query value", 0xFFFFFFFF),
    ),
)

RULES: Final[tuple[Rule, ...]] = (
    *(Rule(name, EPERM) for name in sorted(DENIED_SYSCALLS)),
    Rule("clone3", ENOSYS),
    Rule("clone", EPERM, _CLONE_NEW),
    Rule("ioctl", EPERM, _TERMINAL_INJECTION),
    Rule("personality", EPERM, _PERSONA_OTHER_THAN),
)
"""The whole policy for native syscalls: one rule per syscall; everything else is allowed."""

X32_ACTION: Final = EPERM
"""On x86_64, a syscall through the x32 ABI (number with bit 30 set): x32 numbers alias native
syscalls under other numbers and would bypass every rule above."""

DELIBERATE_DIFFERENCES: Final[Mapping[str, str]] = {
    "foreign_abi": "The BPF program kills a process that makes a syscall through another ABI "
    "(int 0x80 on x86_64, AArch32 on aarch64): its numbers only mean something for the native "
    "ABI. The OCI profile lists those ABIs among its architectures instead; libseccomp applies "
    "the same rules to them by name and allows the rest, as a 32-bit program in an image needs.",
    "x32": "The BPF program answers EPERM to every x32 syscall on x86_64. The OCI profile lists "
    "SCMP_ARCH_X32, whose syscalls libseccomp filters by name with the same rules.",
}
"""Where the BPF program and the OCI profile differ on purpose (ABI handling only)."""


# --- architectures --------------------------------------------------------------------------------
# Every syscall the policy names, per architecture. x86_64: asm/unistd_64.h; aarch64:
# asm-generic/unistd.h. open_tree_attr (Linux 6.15) is newer than those headers; its number is
# from arch/x86/entry/syscalls/syscall_64.tbl and scripts/syscall.tbl.

# From Linux 5.1 on (pidfd_send_signal, 424), a new syscall gets the same number on every
# architecture but alpha.
_SINCE_LINUX_5_1: Final[Mapping[str, int]] = {
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "clone3": 435,
    "pidfd_getfd": 438,
    "mount_setattr": 442,
    "quotactl_fd": 443,
    "open_tree_attr": 467,
}

_X86_64_SYSCALLS: Final[Mapping[str, int]] = {
    "ioctl": 16,
    "clone": 56,
    "ptrace": 101,
    "syslog": 103,
    "uselib": 134,
    "personality": 135,
    "vhangup": 153,
    "pivot_root": 155,
    "adjtimex": 159,
    "acct": 163,
    "settimeofday": 164,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "sethostname": 170,
    "setdomainname": 171,
    "iopl": 172,
    "ioperm": 173,
    "create_module": 174,
    "init_module": 175,
    "delete_module": 176,
    "get_kernel_syms": 177,
    "query_module": 178,
    "quotactl": 179,
    "nfsservctl": 180,
    "lookup_dcookie": 212,
    "clock_settime": 227,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "migrate_pages": 256,
    "unshare": 272,
    "move_pages": 279,
    "perf_event_open": 298,
    "fanotify_init": 300,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "clock_adjtime": 305,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    **_SINCE_LINUX_5_1,
}

_AARCH64_SYSCALLS: Final[Mapping[str, int]] = {
    "lookup_dcookie": 18,
    "ioctl": 29,
    "umount2": 39,
    "mount": 40,
    "pivot_root": 41,
    "nfsservctl": 42,
    "vhangup": 58,
    "quotactl": 60,
    "acct": 89,
    "personality": 92,
    "unshare": 97,
    "kexec_load": 104,
    "init_module": 105,
    "delete_module": 106,
    "clock_settime": 112,
    "syslog": 116,
    "ptrace": 117,
    "reboot": 142,
    "sethostname": 161,
    "setdomainname": 162,
    "settimeofday": 170,
    "adjtimex": 171,
    "add_key": 217,
    "request_key": 218,
    "keyctl": 219,
    "clone": 220,
    "swapon": 224,
    "swapoff": 225,
    "migrate_pages": 238,
    "move_pages": 239,
    "perf_event_open": 241,
    "fanotify_init": 262,
    "name_to_handle_at": 264,
    "open_by_handle_at": 265,
    "clock_adjtime": 266,
    "setns": 268,
    "process_vm_readv": 270,
    "process_vm_writev": 271,
    "kcmp": 272,
    "finit_module": 273,
    "bpf": 280,
    "userfaultfd": 282,
    "kexec_file_load": 294,
    **_SINCE_LINUX_5_1,
}


@dataclass(frozen=True)
class Arch:
    """One architecture: how the kernel names its native ABI and what its syscalls are numbered."""

    name: str
    audit_arch: int  # AUDIT_ARCH_* from linux/audit.h: EM_* | __AUDIT_ARCH_64BIT | _LE
    syscalls: Mapping[str, int]
    has_x32: bool
    scmp_arches: tuple[str, ...]  # libseccomp's names: the native ABI first, then compat ABIs


_ARCHES: Final[Mapping[str, Arch]] = {
    "x86_64": Arch(
        "x86_64",
        0xC000003E,
        _X86_64_SYSCALLS,
        has_x32=True,
        scmp_arches=("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    ),
    "aarch64": Arch(
        "aarch64",
        0xC00000B7,
        _AARCH64_SYSCALLS,
        has_x32=False,
        scmp_arches=("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
    ),
}
_ALIASES: Final[Mapping[str, str]] = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}

SUPPORTED_ARCHES: Final[tuple[str, ...]] = tuple(sorted(_ARCHES))
"""Architecture names the policy has numbers for (``platform.machine()`` spelling)."""


def resolve_arch(arch: str | None) -> Arch:
    """The architecture called ``arch`` (aliases accepted), or this machine's for None."""
    name = platform.machine() if arch is None else arch
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in _ARCHES:
        supported = ", ".join(SUPPORTED_ARCHES)
        raise ValueError(f"no seccomp filter for architecture {name!r}; supported: {supported}")
    return _ARCHES[key]


def rules_for(arch: Arch) -> list[Rule]:
    """The rules whose syscall exists on ``arch``, in :data:`RULES` order."""
    return [rule for rule in RULES if rule.syscall in arch.syscalls]
