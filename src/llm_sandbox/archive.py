"""Tar streams in and out of sandboxes: pack host files, extract untrusted archives safely.

Files cross the sandbox boundary as uncompressed tar streams. Going in (`pack`) the input is
trusted host data; coming out (`safe_extract`, `extract_to`) the stream was written by code we
do not trust, so every member is checked before a single byte lands on the host.

Packing rules (`pack`):

* The result is an uncompressed PAX tar whose single top-level entry is `arcname`.
* If `src` itself is a symlink it is followed (like `cp -H`): you get what it points to.
  Symlinks *inside* a directory are stored as symlinks, never followed.
* Only regular files, directories and symlinks are packed; a socket, FIFO or device raises
  `ValueError` rather than being skipped silently.
* Ownership is normalised (uid/gid 0 by default, no user or group names) and permission bits
  are masked to `0o777`, so no setuid, setgid or sticky bit is ever sent into a sandbox.

Extraction rules (`safe_extract`, `extract_to`). A member is refused, with
`UnsafeArchiveError` naming it and the reason, when:

* its name is absolute, contains a `..` component or a NUL byte;
* its type is anything but a regular file, a directory, a symlink or a hard link
  (character and block devices, FIFOs, and unknown types are refused);
* its mode has the setuid, setgid or sticky bit;
* it is a symlink whose target is empty, absolute, or resolves outside the destination. Targets
  are resolved component by component against the tree as it will be after extraction, following
  symlinks from the archive *and* those already in the destination, so `d -> .` followed by
  `x -> d/..` is caught;
* it is a hard link whose target is not a regular file stored earlier in the same archive. An
  accepted hard link is written as an independent copy: nothing is ever linked to a host file;
* it would be written through a symlink or a non-directory: every parent component must be a
  real directory, in the archive and on disk (a pre-existing symlink in the destination counts);
* it would replace an existing directory with a non-directory or the other way round, or its
  name is already used by another non-directory member (duplicates are ambiguous);
* the running total of file sizes (hard-link copies included) exceeds `max_bytes`. The raw
  stream may exceed `max_bytes` by at most 64 MiB of headers, which also bounds buffering.

Validation reads only headers and is complete before anything is written, so a refused archive
leaves no file behind. Writing then never follows a symlink: parent directories are opened with
`O_NOFOLLOW` relative to their parent's descriptor, and each file or symlink is created under a
temporary name and renamed into place (an existing file or symlink of the same name is replaced,
not written through). If writing fails anyway (disk full), what this call created is removed.

Extracted files belong to the host user (ownership is not restored). Permission bits are masked
with `0o755` and the owner always keeps read and write (`0o600`) on files and full access
(`0o700`) on directories. File modification times are restored.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

from llm_sandbox.exceptions import UnsafeArchiveError

__all__ = [
    "ArchiveFile",
    "ReadFiles",
    "UnsafeArchiveError",
    "extract_to",
    "pack",
    "read_files",
    "safe_extract",
]

StrPath = str | os.PathLike[str]
Parts = tuple[str, ...]
"""A destination-relative path split into components; `()` is the destination itself."""

_HEADER_ALLOWANCE = 64 * 1024 * 1024
_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_CHUNK = 1024 * 1024
_MAX_SYMLINK_HOPS = 40
_SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
_ROOT_OPEN_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_DIR_OPEN_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


# --------------------------------------------------------------------------------------- pack


def pack(src: StrPath, arcname: str, *, uid: int = 0, gid: int = 0) -> bytes:
    """Return an uncompressed PAX tar of the host file or directory `src`, stored as `arcname`.

    `arcname` is a relative name (`"out"`, `"data/in.csv"`). Directories are packed recursively
    in sorted order; symlinks inside them are stored as symlinks. A symlink given as `src` is
    followed. Every entry is owned by `uid`:`gid` (default root) and keeps only its `0o777`
    permission bits.

    Raises `FileNotFoundError` if `src` does not exist (or is a dangling symlink) and
    `ValueError` for a bad `arcname` or a file type tar cannot carry safely.
    """
    name = _clean_arcname(arcname)
    path = os.fspath(src)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"cannot pack {path!r}: no such file or directory")
    if os.path.islink(path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"cannot pack {path!r}: it is a dangling symlink")
        path = os.path.realpath(path)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_tree(tar, path, name, (uid, gid))
    return buffer.getvalue()


def _clean_arcname(arcname: str) -> str:
    parts = [part for part in arcname.split("/") if part not in ("", ".")]
    if arcname.startswith("/") or ".." in parts or not parts or "\0" in arcname:
        raise ValueError(f"arcname must be a relative name without '..', got {arcname!r}")
    return "/".join(parts)


def _add_tree(tar: tarfile.TarFile, path: str, name: str, owner: tuple[int, int]) -> None:
    info = tar.gettarinfo(path, arcname=name)
    if info is None or not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
        kinds = "only regular files, directories and symlinks can be packed"
        raise ValueError(f"cannot pack {path!r}: {kinds}")
    info.uid, info.gid = owner
    info.uname = info.gname = ""
    info.mode &= 0o777
    if info.isreg():
        with open(path, "rb") as content:
            tar.addfile(info, content)
        return
    tar.addfile(info)
    if info.isdir():
        for child in sorted(os.listdir(path)):
            _add_tree(tar, os.path.join(path, child), f"{name}/{child}", owner)


# ------------------------------------------------------------------------------------ extract


def safe_extract(
    data: bytes | BinaryIO, dest: StrPath, *, max_bytes: int | None = None
) -> list[Path]:
    """Extract the untrusted tar stream `data` into the host directory `dest`.

    `dest` is created if missing. Every member is validated (see the module docstring) before
    anything is written; the first violation raises `UnsafeArchiveError` and nothing is
    extracted. Returns the path of every member written, in archive order (a member naming
    `dest` itself, such as `./`, is not listed).
    """
    root = Path(dest)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"extraction destination {str(root)!r} is not a directory")
    with _open_archive(data, max_bytes) as tar:
        entries = [_Entry(info, parts, _link_parts(info)) for info, parts in _read_members(tar)]
        return _extract(tar, root, entries, max_bytes)


def extract_to(
    data: bytes | BinaryIO, dest_path: StrPath, *, max_bytes: int | None = None
) -> list[Path]:
    """Extract an archive with a single top-level entry (a file or a directory) to `dest_path`.

    This is the host half of "copy `/sandbox/out` to `/host/x`": the sandbox returns a tar
    whose only top-level entry is `out`. The layout is the previous generation's, which its
    users' code reads back:

    * a directory always lands *inside* `dest_path`, keeping its name (`/host/x/out/...`),
      whether `dest_path` exists or not (it is created, parents too), merging into an existing
      `/host/x/out`;
    * a file lands at `dest_path` exactly (parents created; an existing file is replaced),
      or inside it (`/host/x/out`) when `dest_path` is an existing directory.

    A directory is never replaced by a file or the other way round. A top-level symlink is
    refused (copy what it points to instead), and symlinks inside a copied directory must
    resolve inside that directory. All the `safe_extract` rules apply, and nothing is written
    if any member is refused. Returns the paths written: the entry itself first, then what it
    contains in archive order.
    """
    with _open_archive(data, max_bytes) as tar:
        members = list(_read_members(tar))
        top, top_info = _single_top(members)
        target = Path(dest_path)
        is_dir = top_info is None or top_info.isdir()
        if is_dir or target.is_dir():
            if target.is_symlink() or (target.exists() and not target.is_dir()):
                raise FileExistsError(f"cannot copy {top!r} into {str(target)!r}: it is in the way")
            target = target / top
        if top_info is not None and top_info.issym():
            raise _refuse(top_info.name, "the top-level entry is a symlink; copy its target")
        prefix: Parts
        if is_dir:
            _check_dir_target(target, top)
            root, prefix = target, ()
        else:
            root, prefix = target.parent, (target.name,)
        entries = [
            _Entry(info, prefix + parts[1:], _relocated_link(info, top, prefix))
            for info, parts in members
            if parts  # a "./" member describes the parent directory, which is left alone
        ]
        written = _extract(tar, root, entries, max_bytes, make_parents=True)
        return written if prefix else [target, *written]


def _single_top(
    members: Sequence[tuple[tarfile.TarInfo, Parts]],
) -> tuple[str, tarfile.TarInfo | None]:
    """The archive's only top-level name and its own member (None when only implied)."""
    tops = sorted({parts[0] for _, parts in members if parts})
    if len(tops) != 1:
        found = ", ".join(repr(top) for top in tops) or "none"
        raise UnsafeArchiveError(f"expected exactly one top-level entry, found {found}")
    own = [info for info, parts in members if parts == (tops[0],)]
    return tops[0], (own[-1] if own else None)


