"""A seccomp filter for the embedded sandbox, assembled in pure Python.

bubblewrap's ``--seccomp FD`` reads a raw classic-BPF program from FD: an array of
``struct sock_filter`` (``u16 code, u8 jt, u8 jf, u32 k``, native byte order) which it installs
with ``prctl(PR_SET_SECCOMP)`` just before it executes the sandboxed command. :func:`build_filter`
returns exactly those bytes, so no libseccomp and no compiler are needed.

Policy
------
The filter allows by default; namespaces, dropped capabilities and ``no_new_privs`` are the
boundary, and the filter removes kernel surface the sandboxed code never needs:

1. A syscall made with a foreign calling convention (``int 0x80`` on x86_64, AArch32 on aarch64)
   kills the process: the numbers below only mean something for the native ABI.
2. On x86_64, x32 syscalls (number with bit 30 set) fail with ``EPERM``: they alias native
   syscalls under other numbers and would bypass every rule below.
3. :data:`DENIED_SYSCALLS` fail with ``EPERM``: tracing other processes, mounting, modules,
   kexec, BPF, perf, keyrings, namespaces, io_uring, clock and host-name changes, and so on.
4. ``clone3`` fails with ``ENOSYS``. Its flags live in memory, which a BPF filter cannot read;
   ``ENOSYS`` makes libc fall back to ``clone``, whose flags it can.
5. ``clone`` with any ``CLONE_NEW*`` flag, ``ioctl`` with ``TIOCSTI``/``TIOCLINUX`` (typing into
   the controlling terminal) and ``personality`` other than ``PER_LINUX``, ``PER_LINUX32`` or the
   query value fail with ``EPERM``. Only the low 32 bits of these arguments are inspected; that is
   all the kernel reads of them, and it keeps the program the same on both architectures.

Program shape
-------------
The program checks the architecture, loads the syscall number once and then walks a flat list of
``if nr == N: return ACTION`` pairs. A rule that inspects an argument is a short block guarded by
one ``JEQ`` that jumps over it, and every block ends in ``RET``, so no jump is longer than the
block it skips (a few instructions) and the 8-bit jump offsets of classic BPF are never at risk.
Because every path that does not look at an argument depends only on the architecture and the
number, the kernel's seccomp action cache can pre-compute "allow" for all other syscalls.

Syscall numbers are hard-coded per architecture. They were taken from the kernel UAPI headers
(``asm/unistd_64.h`` for x86_64; ``asm-generic/unistd.h``, which aarch64 uses) and from the
kernel's syscall tables for syscalls newer than those headers; a test cross-checks them against
the headers installed on the machine. A denied name that does not exist on an architecture (for
example ``iopl`` on aarch64) is simply absent from that architecture's table.
"""

from __future__ import annotations

import platform
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Final, NamedTuple

__all__ = ["DENIED_SYSCALLS", "SUPPORTED_ARCHES", "build_filter", "describe"]

# --- classic BPF and seccomp constants (linux/filter.h, linux/bpf_common.h, linux/seccomp.h) ---

_BPF_LD_W_ABS: Final = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_BPF_JEQ_K: Final = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
_BPF_JGE_K: Final = 0x05 | 0x30 | 0x00  # BPF_JMP | BPF_JGE | BPF_K
_BPF_JSET_K: Final = 0x05 | 0x40 | 0x00  # BPF_JMP | BPF_JSET | BPF_K
_BPF_RET_K: Final = 0x06 | 0x00  # BPF_RET | BPF_K
_BPF_MAX_JUMP: Final = 0xFF

_RET_KILL_PROCESS: Final = 0x80000000
_RET_ERRNO: Final = 0x00050000
_RET_ALLOW: Final = 0x7FFF0000

# Linux errno values, identical on x86_64 and aarch64 (independent of the host running this code).
_EPERM: Final = 1
_ENOSYS: Final = 38

# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6].
_OFFSET_NR: Final = 0
_OFFSET_ARCH: Final = 4
_OFFSET_ARGS: Final = 16

_X32_SYSCALL_BIT: Final = 0x40000000

# clone flags that create a namespace. CLONE_NEWTIME (0x80) is deliberately absent: for clone the
# low byte is the exit signal, and new time namespaces are only reachable via unshare or clone3,
# which are denied anyway.
_CLONE_NAMESPACE_FLAGS: Final = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)
_TIOCSTI: Final = 0x5412
_TIOCLINUX: Final = 0x541C
_PERSONALITY_ALLOWED: Final = (
    0x00000000,  # PER_LINUX
    0x00000008,  # PER_LINUX32
    0xFFFFFFFF,  # query the current persona without changing it
)

# --- policy ---------------------------------------------------------------------------------

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

