"""Tests for llm_sandbox.archive: packing host files and extracting untrusted tar streams.

Every attack test builds a malicious tar by hand, starts it with a harmless member, and then
proves three things: the archive is refused, nothing outside the destination changed, and the
destination holds no file from the refused archive (not even the harmless first member).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from llm_sandbox import archive
from llm_sandbox.archive import UnsafeArchiveError, extract_to, pack, safe_extract

Member = tuple[tarfile.TarInfo, bytes | None]

# ------------------------------------------------------------------------------ tar builders


def reg(name: str, data: bytes = b"data", mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def directory(name: str, mode: int = 0o755) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    return info, None


def symlink(name: str, target: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info, None


def hardlink(name: str, target: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE
    info.linkname = target
    return info, None


def special(name: str, kind: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    return info, None


def make_tar(*members: Member) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------- fixtures


def snapshot(root: Path) -> dict[str, object]:
    """Everything under `root` (never following symlinks): type, mode and content."""
    state: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            state[str(path)] = ("link", os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            state[str(path)] = ("file", info.st_mode, path.read_bytes())
        else:
            state[str(path)] = ("other", info.st_mode)
    return state


def etc_passwd_digest() -> str:
    return hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """tmp_path/dest (the destination, with one existing file) and tmp_path/outside."""
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "keep.txt").write_bytes(b"keep")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(b"secret")
    return tmp_path


def assert_refused(world: Path, data: bytes, match: str, **kwargs: int) -> None:
    """The archive is refused and neither the destination nor anything around it changed."""
    before, passwd = snapshot(world), etc_passwd_digest()
    with pytest.raises(UnsafeArchiveError, match=match):
        safe_extract(data, world / "dest", **kwargs)
    assert snapshot(world) == before
    assert etc_passwd_digest() == passwd
    assert not (world / "dest" / "ok.txt").exists()  # the harmless first member was not written


# -------------------------------------------------------------------------------- round trips


def test_round_trip_of_a_file(tmp_path: Path) -> None:
    src = tmp_path / "report.txt"
    src.write_bytes(b"hello\n")
    src.chmod(0o640)

    written = safe_extract(pack(src, "renamed.txt"), tmp_path / "dest")

    assert written == [tmp_path / "dest" / "renamed.txt"]
    assert written[0].read_bytes() == b"hello\n"
    assert stat.S_IMODE(written[0].stat().st_mode) == 0o640


def make_tree(root: Path) -> Path:
    tree = root / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "a.txt").write_bytes(b"a")
    (tree / "sub" / "b.bin").write_bytes(bytes(range(256)) * 10)
    (tree / "sub" / "deeper" / "run.sh").write_bytes(b"#!/bin/sh\n")
    (tree / "sub" / "deeper" / "run.sh").chmod(0o755)
    (tree / "sub" / "link").symlink_to("../a.txt")
    return tree


def test_round_trip_of_a_nested_directory_with_a_symlink(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)

    written = safe_extract(pack(tree, "out"), tmp_path / "dest")

    out = tmp_path / "dest" / "out"
    assert written[0] == out
    assert set(written) == {out, *(out / p.relative_to(tree) for p in tree.rglob("*"))}
    assert (out / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 10
    assert os.access(out / "sub" / "deeper" / "run.sh", os.X_OK)
    assert (out / "sub" / "link").is_symlink()
    assert os.readlink(out / "sub" / "link") == "../a.txt"
    assert (out / "sub" / "link").read_bytes() == b"a"


def test_pack_stores_inner_symlinks_without_following_them(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    (tree / "abs").symlink_to("/etc/passwd")

    with tarfile.open(fileobj=io.BytesIO(pack(tree, "out"))) as tar:
        members = {m.name: m for m in tar.getmembers()}

    assert members["out/abs"].issym()
    assert members["out/abs"].linkname == "/etc/passwd"
    assert members["out/sub/link"].issym()
    assert list(members)[:2] == ["out", "out/a.txt"]  # sorted, deterministic


def test_pack_normalises_ownership_and_drops_special_bits(tmp_path: Path) -> None:
    src = tmp_path / "tool"
    src.write_bytes(b"x")
    src.chmod(0o4755)

    with tarfile.open(fileobj=io.BytesIO(pack(src, "tool", uid=1000, gid=1001))) as tar:
        (member,) = tar.getmembers()

    assert (member.uid, member.gid, member.uname, member.gname) == (1000, 1001, "", "")
    assert member.mode == 0o755


def test_pack_follows_a_symlink_given_as_the_source(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_bytes(b"real")
    (tmp_path / "alias.txt").symlink_to("real.txt")

    with tarfile.open(fileobj=io.BytesIO(pack(tmp_path / "alias.txt", "f"))) as tar:
        (member,) = tar.getmembers()
        assert member.isreg()
        assert tar.extractfile(member).read() == b"real"  # type: ignore[union-attr]


def test_pack_of_a_missing_source_is_a_clear_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"cannot pack .*nope.*no such file"):
        pack(tmp_path / "nope", "x")


@pytest.mark.parametrize("arcname", ["", "/abs", "../up", "a/../../b", "."])
def test_pack_refuses_a_bad_arcname(tmp_path: Path, arcname: str) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(ValueError, match="arcname"):
        pack(tmp_path / "f", arcname)


def test_pack_refuses_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ValueError, match="only regular files"):
        pack(tmp_path, "dir")


def test_extract_accepts_a_binary_stream(tmp_path: Path) -> None:
    stream = io.BytesIO(make_tar(directory("d"), reg("d/f", b"streamed")))
    safe_extract(stream, tmp_path / "dest")
    assert (tmp_path / "dest" / "d" / "f").read_bytes() == b"streamed"


def test_extracted_modes_drop_group_and_other_write_and_keep_owner_access(tmp_path: Path) -> None:
    data = make_tar(directory("ro", 0o555), reg("ro/f", b"x", 0o666), reg("none", b"y", 0o000))
    safe_extract(data, tmp_path / "dest")
    assert stat.S_IMODE((tmp_path / "dest" / "ro").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "dest" / "ro" / "f").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "dest" / "none").stat().st_mode) == 0o600


def test_a_hard_link_to_an_earlier_member_becomes_an_independent_copy(world: Path) -> None:
    data = make_tar(reg("a", b"same"), hardlink("b", "a"))
    safe_extract(data, world / "dest")
    a, b = world / "dest" / "a", world / "dest" / "b"
    assert b.read_bytes() == b"same"
    assert a.stat().st_ino != b.stat().st_ino
    assert a.stat().st_nlink == 1


def test_an_existing_symlink_is_replaced_not_written_through(world: Path) -> None:
    secret = world / "outside" / "secret.txt"
    (world / "dest" / "name").symlink_to(secret)

    safe_extract(make_tar(reg("name", b"new")), world / "dest")

    assert secret.read_bytes() == b"secret"
    assert not (world / "dest" / "name").is_symlink()
    assert (world / "dest" / "name").read_bytes() == b"new"


def test_symlinks_that_stay_inside_are_accepted(world: Path) -> None:
    data = make_tar(directory("d"), symlink("d/up", "../keep.txt"), symlink("self", "."))
    safe_extract(data, world / "dest")
    assert (world / "dest" / "d" / "up").read_bytes() == b"keep"


# ------------------------------------------------------------------------------------ attacks

OK = reg("ok.txt", b"harmless")


def test_refuses_an_absolute_path(world: Path) -> None:
    evil = world / "outside" / "evil"
    assert_refused(world, make_tar(OK, reg(str(evil))), "absolute path")
    assert not evil.exists()


def test_refuses_dot_dot_escape(world: Path) -> None:
    assert_refused(world, make_tar(OK, reg("../escape")), r"refusing archive member '\.\./escape'")
    assert not (world / "escape").exists()


def test_refuses_a_nested_dot_dot_escape(world: Path) -> None:
    assert_refused(world, make_tar(OK, reg("a/../../escape")), r"'\.\.' component")
    assert not (world / "escape").exists()


def test_refuses_a_harmless_looking_dot_dot(world: Path) -> None:
    assert_refused(world, make_tar(OK, reg("a/../b")), r"'\.\.' component")


def test_refuses_a_symlink_to_etc_passwd(world: Path) -> None:
    assert_refused(world, make_tar(OK, symlink("pw", "/etc/passwd")), "absolute symlink target")


def test_refuses_a_relative_symlink_out_of_dest(world: Path) -> None:
    data = make_tar(OK, symlink("s", "../outside/secret.txt"))
    assert_refused(world, data, "resolves outside the destination")


def test_refuses_link_to_parent_then_a_member_through_it(world: Path) -> None:
    data = make_tar(OK, symlink("link", ".."), reg("link/evil"))
    assert_refused(world, data, "'link")
    assert not (world / "evil").exists()


def test_refuses_a_member_through_an_inner_symlink(world: Path) -> None:
    data = make_tar(OK, directory("sub"), symlink("link", "sub"), reg("link/evil"))
    assert_refused(world, data, r"'link/evil'.*parent 'link' is a symlink")


def test_refuses_a_symlink_escaping_through_another_symlink(world: Path) -> None:
    data = make_tar(OK, symlink("d", "."), symlink("x", "d/.."))
    assert_refused(world, data, r"'x'.*resolves outside")


def test_refuses_a_symlink_chain_out_through_an_existing_symlink(world: Path) -> None:
    (world / "dest" / "d").symlink_to(".")
    assert_refused(world, make_tar(OK, symlink("x", "d/..")), r"'x'.*resolves outside")


def test_refuses_a_symlink_loop(world: Path) -> None:
    assert_refused(world, make_tar(OK, symlink("a", "b"), symlink("b", "a")), "loops")


def test_refuses_writing_through_a_pre_existing_symlink_in_dest(world: Path) -> None:
    (world / "dest" / "pre").symlink_to(world / "outside")
    data = make_tar(OK, reg("pre/evil"))
    assert_refused(world, data, r"'pre/evil'.*'pre' exists in the destination")
    assert not (world / "outside" / "evil").exists()


def test_refuses_a_hard_link_to_etc_passwd(world: Path) -> None:
    assert_refused(world, make_tar(OK, hardlink("pw", "/etc/passwd")), "absolute hard link target")


def test_refuses_a_relative_hard_link_to_a_file_not_in_the_archive(world: Path) -> None:
    assert_refused(world, make_tar(OK, hardlink("k", "keep.txt")), "not an earlier regular file")


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (tarfile.CHRTYPE, "device files"),
        (tarfile.BLKTYPE, "device files"),
        (tarfile.FIFOTYPE, "FIFOs"),
    ],
    ids=["char-device", "block-device", "fifo"],
)
def test_refuses_special_files(world: Path, kind: bytes, message: str) -> None:
    assert_refused(world, make_tar(OK, special("node", kind)), rf"'node'.*{message}")


@pytest.mark.parametrize(
    "member",
    [reg("suid", mode=0o4755), reg("sgid", mode=0o2755), directory("sticky", mode=0o1777)],
    ids=["setuid", "setgid", "sticky"],
)
def test_refuses_special_mode_bits(world: Path, member: Member) -> None:
    assert_refused(world, make_tar(OK, member), "setuid, setgid or sticky")


def test_refuses_a_size_bomb(world: Path) -> None:
    data = make_tar(OK, reg("bomb", b"\0" * 2000))
    assert_refused(world, data, r"'bomb'.*1000-byte limit", max_bytes=1000)


def test_size_limit_counts_every_file_and_hard_link_copy(world: Path) -> None:
    data = make_tar(OK, reg("a", b"x" * 400), hardlink("b", "a"), hardlink("c", "a"))
    assert_refused(world, data, r"'c'.*limit", max_bytes=1000)


def test_refuses_an_oversized_stream_before_buffering_it(
    world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "_HEADER_ALLOWANCE", 0)
    stream = io.BytesIO(make_tar(OK, reg("f", b"x" * 10)))
    before = snapshot(world)
    with pytest.raises(UnsafeArchiveError, match="tar stream is larger"):
        safe_extract(stream, world / "dest", max_bytes=100)
    assert snapshot(world) == before


def test_refuses_duplicate_names(world: Path) -> None:
    assert_refused(world, make_tar(OK, reg("f"), symlink("f", "ok.txt")), "same name")


def test_refuses_replacing_an_existing_directory_with_a_file(world: Path) -> None:
    (world / "dest" / "d").mkdir()
    assert_refused(world, make_tar(OK, reg("d")), "existing entry of another type")


def test_refuses_a_truncated_archive_and_writes_nothing(world: Path) -> None:
    data = make_tar(OK, reg("big", b"y" * 5000))
    assert_refused(world, data[:3000], "malformed tar stream")


def test_refuses_garbage(world: Path) -> None:
    assert_refused(world, b"not a tar at all" * 64, "malformed tar stream")


def test_a_failure_while_writing_removes_what_was_written(
    world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = archive._Writer._create_file

    def failing(
        self: archive._Writer, parent: int, tmp: str, entry: archive._Entry, source: tarfile.TarInfo
    ) -> None:
        if entry.info.name == "new/second":
            raise OSError(28, "No space left on device")
        real(self, parent, tmp, entry, source)

    monkeypatch.setattr(archive._Writer, "_create_file", failing)
    before = snapshot(world)
    with pytest.raises(OSError, match="No space"):
        safe_extract(make_tar(OK, reg("new/first"), reg("new/second")), world / "dest")
    assert snapshot(world) == before


# ---------------------------------------------------------------------------------- extract_to


def test_extract_to_renames_a_file(tmp_path: Path) -> None:
    (tmp_path / "out").write_bytes(b"result")
    written = extract_to(pack(tmp_path / "out", "out"), tmp_path / "x")
    assert written == [tmp_path / "x"]
    assert (tmp_path / "x").read_bytes() == b"result"


def test_extract_to_replaces_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"old")
    extract_to(make_tar(reg("out", b"new")), tmp_path / "x")
    assert (tmp_path / "x").read_bytes() == b"new"


@pytest.mark.parametrize("exists", [False, True])
def test_extract_to_puts_a_directory_inside_the_destination(tmp_path: Path, exists: bool) -> None:
    """The previous generation's layout: `dest/<dir>/...`, whether `dest` exists or not."""
    tree = make_tree(tmp_path)
    if exists:
        (tmp_path / "copy").mkdir()
    written = extract_to(pack(tree, "out"), tmp_path / "copy")
    copy = tmp_path / "copy" / "out"
    assert written[0] == copy
    assert (copy / "sub" / "b.bin").read_bytes() == (tree / "sub" / "b.bin").read_bytes()
    assert os.readlink(copy / "sub" / "link") == "../a.txt"