def _check_dir_target(target: Path, top: str) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise FileExistsError(f"cannot copy directory {top!r} to {str(target)!r}: it is in the way")


def _link_parts(info: tarfile.TarInfo) -> Parts | None:
    return _split_name(info.linkname, info.name, "hard link target") if info.islnk() else None


def _relocated_link(info: tarfile.TarInfo, top: str, prefix: Parts) -> Parts | None:
    """A hard link's target moved like its member; it must stay inside the copied entry."""
    parts = _link_parts(info)
    if parts is None:
        return None
    if parts[:1] != (top,):
        raise _refuse(info.name, f"hard link target {info.linkname!r} is outside {top!r}")
    return prefix + parts[1:]


def _extract(
    tar: tarfile.TarFile,
    root: Path,
    entries: list[_Entry],
    max_bytes: int | None,
    *,
    make_parents: bool = False,
) -> list[Path]:
    sources = _Plan(root, entries, max_bytes).validate()
    if make_parents:  # only once every member passed: a refusal writes nothing
        root.parent.mkdir(parents=True, exist_ok=True)
    return _Writer(tar, root, sources).write(entries)


@contextlib.contextmanager
def _open_archive(data: bytes | BinaryIO, max_bytes: int | None) -> Iterator[tarfile.TarFile]:
    """Open `data` as a seekable, uncompressed tar, spooling a stream to a temporary file."""
    limit = None if max_bytes is None else max_bytes + _HEADER_ALLOWANCE
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        if isinstance(data, (bytes, bytearray, memoryview)):
            _check_stream_size(len(data), limit)
            fileobj: IO[bytes] = io.BytesIO(data)
        else:
            _spool(data, spool, limit)
            fileobj = spool
        try:
            with tarfile.open(fileobj=fileobj, mode="r:") as tar:
                yield tar
        except tarfile.TarError as error:
            raise UnsafeArchiveError(f"malformed tar stream: {error}") from error


