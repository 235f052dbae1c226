"""The policy as a Docker/Podman (OCI) seccomp profile.

The profile replaces the engine's default one, which allows ptrace, io_uring and (in Podman)
unshare and keyctl. It names syscalls rather than numbering them: libseccomp, inside the runtime,
resolves the names for each ABI the profile lists (see ``DELIBERATE_DIFFERENCES`` in
:mod:`.policy` for why those are more than the native one).

Writing an argument condition
-----------------------------
The comparisons of one OCI rule are ANDed, and each compares the whole 64-bit argument. Three
things the format cannot say directly, or that the runtime will not accept:

* "not one of these values": runc turns two comparisons of the same argument in one rule into
  two separate rules (OR), so ``!= a && != b`` becomes "anything";
* "deny all, then allow these values": runc drops a rule whose action is the default action
  (``SCMP_ACT_ALLOW`` here), and in libseccomp an unconditional rule for a syscall overrides its
  conditional ones;
* "look at the low 32 bits only": ``SCMP_CMP_EQ`` compares all 64, so ``ioctl(fd, 1 << 32 |
  TIOCSTI)``, which the kernel reads as ``TIOCSTI``, would not match it.

So every condition is written as a union of *cubes*, ``(arg & mask) == value`` with mask and
value inside the low 32 bits (``SCMP_CMP_MASKED_EQ``: the upper half is ignored, as the kernel
ignores it), one rule per cube, each with the rule's own action. Overlapping cubes are harmless
because they all carry the same action. :class:`AnyBitSet` takes one cube per bit,
:class:`OneOf` one exact cube per value, and :class:`NoneOf` the complement of its values,
split along a binary trie (:func:`_complement`). That is exact, so the profile answers
``personality`` exactly as the BPF program does, at the price of 64 rules for it.

What the engine decides
-----------------------
runc skips, without a word, a name its libseccomp does not know yet: with libseccomp 2.5.4,
``open_tree_attr`` (Linux 6.15) is not refused in a container although the profile names it. A
profile cannot name a syscall by number, so only a newer libseccomp closes that gap; the
embedded backend's program refuses it by number.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, NotRequired, TypedDict, assert_never

from llm_sandbox.backends.seccomp.policy import (
    LOW32,
    AnyBitSet,
    Condition,
    Errno,
    NoneOf,
    OneOf,
    resolve_arch,
    rules_for,
)

__all__ = ["OciProfile", "OciRule", "oci_profile"]

Cube = tuple[int, int]
"""``(mask, value)``: the argument values ``v`` with ``v & mask == value``."""

_WIDTH: Final = 32


def _complement(
    values: Iterable[int], bit: int = _WIDTH - 1, mask: int = 0, prefix: int = 0
) -> list[Cube]:
    """Disjoint cubes that together hold every 32-bit value except ``values``.

    Walk the bits from the top, keeping the values that share the prefix fixed so far: a branch
    that no value takes is a cube of its own (its prefix fixed, the lower bits free); a branch
    that some value takes is split further. At most 32 cubes per value.
    """
    cubes: list[Cube] = []
    here = 1 << bit
    for side in (0, here):
        below = [value for value in values if value & here == side]
        if not below:
            cubes.append((mask | here, prefix | side))
        elif bit:
            cubes += _complement(below, bit - 1, mask | here, prefix | side)
    return cubes


def _cubes(condition: Condition) -> list[Cube]:
    """Cubes whose union is exactly the low-32-bit values for which ``condition`` holds."""
    match condition:
        case AnyBitSet():
            return [(1 << i, 1 << i) for i in range(_WIDTH) if condition.mask >> i & 1]
        case OneOf():
            return [(LOW32, value) for value in condition.values]
        case NoneOf():
            return _complement(condition.values)
        case _:
            assert_never(condition)


class OciCondition(TypedDict):
    """One argument comparison of an OCI seccomp rule."""

    index: int
    value: int
    valueTwo: int
    op: str


class OciRule(TypedDict):
    """One entry of an OCI profile's `syscalls`: these names get this action (if args match)."""

    names: list[str]
    action: str
    errnoRet: int
    args: NotRequired[list[OciCondition]]


class OciProfile(TypedDict):
    """A Docker/Podman (OCI runtime spec) seccomp profile."""

    defaultAction: str
    architectures: list[str]
    syscalls: list[OciRule]


def _rule(names: list[str], errno: Errno, args: list[OciCondition] | None = None) -> OciRule:
    rule: OciRule = {"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": errno.value}
    if args is not None:
        rule["args"] = args
    return rule


def oci_profile(arch: str | None = None) -> OciProfile:
    """The policy as a Docker/Podman seccomp profile for ``arch`` (None: this machine).

    Allow by default; one entry per action for the unconditional rules, then one entry per cube
    of every argument condition. Raises :class:`ValueError` for an unsupported architecture.
    """
    resolved = resolve_arch(arch)
    rules = rules_for(resolved)
    entries: list[OciRule] = []
    for errno in dict.fromkeys(rule.action for rule in rules if rule.when is None):
        names = sorted(r.syscall for r in rules if r.when is None and r.action == errno)
        entries.append(_rule(names, errno))
    for rule in rules:
        if rule.when is None:
            continue
        index = rule.when.index
        for mask, value in _cubes(rule.when):
            condition: OciCondition = {
                "index": index,
                "value": mask,
                "valueTwo": value,
                "op": "SCMP_CMP_MASKED_EQ",
            }
            entries.append(_rule([rule.syscall], rule.action, [condition]))
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": list(resolved.scmp_arches),
        "syscalls": entries,
    }
