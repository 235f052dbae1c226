"""The policy as a classic-BPF program, assembled in pure Python, for the embedded sandbox.

bubblewrap's ``--seccomp FD`` reads a raw classic-BPF program from FD: an array of
``struct sock_filter`` (``u16 code, u8 jt, u8 jf, u32 k``, native byte order) which it installs
with ``prctl(PR_SET_SECCOMP)`` just before it executes the sandboxed command. :func:`build_filter`
returns exactly those bytes, so no libseccomp and no compiler are needed.

Program shape
-------------
The program checks the architecture (a foreign calling convention kills the process: the numbers
below only mean something for the native ABI), on x86_64 refuses the x32 ABI, loads the syscall
number once and then walks a flat list of ``if nr == N: return ACTION`` pairs, one per
unconditional rule. A rule that inspects an argument is a short block guarded by one ``JEQ`` that
jumps over it, and every block ends in ``RET``, so no jump is longer than the block it skips (a
few instructions) and the 8-bit jump offsets of classic BPF are never at risk. Because every path
that does not look at an argument depends only on the architecture and the number, the kernel's
seccomp action cache can pre-compute "allow" for all other syscalls.
"""

from __future__ import annotations

import struct
from functools import cache
from typing import Final, NamedTuple, assert_never

from llm_sandbox.backends.seccomp.policy import (
    RULES,
    X32_ACTION,
    AnyBitSet,
    Arch,
    Errno,
    NoneOf,
    OneOf,
    Rule,
    resolve_arch,
    rules_for,
)

__all__ = ["build_filter", "describe"]

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

# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6].
_OFFSET_NR: Final = 0
_OFFSET_ARCH: Final = 4
_OFFSET_ARGS: Final = 16

_X32_SYSCALL_BIT: Final = 0x40000000


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


def _errno(errno: Errno) -> int:
    return _RET_ERRNO | errno.value


def _arg_low32(index: int) -> int:
    """Offset of the low half of ``args[index]`` (both supported ABIs are little-endian)."""
    return _OFFSET_ARGS + 8 * index


def _arch_check(arch: Arch) -> list[_Insn]:
    return [
        _load(_OFFSET_ARCH),
        _jump(_BPF_JEQ_K, arch.audit_arch, 1, 0),
        _ret(_RET_KILL_PROCESS),
    ]


def _x32_check() -> list[_Insn]:
    return [_jump(_BPF_JGE_K, _X32_SYSCALL_BIT, 0, 1), _ret(_errno(X32_ACTION))]


def _return_if(nr: int, action: int) -> list[_Insn]:
    return [_jump(_BPF_JEQ_K, nr, 0, 1), _ret(action)]


def _guarded(nr: int, block: list[_Insn]) -> list[_Insn]:
    """``if nr == N: <block>``; the block must end in RET because it clobbers the accumulator."""
    if block[-1].code != _BPF_RET_K or len(block) > _BPF_MAX_JUMP:
        raise AssertionError("an argument check must be short and end in RET")
    return [_jump(_BPF_JEQ_K, nr, 0, len(block)), *block]


def _argument_block(rule: Rule) -> list[_Insn]:
    """Load the argument's low half, run the tests; the first that passes is a match.

    Layout: ``LD arg; T0; ...; Tn-1; RET <no match>; RET <match>``. Test i jumps ``n - i``
    forward when it passes, onto the last RET, and falls through otherwise.
    """
    condition = rule.when
    deny, allow = _ret(_errno(rule.action)), _ret(_RET_ALLOW)
    match condition:
        case AnyBitSet():
            tests, on_match, otherwise = [(_BPF_JSET_K, condition.mask)], deny, allow
        case OneOf():
            tests, on_match, otherwise = [(_BPF_JEQ_K, v) for v in condition.values], deny, allow
        case NoneOf():
            tests, on_match, otherwise = [(_BPF_JEQ_K, v) for v in condition.values], allow, deny
        case None:
            raise AssertionError(f"{rule.syscall} has no argument condition")
        case _:
            assert_never(condition)
    count = len(tests)
    compares = [_jump(op, k, count - i, 0) for i, (op, k) in enumerate(tests)]
    return [_load(_arg_low32(condition.index)), *compares, otherwise, on_match]


def _program(arch: Arch) -> list[_Insn]:
    program = [*_arch_check(arch), _load(_OFFSET_NR)]
    if arch.has_x32:
        program += _x32_check()
    rules = rules_for(arch)
    for rule in sorted(
        (r for r in rules if r.when is None), key=lambda r: arch.syscalls[r.syscall]
    ):
        program += _return_if(arch.syscalls[rule.syscall], _errno(rule.action))
    for rule in rules:
        if rule.when is not None:
            program += _guarded(arch.syscalls[rule.syscall], _argument_block(rule))
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


@cache
def _assemble(arch_name: str) -> bytes:
    return b"".join(insn.pack() for insn in _program(resolve_arch(arch_name)))


def build_filter(arch: str | None = None) -> bytes:
    """Return the seccomp program for ``arch`` as bytes for ``bwrap --seccomp FD``.

    ``arch`` uses ``platform.machine()`` names (``"x86_64"``, ``"aarch64"``; ``"amd64"`` and
    ``"arm64"`` are accepted too); ``None`` means the machine this runs on. Raises
    :class:`ValueError` for an architecture without a filter.
    """
    return _assemble(resolve_arch(arch).name)


def describe(arch: str | None = None) -> dict[str, object]:
    """Summarise the filter for ``arch`` (for ``llm-sandbox doctor`` and tests); pure."""
    resolved = resolve_arch(arch)
    table = resolved.syscalls
    rules = sorted(rules_for(resolved), key=lambda r: r.syscall)
    unconditional: dict[str, dict[str, int]] = {}  # "eperm": {name: nr}, "enosys": ...
    for rule in rules:
        if rule.when is None:
            unconditional.setdefault(rule.action.name.lower(), {})[rule.syscall] = table[
                rule.syscall
            ]
    return {
        "arch": resolved.name,
        "audit_arch": f"{resolved.audit_arch:#010x}",
        "default_action": "allow",
        "foreign_abi_action": "kill_process",
        "x32_action": f"errno:{X32_ACTION.name}" if resolved.has_x32 else None,
        "instructions": len(build_filter(resolved.name)) // 8,
        **unconditional,
        "argument_checks": {r.syscall: (table[r.syscall], r.describe()) for r in rules if r.when},
        "not_on_this_arch": sorted(r.syscall for r in RULES if r.syscall not in table),
    }