def _spool(stream: BinaryIO, spool: IO[bytes], limit: int | None) -> None:
    size = 0
    while chunk := stream.read(_CHUNK):
        size += len(chunk)
        _check_stream_size(size, limit)
        spool.write(chunk)
    spool.seek(0)


def _check_stream_size(size: int, limit: int | None) -> None:
    if limit is not None and size > limit:
        raise UnsafeArchiveError(f"tar stream is larger than its {limit}-byte limit")


def _read_members(tar: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, Parts]]:
    """Every member with its validated name; reading all headers also detects truncation."""
    for info in tar.getmembers():
        yield info, _split_name(info.name, info.name)


def _split_name(name: str, member: str, what: str = "path") -> Parts:
    """Split a member name (or hard-link target) into components, refusing escapes."""
    if "\0" in name:
        raise _refuse(member, f"NUL byte in {what} {name!r}")
    if name.startswith("/"):
        raise _refuse(member, f"absolute {what} {name!r}")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise _refuse(member, f"'..' component in {what} {name!r}")
    return parts


def _refuse(member: str, reason: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"refusing archive member {member!r}: {reason}")


def _kind_of(info: tarfile.TarInfo) -> str:
    """One of file, dir, symlink, hardlink; every other member type is refused."""
    if info.isreg():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hardlink"
    if info.ischr() or info.isblk():
        raise _refuse(info.name, "device files are not allowed")
    if info.isfifo():
        raise _refuse(info.name, "FIFOs are not allowed")
    raise _refuse(info.name, f"unsupported member type {info.type!r}")


