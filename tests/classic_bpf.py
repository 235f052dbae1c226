"""A classic-BPF interpreter for seccomp programs (importable as `classic_bpf`).

Just the instructions seccomp filters use: our own assembler's and the ones libseccomp emits
(32-bit loads from `struct seccomp_data`, ALU with a constant, conditional and plain jumps,
returns). It computes the action the kernel would take for one syscall.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

ALLOW = 0x7FFF0000
KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
AUDIT_ARCH_I386 = 0x40000003

_ALU: dict[int, Callable[[int, int], int]] = {
    0x00: lambda a, k: a + k,  # ADD
    0x10: lambda a, k: a - k,  # SUB
    0x40: lambda a, k: a | k,  # OR
    0x50: lambda a, k: a & k,  # AND
    0x60: lambda a, k: a << k,  # LSH
    0x70: lambda a, k: a >> k,  # RSH
    0xA0: lambda a, k: a ^ k,  # XOR
}
_JUMP: dict[int, Callable[[int, int], bool]] = {
    0x10: lambda a, k: a == k,  # JEQ
    0x20: lambda a, k: a > k,  # JGT
    0x30: lambda a, k: a >= k,  # JGE
    0x40: lambda a, k: bool(a & k),  # JSET
}


def errno_action(value: int) -> int:
    return RET_ERRNO | value


def seccomp_data(nr: int, arch: int, args: Sequence[int] = ()) -> bytes:
    """`struct seccomp_data` (native byte order) for a syscall; missing arguments are 0."""
    full = [a & 0xFFFFFFFF_FFFFFFFF for a in (*args, *([0] * (6 - len(args))))]
    return struct.pack("=IIQ6Q", nr & 0xFFFFFFFF, arch, 0, *full)


def run_bpf(program: bytes, nr: int, arch: int, args: Sequence[int] = ()) -> int:
    """The action ``program`` returns for a syscall, as the kernel would compute it."""
    data = seccomp_data(nr, arch, args)
    insns = [struct.unpack_from("=HBBI", program, off) for off in range(0, len(program), 8)]
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        cls, op = code & 0x07, code & 0xF0
        if code == 0x20:  # LD | W | ABS
            acc = struct.unpack_from("=I", data, k)[0]
        elif code == 0x06:  # RET | K
            return int(k)
        elif code == 0x16:  # RET | A
            return acc
        elif cls == 0x04 and code & 0x08 == 0 and op in _ALU:  # ALU | op | K
            acc = _ALU[op](acc, k) & 0xFFFFFFFF
        elif code == 0x05:  # JMP | JA
            pc += k
        elif cls == 0x05 and code & 0x08 == 0 and op in _JUMP:  # JMP | op | K
            pc += jt if _JUMP[op](acc, k) else jf
        else:
            raise AssertionError(f"unexpected opcode {code:#x} at {pc - 1}")