_ENOSYS_SYSCALLS: Final[frozenset[str]] = frozenset({"clone3"})
_ARGUMENT_CHECKS: Final[Mapping[str, str]] = {
    "clone": "EPERM if flags (arg0, low 32 bits) contain a CLONE_NEW* namespace flag",
    "ioctl": "EPERM if the request (arg1, low 32 bits) is TIOCSTI or TIOCLINUX",
    "personality": "EPERM unless the persona (arg0, low 32 bits) is 0x0, 0x8 or 0xffffffff",
}

# --- syscall tables ---------------------------------------------------------------------------
# Every syscall the filter names, per architecture. x86_64: asm/unistd_64.h; aarch64:
# asm-generic/unistd.h. open_tree_attr (Linux 6.15) is newer than those headers; its number is
# from arch/x86/entry/syscalls/syscall_64.tbl and scripts/syscall.tbl.

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


@dataclass(frozen=True)
class _Arch:
    name: str
    audit_arch: int  # AUDIT_ARCH_* from linux/audit.h: EM_* | __AUDIT_ARCH_64BIT | _LE
    syscalls: Mapping[str, int]
    has_x32: bool


_ARCHES: Final[Mapping[str, _Arch]] = {
    "x86_64": _Arch("x86_64", 0xC000003E, _X86_64_SYSCALLS, has_x32=True),
    "aarch64": _Arch("aarch64", 0xC00000B7, _AARCH64_SYSCALLS, has_x32=False),
}
_ALIASES: Final[Mapping[str, str]] = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}

SUPPORTED_ARCHES: Final[tuple[str, ...]] = tuple(sorted(_ARCHES))
"""Architecture names accepted by :func:`build_filter` (``platform.machine()`` spelling)."""


# --- assembling ----------------------------------------------------------------------------------


class _Insn(NamedTuple):
    code: int
    jt: int
    jf: int
    k: int

    def pack(self) -> bytes:
        return struct.pack("=HBBI", self.code, self.jt, self.jf, self.k)


def _load(offset: int) -> _Insn:
    return _Insn(_BPF_LD_W_ABS, 0, 0, offset)


def _ret(action: int) -> _Insn:
    return _Insn(_BPF_RET_K, 0, 0, action)


def _jump(op: int, k: int, jt: int, jf: int) -> _Insn:
    return _Insn(op, jt, jf, k)


def _errno(value: int) -> int:
    return _RET_ERRNO | value


def _arg_low32(index: int) -> int:
    """Offset of the low half of ``args[index]`` (both supported ABIs are little-endian)."""
    return _OFFSET_ARGS + 8 * index


def _arch_check(arch: _Arch) -> list[_Insn]:
    return [
        _load(_OFFSET_ARCH),
        _jump(_BPF_JEQ_K, arch.audit_arch, 1, 0),
        _ret(_RET_KILL_PROCESS),
    ]


def _x32_check() -> list[_Insn]:
    return [_jump(_BPF_JGE_K, _X32_SYSCALL_BIT, 0, 1), _ret(_errno(_EPERM))]


def _return_if(nr: int, action: int) -> list[_Insn]:
    return [_jump(_BPF_JEQ_K, nr, 0, 1), _ret(action)]


def _guarded(nr: int, block: list[_Insn]) -> list[_Insn]:
    """``if nr == N: <block>``; the block must end in RET because it clobbers the accumulator."""
    if block[-1].code != _BPF_RET_K or len(block) > _BPF_MAX_JUMP:
        raise AssertionError("an argument check must be short and end in RET")
    return [_jump(_BPF_JEQ_K, nr, 0, len(block)), *block]


def _clone_block() -> list[_Insn]:
    return [
        _load(_arg_low32(0)),
        _jump(_BPF_JSET_K, _CLONE_NAMESPACE_FLAGS, 0, 1),
        _ret(_errno(_EPERM)),
        _ret(_RET_ALLOW),
    ]


def _ioctl_block() -> list[_Insn]:
    return [
        _load(_arg_low32(1)),
        _jump(_BPF_JEQ_K, _TIOCSTI, 1, 0),
        _jump(_BPF_JEQ_K, _TIOCLINUX, 0, 1),
        _ret(_errno(_EPERM)),
        _ret(_RET_ALLOW),
    ]


def _personality_block() -> list[_Insn]:
    count = len(_PERSONALITY_ALLOWED)
    compares = [
        _jump(_BPF_JEQ_K, persona, count - i, 0) for i, persona in enumerate(_PERSONALITY_ALLOWED)
    ]
    return [_load(_arg_low32(0)), *compares, _ret(_errno(_EPERM)), _ret(_RET_ALLOW)]


def _present(arch: _Arch, names: Iterable[str]) -> list[int]:
    return sorted(arch.syscalls[name] for name in names if name in arch.syscalls)