@dataclass(frozen=True)
class _Entry:
    """A member and where it goes, relative to the extraction root."""

    info: tarfile.TarInfo
    parts: Parts
    link_parts: Parts | None
    """For a hard link, its target relative to the extraction root."""


@dataclass
class _Plan:
    """First pass: check every entry against the archive and the destination; write nothing."""

    root: Path
    entries: list[_Entry]
    max_bytes: int | None
    kinds: dict[Parts, str] = field(default_factory=dict)
    files: dict[Parts, tarfile.TarInfo] = field(default_factory=dict)
    symlinks: dict[Parts, str] = field(default_factory=dict)

    def validate(self) -> dict[int, tarfile.TarInfo]:
        """Raise `UnsafeArchiveError` at the first bad entry, else map each hard link (by entry
        index) to the regular member whose content it copies."""
        sources: dict[int, tarfile.TarInfo] = {}
        total = 0
        for index, entry in enumerate(self.entries):
            source = self._check_entry(entry)
            if source is not None:
                sources[index] = source
                total += source.size
            if self.max_bytes is not None and total > self.max_bytes:
                reason = f"extracted size would exceed the {self.max_bytes}-byte limit"
                raise _refuse(entry.info.name, reason)
        for entry in self.entries:
            self._check_parents(entry)
            self._check_on_disk(entry)
        for entry in self.entries:
            target = entry.info.linkname
            if entry.info.issym() and not self._resolves_inside(entry.parts[:-1], target):
                reason = f"symlink to {target!r} resolves outside the destination (or loops)"
                raise _refuse(entry.info.name, reason)
        return sources

    def _check_entry(self, entry: _Entry) -> tarfile.TarInfo | None:
        """Check the entry on its own; return the member whose content it writes, if any."""
        info, name = entry.info, entry.info.name
        kind = _kind_of(info)
        if info.mode & _SPECIAL_BITS:
            raise _refuse(name, f"setuid, setgid or sticky bit in mode {info.mode:#o}")
        if not entry.parts and kind != "dir":
            raise _refuse(name, "only a directory may stand for the destination itself")
        if entry.parts in self.kinds and not (kind == "dir" == self.kinds[entry.parts]):
            raise _refuse(name, "another member has the same name")
        self.kinds[entry.parts] = kind
        if kind == "symlink":
            self.symlinks[entry.parts] = self._symlink_target(info)
        elif kind == "hardlink":
            return self._hardlink_source(entry)
        elif kind == "file":
            self.files[entry.parts] = info
            return info
        return None

    @staticmethod
    def _symlink_target(info: tarfile.TarInfo) -> str:
        target = info.linkname
        if not target or "\0" in target:
            raise _refuse(info.name, "empty or malformed symlink target")
        if target.startswith("/"):
            raise _refuse(info.name, f"absolute symlink target {target!r}")
        return target

    def _hardlink_source(self, entry: _Entry) -> tarfile.TarInfo:
        source = self.files.get(entry.link_parts or ())
        if source is None:
            reason = f"hard link to {entry.info.linkname!r}, not an earlier regular file"
            raise _refuse(entry.info.name, reason)
        return source

    def _check_parents(self, entry: _Entry) -> None:
        for depth in range(1, len(entry.parts)):
            kind = self.kinds.get(entry.parts[:depth], "dir")
            if kind != "dir":
                parent = "/".join(entry.parts[:depth])
                raise _refuse(entry.info.name, f"its parent {parent!r} is a {kind} in the archive")

    def _check_on_disk(self, entry: _Entry) -> None:
        for depth in range(1, len(entry.parts)):
            mode = self._lstat(entry.parts[:depth])
            if mode is None:
                return
            if not stat.S_ISDIR(mode):
                parent = "/".join(entry.parts[:depth])
                reason = f"{parent!r} exists in the destination and is not a directory"
                raise _refuse(entry.info.name, reason)
        mode = self._lstat(entry.parts)
        if mode is not None and stat.S_ISDIR(mode) != entry.info.isdir():
            raise _refuse(entry.info.name, "it would replace an existing entry of another type")

    def _lstat(self, parts: Parts) -> int | None:
        try:
            return self.root.joinpath(*parts).lstat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _resolves_inside(self, start: Parts, target: str) -> bool:
        """Resolve `target` from directory `start` as the OS will once extraction is done."""
        current = list(start)
        pending = list(reversed(target.split("/")))
        hops = 0
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not current:
                    return False
                current.pop()
                continue
            current.append(part)
            link = self._symlink_at(tuple(current))
            if link is None:
                continue
            hops += 1
            if hops > _MAX_SYMLINK_HOPS or link.startswith("/"):
                return False
            current.pop()
            pending.extend(reversed(link.split("/")))
        return True

    def _symlink_at(self, parts: Parts) -> str | None:
        """The symlink target at `parts` after extraction, None if that is not a symlink."""
        if parts in self.kinds:
            return self.symlinks.get(parts)
        if any(self.kinds.get(parts[:depth], "dir") != "dir" for depth in range(1, len(parts))):
            return None  # below a file from the archive: nothing on disk will be reachable
        mode = self._lstat(parts)
        if mode is None or not stat.S_ISLNK(mode):
            return None
        return os.readlink(self.root.joinpath(*parts))