def test_extract_to_an_existing_directory_places_the_entry_inside(tmp_path: Path) -> None:
    (tmp_path / "host").mkdir()
    extract_to(make_tar(reg("out", b"file")), tmp_path / "host")
    extract_to(make_tar(directory("tree"), reg("tree/f", b"f")), tmp_path / "host")
    assert (tmp_path / "host" / "out").read_bytes() == b"file"
    assert (tmp_path / "host" / "tree" / "f").read_bytes() == b"f"


def test_extract_to_accepts_an_implied_top_directory(tmp_path: Path) -> None:
    extract_to(make_tar(reg("./out/a", b"a"), reg("./out/b/c", b"c")), tmp_path / "x")
    assert (tmp_path / "x" / "out" / "b" / "c").read_bytes() == b"c"


def test_extract_to_creates_missing_parents(tmp_path: Path) -> None:
    extract_to(make_tar(reg("out", b"f")), tmp_path / "missing" / "x")
    assert (tmp_path / "missing" / "x").read_bytes() == b"f"
    extract_to(make_tar(directory("tree"), reg("tree/f", b"t")), tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b" / "tree" / "f").read_bytes() == b"t"


def test_extract_to_will_not_put_a_directory_over_a_file(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"file")
    with pytest.raises(FileExistsError, match="in the way"):
        extract_to(make_tar(directory("out"), reg("out/f")), tmp_path / "x")
    assert (tmp_path / "x").read_bytes() == b"file"


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ([reg("a"), reg("b")], "exactly one top-level entry, found 'a', 'b'"),
        ([], "exactly one top-level entry, found none"),
        ([symlink("out", "target")], "top-level entry is a symlink"),
        ([directory("out"), symlink("out/s", "../sibling")], "resolves outside"),
        ([reg("a"), directory("out"), hardlink("out/h", "a")], "exactly one top-level"),
        ([directory("out"), reg("out/f"), reg("out/../../x")], r"'\.\.' component"),
    ],
    ids=["two-tops", "empty", "top-symlink", "escape-copied-dir", "two-tops-link", "dot-dot"],
)
def test_extract_to_refusals(world: Path, members: list[Member], match: str) -> None:
    (world / "sibling").write_bytes(b"sibling")
    before = snapshot(world)
    with pytest.raises(UnsafeArchiveError, match=match):
        extract_to(make_tar(*members), world / "copy")
    assert snapshot(world) == before


def test_extract_to_refuses_a_hard_link_leaving_the_copied_entry(world: Path) -> None:
    # A link target outside `out/` cannot even exist in a single-top archive, except by name.
    data = make_tar(directory("out"), reg("out/f"), hardlink("out/h", "elsewhere/f"))
    before = snapshot(world)
    with pytest.raises(UnsafeArchiveError, match="outside 'out'"):
        extract_to(data, world / "copy")
    assert snapshot(world) == before