def _program(arch: _Arch) -> list[_Insn]:
    program = [*_arch_check(arch), _load(_OFFSET_NR)]
    if arch.has_x32:
        program += _x32_check()
    for nr in _present(arch, DENIED_SYSCALLS):
        program += _return_if(nr, _errno(_EPERM))
    for nr in _present(arch, _ENOSYS_SYSCALLS):
        program += _return_if(nr, _errno(_ENOSYS))
    program += _guarded(arch.syscalls["clone"], _clone_block())
    program += _guarded(arch.syscalls["ioctl"], _ioctl_block())
    program += _guarded(arch.syscalls["personality"], _personality_block())
    program.append(_ret(_RET_ALLOW))
    _check_jumps(program)
    return program


def _check_jumps(program: list[_Insn]) -> None:
    """Every jump lands inside the program and the program cannot run off its end."""
    for index, insn in enumerate(program):
        if insn.code in (_BPF_JEQ_K, _BPF_JGE_K, _BPF_JSET_K):
            if max(insn.jt, insn.jf) > _BPF_MAX_JUMP:
                raise AssertionError(f"jump too long at instruction {index}")
            if index + 1 + max(insn.jt, insn.jf) >= len(program):
                raise AssertionError(f"jump past the end at instruction {index}")
    if program[-1].code != _BPF_RET_K:
        raise AssertionError("the program must end in RET")


def _resolve_arch(arch: str | None) -> _Arch:
    name = platform.machine() if arch is None else arch
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in _ARCHES:
        supported = ", ".join(SUPPORTED_ARCHES)
        raise ValueError(f"no seccomp filter for architecture {name!r}; supported: {supported}")
    return _ARCHES[key]


@cache
def _assemble(arch_name: str) -> bytes:
    return b"".join(insn.pack() for insn in _program(_ARCHES[arch_name]))


# --- public API ----------------------------------------------------------------------------------


def build_filter(arch: str | None = None) -> bytes:
    """Return the seccomp program for ``arch`` as bytes for ``bwrap --seccomp FD``.

    ``arch`` uses ``platform.machine()`` names (``"x86_64"``, ``"aarch64"``; ``"amd64"`` and
    ``"arm64"`` are accepted too); ``None`` means the machine this runs on. Raises
    :class:`ValueError` for an architecture without a filter.
    """
    return _assemble(_resolve_arch(arch).name)


def describe(arch: str | None = None) -> dict[str, object]:
    """Summarise the filter for ``arch`` (for ``llm-sandbox doctor`` and tests); pure."""
    resolved = _resolve_arch(arch)
    table = resolved.syscalls
    return {
        "arch": resolved.name,
        "audit_arch": f"{resolved.audit_arch:#010x}",
        "default_action": "allow",
        "foreign_abi_action": "kill_process",
        "x32_action": "errno:EPERM" if resolved.has_x32 else None,
        "instructions": len(build_filter(resolved.name)) // 8,
        "eperm": {name: table[name] for name in sorted(DENIED_SYSCALLS) if name in table},
        "enosys": {name: table[name] for name in sorted(_ENOSYS_SYSCALLS) if name in table},
        "argument_checks": {name: (table[name], rule) for name, rule in _ARGUMENT_CHECKS.items()},
        "not_on_this_arch": sorted(DENIED_SYSCALLS - table.keys()),
    }


# --- the same policy for container engines ---------------------------------------------------

_OCI_ARCHES: Final[Mapping[str, tuple[str, ...]]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
}


def oci_profile(arch: str | None = None) -> dict[str, object]:
    """This policy as a Docker/Podman (OCI) seccomp profile: allow by default, deny our list.

    It replaces the engine's default profile, which allows ptrace, io_uring and (in Podman)
    unshare and keyctl. libseccomp resolves the names, so this holds on every architecture
    the engine supports; bits of a 64-bit argument are tested with masked equality.
    """
    resolved = _resolve_arch(arch)
    denied = sorted(name for name in DENIED_SYSCALLS if name in resolved.syscalls)
    rules: list[dict[str, object]] = [
        {"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": _EPERM},
        {"names": sorted(_ENOSYS_SYSCALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS},
    ]
    flag = 1
    while flag <= _CLONE_NAMESPACE_FLAGS:
        if flag & _CLONE_NAMESPACE_FLAGS:
            condition = {"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}
            rules.append(
                {
                    "names": ["clone"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": _EPERM,
                    "args": [condition],
                }
            )
        flag <<= 1
    for request in (_TIOCSTI, _TIOCLINUX):
        condition = {"index": 1, "value": request, "op": "SCMP_CMP_EQ"}
        rules.append(
            {
                "names": ["ioctl"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": _EPERM,
                "args": [condition],
            }
        )
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": list(_OCI_ARCHES[resolved.name]),
        "syscalls": rules,
    }