@dataclass
class _Writer:
    """Second pass: write validated entries, never following a symlink."""

    tar: tarfile.TarFile
    root: Path
    sources: dict[int, tarfile.TarInfo]
    created: list[tuple[Parts, bool]] = field(default_factory=list)
    """What this extraction created, as (parts, is_directory), for clean-up on failure."""
    made_dirs: set[Parts] = field(default_factory=set)

    def write(self, entries: Sequence[_Entry]) -> list[Path]:
        root_created = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        try:
            for index, entry in enumerate(entries):
                if entry.parts:
                    self._write_entry(entry, self.sources.get(index))
                    written.append(self.root.joinpath(*entry.parts))
                elif root_created:
                    os.chmod(self.root, _dir_mode(entry.info))
        except BaseException:
            self._undo(root_created)
            raise
        return written

    def _write_entry(self, entry: _Entry, source: tarfile.TarInfo | None) -> None:
        with self._parent_fd(entry.parts) as parent:
            name = entry.parts[-1]
            if entry.info.isdir():
                self._write_dir(parent, entry)
                return
            if source is not None:
                _replace(parent, name, lambda tmp: self._create_file(parent, tmp, entry, source))
            else:
                target = entry.info.linkname
                _replace(parent, name, lambda tmp: os.symlink(target, tmp, dir_fd=parent))
            self.created.append((entry.parts, False))

    @contextlib.contextmanager
    def _parent_fd(self, parts: Parts) -> Iterator[int]:
        """A descriptor of the entry's parent directory, creating missing directories."""
        fd = os.open(self.root, _ROOT_OPEN_FLAGS)
        try:
            for depth in range(1, len(parts)):
                child = self._open_dir(fd, parts[:depth], 0o755)
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def _open_dir(self, parent: int, parts: Parts, mode: int) -> int:
        """Open the directory `parts[-1]` in `parent` without following a symlink; make it if
        missing."""
        try:
            return os.open(parts[-1], _DIR_OPEN_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            os.mkdir(parts[-1], mode, dir_fd=parent)
            self.created.append((parts, True))
            self.made_dirs.add(parts)
            return os.open(parts[-1], _DIR_OPEN_FLAGS, dir_fd=parent)

    def _write_dir(self, parent: int, entry: _Entry) -> None:
        mode = _dir_mode(entry.info)
        fd = self._open_dir(parent, entry.parts, mode)
        try:
            if entry.parts in self.made_dirs:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def _create_file(self, parent: int, tmp: str, entry: _Entry, source: tarfile.TarInfo) -> None:
        content = self.tar.extractfile(source)
        if content is None:  # pragma: no cover - the plan only lets regular files through
            raise _refuse(entry.info.name, "no data for a regular file")
        fd = os.open(tmp, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
        with os.fdopen(fd, "wb") as out, content:
            shutil.copyfileobj(content, out, _CHUNK)
            out.flush()
            os.fchmod(fd, _file_mode(entry.info))
            with contextlib.suppress(OverflowError, ValueError, OSError):
                os.utime(fd, (entry.info.mtime, entry.info.mtime))

    def _undo(self, root_created: bool) -> None:
        for parts, is_dir in reversed(self.created):
            path = self.root.joinpath(*parts)
            with contextlib.suppress(OSError):
                if is_dir:
                    path.rmdir()
                else:
                    path.unlink()
        if root_created:
            with contextlib.suppress(OSError):
                self.root.rmdir()


def _replace(parent: int, name: str, create: Callable[[str], None]) -> None:
    """Create an entry under a temporary name in `parent`, then rename it over `name`."""
    tmp = f".llm-sandbox-{secrets.token_hex(8)}.partial"
    try:
        create(tmp)
        os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=parent)
        raise


def _file_mode(info: tarfile.TarInfo) -> int:
    return (info.mode & 0o755) | 0o600


def _dir_mode(info: tarfile.TarInfo) -> int:
    return (info.mode & 0o755) | 0o700


# ------------------------------------------------------------------------------ read in memory


@dataclass(frozen=True)
class ArchiveFile:
    """A regular file read from an untrusted archive: its checked relative path and content."""

    path: str
    content: bytes


@dataclass
class ReadFiles:
    """What `read_files` found: files kept, and every member left out with the reason."""

    files: list[ArchiveFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def read_files(
    data: bytes | BinaryIO,
    *,
    budget: int,
    max_stream_bytes: int | None = None,
    order: Callable[[str], tuple[int, str]] | None = None,
) -> ReadFiles:
    """The regular files of the untrusted tar stream `data`, read into memory; nothing is written.

    Names are checked like extraction checks them (no absolute path, no `..`, no NUL); a member
    failing that is skipped with the reason rather than failing the whole read. Symlinks, hard
    links and special files are skipped too (a link could only name another member or a path on
    the sandbox's side). Files are taken in `order` (a sort key on the path; archive order by
    default) while their total size stays within `budget` bytes; the content of a file that does
    not fit is never read. Directories are not reported.
    """
    found = ReadFiles()
    with _open_archive(data, max_stream_bytes) as tar:
        members: list[tuple[tarfile.TarInfo, str]] = []
        for info in tar.getmembers():
            try:
                path = "/".join(_split_name(info.name, info.name))
            except UnsafeArchiveError as error:
                found.skipped.append((info.name, str(error)))
                continue
            if info.isdir():
                continue
            if not info.isreg():
                found.skipped.append((path, "not a regular file"))
                continue
            members.append((info, path))
        if order is not None:
            members.sort(key=lambda member: order(member[1]))
        used = 0
        for info, path in members:
            if used + info.size > budget:
                reason = f"{info.size} bytes would exceed the {budget}-byte limit"
                found.skipped.append((path, reason))
                continue
            stream = tar.extractfile(info)
            content = stream.read() if stream is not None else b""
            used += len(content)
            found.files.append(ArchiveFile(path, content))
    return found
