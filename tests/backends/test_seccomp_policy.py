"""The BPF program and the OCI profile are one policy: they agree syscall by syscall.

Both come from `llm_sandbox.backends.seccomp.policy`. For every syscall the policy names on each
architecture, and for the argument values that matter to its rule, this derives

* the BPF program's action, by running it in the interpreter of tests/classic_bpf.py;
* the OCI profile's action, by evaluating its entries the way runc and libseccomp do
  (:func:`oci_action`);
* the policy's own answer (`Rule.applies`);

and requires all three to be equal. Where libseccomp is installed, the profile is also compiled
by it exactly as runc compiles it, and that program must give the same answers. The only
differences allowed are the ones `policy.DELIBERATE_DIFFERENCES` names (syscalls made through
another ABI), and those are checked to be what it says. The real engines are in
test_attacks.py (`personality` among the dangerous syscalls; the allowed personas still work).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import random
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from classic_bpf import (
    ALLOW,
    AUDIT_ARCH,
    AUDIT_ARCH_I386,
    KILL_PROCESS,
    errno_action,
    run_bpf,
)
from llm_sandbox.backends.seccomp import build_filter, oci_profile
from llm_sandbox.backends.seccomp.oci import _complement
from llm_sandbox.backends.seccomp.policy import (
    DELIBERATE_DIFFERENCES,
    LOW32,
    RULES,
    SUPPORTED_ARCHES,
    X32_ACTION,
    NoneOf,
    Rule,
    resolve_arch,
    rules_for,
)

ARCHES = pytest.mark.parametrize("arch", SUPPORTED_ARCHES)
U64 = 0xFFFFFFFF_FFFFFFFF
Profile = Mapping[str, Any]
Args = tuple[int, ...]


# --- the OCI profile, evaluated as runc and libseccomp evaluate it ------------------------------

_COMPARE: Mapping[str, Callable[[int, int, int], bool]] = {
    "SCMP_CMP_NE": lambda arg, a, _: arg != a,
    "SCMP_CMP_LT": lambda arg, a, _: arg < a,
    "SCMP_CMP_LE": lambda arg, a, _: arg <= a,
    "SCMP_CMP_EQ": lambda arg, a, _: arg == a,
    "SCMP_CMP_GE": lambda arg, a, _: arg >= a,
    "SCMP_CMP_GT": lambda arg, a, _: arg > a,
    "SCMP_CMP_MASKED_EQ": lambda arg, mask, value: arg & mask == value,
}


def action_value(action: str, errno_ret: int | None) -> int:
    """An OCI action as the value a seccomp program returns (runc's ERRNO defaults to EPERM)."""
    if action == "SCMP_ACT_ERRNO":
        return errno_action(1 if errno_ret is None else errno_ret)
    return {"SCMP_ACT_ALLOW": ALLOW, "SCMP_ACT_KILL_PROCESS": KILL_PROCESS}[action]


def runc_rules(entry: Mapping[str, Any]) -> list[list[Mapping[str, Any]]]:
    """The libseccomp rules runc adds for one entry: its comparisons ANDed in one rule, unless
    two compare the same argument; then each comparison is a rule of its own (ORed)."""
    args: list[Mapping[str, Any]] = entry.get("args") or []
    indexes = [arg["index"] for arg in args]
    return [[arg] for arg in args] if len(set(indexes)) < len(indexes) else [args]


def oci_action(profile: Profile, name: str, args: Args) -> int:
    """What a container with ``profile`` gets for native syscall ``name`` with ``args``.

    runc drops an entry whose action is the default one. In libseccomp an unconditional rule
    replaces the syscall's conditional ones. Conditional rules with different actions that
    both match are resolved by how libseccomp merges its rule tree, which a profile should not
    depend on: that raises here.
    """
    default = action_value(profile["defaultAction"], profile.get("defaultErrnoRet"))
    unconditional, matched = set(), set()
    for entry in profile["syscalls"]:
        action = action_value(entry["action"], entry.get("errnoRet"))
        if name not in entry["names"] or action == default:
            continue
        for rule in runc_rules(entry):
            if not rule:
                unconditional.add(action)
            elif all(
                _COMPARE[c["op"]](args[c["index"]], c["value"], c.get("valueTwo", 0)) for c in rule
            ):
                matched.add(action)
    assert len(unconditional) <= 1, f"{name}: unconditional rules with different actions"
    if unconditional:
        return unconditional.pop()
    assert len(matched) <= 1, f"{name}{args}: overlapping rules with different actions"
    return matched.pop() if matched else default


# --- inputs --------------------------------------------------------------------------------------


def argument_samples(rule: Rule, rng: random.Random) -> Iterator[int]:
    """Values of the argument the rule inspects: every constant it names, each one bit away
    from it, with garbage in the upper half the kernel ignores, and random values."""
    if rule.when is None:
        return
    for constant in rule.when.values:
        yield from (constant, constant << 32, ~constant & LOW32, ~constant & U64)
        for bit in range(32):
            near = constant ^ 1 << bit
            yield from (near, near | 1 << 32, near | 0xFFFFFFFF_00000000)
        yield from (constant | 1 << 32, constant | 0xFFFFFFFF_00000000)
    for _ in range(300):
        yield rng.getrandbits(32)
        yield rng.getrandbits(64)


def inputs(rule: Rule, rng: random.Random) -> Iterator[Args]:
    """Argument vectors for ``rule``'s syscall; arguments it does not inspect are random."""
    for _ in range(3):
        yield (0,) * 6
        yield tuple(rng.getrandbits(64) for _ in range(6))
    if rule.when is not None:
        for value in argument_samples(rule, rng):
            args = [rng.getrandbits(64) for _ in range(6)]
            args[rule.when.index] = value
            yield tuple(args)


def policy_action(rule: Rule, args: Args) -> int:
    return errno_action(rule.action.value) if rule.applies(args) else ALLOW


Disagreement = tuple[str, str, int, int]
Answer = Callable[[str, Args], int]
"""The action some encoding gives a native syscall, by name, with these arguments."""


def disagreements(
    arch: str, other: Answer, skip: frozenset[str] = frozenset()
) -> list[Disagreement]:
    """(syscall, args, BPF action, other action) wherever our program and ``other`` differ; the
    policy's own answer must match the program's everywhere."""
    resolved, program = resolve_arch(arch), build_filter(arch)
    rng = random.Random(f"seccomp-policy-{arch}")
    found: list[Disagreement] = []
    for rule in rules_for(resolved):
        if rule.syscall in skip:
            continue
        for args in inputs(rule, rng):
            bpf = run_bpf(program, resolved.syscalls[rule.syscall], AUDIT_ARCH[arch], args)
            assert bpf == policy_action(rule, args), (rule.syscall, [hex(a) for a in args])
            answer = other(rule.syscall, args)
            if answer != bpf:
                found.append((rule.syscall, ", ".join(hex(a) for a in args), bpf, answer))
    return found


def profile_answer(arch: str) -> Answer:
    profile = oci_profile(arch)
    return lambda name, args: oci_action(profile, name, args)


def program_answer(arch: str, program: bytes) -> Answer:
    numbers = resolve_arch(arch).syscalls
    return lambda name, args: run_bpf(program, numbers[name], AUDIT_ARCH[arch], args)


# --- agreement -------------------------------------------------------------------------------


def test_one_rule_per_syscall() -> None:
    names = [rule.syscall for rule in RULES]
    assert len(names) == len(set(names))


@ARCHES
def test_bpf_and_oci_agree_syscall_by_syscall(arch: str) -> None:
    found = disagreements(arch, profile_answer(arch))
    assert not found, found[:10]


@ARCHES
def test_the_profile_names_exactly_the_policys_syscalls(arch: str) -> None:
    """Every other syscall is left to the default action, in the program as in the profile."""
    profile = oci_profile(arch)
    named = {name for entry in profile["syscalls"] for name in entry["names"]}
    assert named == {rule.syscall for rule in rules_for(resolve_arch(arch))}
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"


@ARCHES
def test_the_profile_says_nothing_runc_would_reinterpret(arch: str) -> None:
    """No entry compares one argument twice (runc would OR the comparisons), none has the
    default action (runc would drop it), no syscall has both an unconditional and conditional
    entries (libseccomp would keep only the unconditional one), and every comparison looks at
    the low 32 bits only, as the kernel does for these arguments."""
    by_name: dict[str, set[bool]] = {}
    for entry in oci_profile(arch)["syscalls"]:
        assert entry["action"] != "SCMP_ACT_ALLOW"
        args = entry.get("args", [])
        assert len({arg["index"] for arg in args}) == len(args)
        for arg in args:
            assert arg["op"] == "SCMP_CMP_MASKED_EQ"
            assert arg["value"] <= LOW32
            assert arg["valueTwo"] & ~arg["value"] == 0
        for name in entry["names"]:
            by_name.setdefault(name, set()).add(bool(args))
    assert all(len(kinds) == 1 for kinds in by_name.values()), by_name


def test_none_of_becomes_an_exact_cover_of_the_other_values() -> None:
    """The cubes for a NoneOf hold no allowed value, do not overlap and, counted, make up
    every other 32-bit value: so they hold exactly the values the policy denies."""
    for rule in RULES:
        if isinstance(rule.when, NoneOf):
            allowed = set(rule.when.values)
            cubes = _complement(allowed)
            assert all(value & mask != cube for value in allowed for mask, cube in cubes)
            for i, (mask_a, value_a) in enumerate(cubes):
                for mask_b, value_b in cubes[i + 1 :]:
                    shared = mask_a & mask_b
                    assert value_a & shared != value_b & shared, "overlapping cubes"
            sizes = sum(1 << (32 - mask.bit_count()) for mask, _ in cubes)
            assert sizes == (1 << 32) - len(allowed)
            assert len(cubes) <= 32 * len(allowed)


def test_personality_is_restricted_in_both() -> None:
    """The drift this package was built to end: the profile used to allow any persona."""
    for arch in SUPPORTED_ARCHES:
        bpf, oci = program_answer(arch, build_filter(arch)), profile_answer(arch)
        for persona, expected in [
            (0x0, ALLOW),
            (0x8, ALLOW),
            (0xFFFFFFFF, ALLOW),
            (0x1_00000000, ALLOW),  # the kernel reads 0: PER_LINUX
            (0x0040000, errno_action(1)),  # ADDR_NO_RANDOMIZE
            (0x0400000, errno_action(1)),  # READ_IMPLIES_EXEC
            (0x1_00400000, errno_action(1)),
        ]:
            args = (persona, 0, 0, 0, 0, 0)
            assert bpf("personality", args) == oci("personality", args) == expected, hex(persona)


# --- the differences the policy names ------------------------------------------------------


def test_the_deliberate_differences_are_the_abi_ones() -> None:
    assert set(DELIBERATE_DIFFERENCES) == {"foreign_abi", "x32"}


@ARCHES
def test_foreign_abi_kills_in_bpf_and_is_listed_in_oci(arch: str) -> None:
    program, resolved = build_filter(arch), resolve_arch(arch)
    foreign = [AUDIT_ARCH_I386, *(v for k, v in AUDIT_ARCH.items() if k != arch)]
    for audit_arch in foreign:
        assert run_bpf(program, 20, audit_arch) == KILL_PROCESS
    architectures = oci_profile(arch)["architectures"]
    assert architectures[0] == resolved.scmp_arches[0]
    assert len(architectures) > 1  # the compat ABIs, filtered by name


def test_x32_is_eperm_in_bpf_and_listed_in_oci() -> None:
    program = build_filter("x86_64")
    for nr in (0x40000000 | 39, 0x40000000 | 101, 0x40000000 | 135):
        assert run_bpf(program, nr, AUDIT_ARCH["x86_64"]) == errno_action(X32_ACTION.value)
    assert "SCMP_ARCH_X32" in oci_profile("x86_64")["architectures"]
    assert "SCMP_ARCH_X32" not in oci_profile("aarch64")["architectures"]


# --- the profile as libseccomp compiles it ---------------------------------------------------

_SCMP_FLTATR_CTL_OPTIMIZE = 8
_SCMP_CMP = {name: i for i, name in enumerate(_COMPARE, start=1)}  # NE=1 ... MASKED_EQ=7


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def libseccomp() -> ctypes.CDLL:
    path = ctypes.util.find_library("seccomp")
    try:
        lib = ctypes.CDLL(path or "libseccomp.so.2")
    except OSError:
        pytest.skip("libseccomp is not installed")
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    for name in ("seccomp_arch_add", "seccomp_arch_remove", "seccomp_export_bpf"):
        getattr(lib, name).argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32 if "arch" in name else ctypes.c_int,
        ]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_native.restype = ctypes.c_uint32
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def compile_like_runc(lib: ctypes.CDLL, profile: Profile) -> tuple[bytes, frozenset[str]]:
    """The program runc would load for ``profile`` (libcontainer/seccomp, InitSeccomp and
    matchCall), and the names this libseccomp cannot resolve, which runc skips as well."""
    default = action_value(profile["defaultAction"], profile.get("defaultErrnoRet"))
    ctx = lib.seccomp_init(default)
    assert ctx
    unknown: set[str] = set()
    try:
        tokens = [
            lib.seccomp_arch_resolve_name(name.removeprefix("SCMP_ARCH_").lower().encode())
            for name in profile["architectures"]
        ]
        for token in tokens:
            assert lib.seccomp_arch_add(ctx, token) in (0, -17)  # -EEXIST: the native one
        if lib.seccomp_arch_native() not in tokens:  # only when testing another architecture
            assert lib.seccomp_arch_remove(ctx, lib.seccomp_arch_native()) == 0
        if len(profile["syscalls"]) > 32:
            assert lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_OPTIMIZE, 2) == 0
        for entry in profile["syscalls"]:
            action = action_value(entry["action"], entry.get("errnoRet"))
            if action == default:
                continue
            for name in entry["names"]:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr < 0:
                    unknown.add(name)
                    continue
                for rule in runc_rules(entry):
                    cmps = (_ArgCmp * max(len(rule), 1))(
                        *(
                            _ArgCmp(
                                c["index"], _SCMP_CMP[c["op"]], c["value"], c.get("valueTwo", 0)
                            )
                            for c in rule
                        )
                    )
                    assert lib.seccomp_rule_add_array(ctx, action, nr, len(rule), cmps) == 0, name
        with tempfile.TemporaryFile() as out:
            assert lib.seccomp_export_bpf(ctx, out.fileno()) == 0
            out.seek(0)
            return out.read(), frozenset(unknown)
    finally:
        lib.seccomp_release(ctx)


@ARCHES
def test_the_profile_compiled_by_libseccomp_agrees(arch: str) -> None:
    """libseccomp turns the profile into a program; it answers as ours does.

    A name this libseccomp does not know yet (open_tree_attr, Linux 6.15, in libseccomp 2.5.4)
    is skipped by runc without a word, so a container on such an engine does not refuse it;
    those names are left out of the comparison, and the ones this change is about must not be
    among them.
    """
    program, unknown = compile_like_runc(libseccomp(), oci_profile(arch))
    assert not unknown & {"clone", "clone3", "ioctl", "personality", "ptrace", "mount"}
    found = disagreements(arch, program_answer(arch, program), skip=unknown)
    assert not found, found[:10]
