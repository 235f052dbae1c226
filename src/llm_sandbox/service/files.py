"""Files of a session over HTTP: upload (`PUT`), download (`GET`), list a directory."""

from __future__ import annotations

import io
import posixpath
import tarfile
import tempfile
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from llm_sandbox.aio import AsyncSandboxSession
from llm_sandbox.exceptions import SandboxError
from llm_sandbox.service.errors import ApiError, from_sandbox_error
from llm_sandbox.service.state import service_of


async def write_file(session: AsyncSandboxSession, path: str, data: bytes) -> None:
    """Write `data` to `path` in the session (our errors become `ApiError`s)."""
    with tempfile.TemporaryDirectory(prefix="llm-sandbox-upload-") as tmp:
        local = Path(tmp) / (posixpath.basename(path) or "file")
        local.write_bytes(data)
        try:
            await session.copy_to_runtime(str(local), path)
        except SandboxError as exc:
            raise from_sandbox_error(exc) from exc


async def read_file(session: AsyncSandboxSession, path: str) -> bytes:
    """The bytes of the regular file `path` in the session (our errors become `ApiError`s)."""
    try:
        archive, _stat = await session.get_archive(path)
    except SandboxError as exc:
        raise from_sandbox_error(exc) from exc
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = next((m for m in tar.getmembers() if m.isfile()), None)
        extracted = tar.extractfile(member) if member is not None else None
        if extracted is None:
            raise ApiError(400, "not_a_file", f"{path!r} is not a regular file; list it with /dir")
        return extracted.read()


def _path(request: Request) -> str:
    path = request.query_params.get("path")
    if not path:
        raise ApiError(422, "missing_path", "pass the file's path as ?path=NAME")
    return path


async def upload(request: Request) -> Response:
    service = service_of(request)
    key = service.authenticate(request)
    path = _path(request)
    data = await service.raw_body(request)
    async with service.sessions.using(key, request.path_params["id"]) as held:
        await write_file(held.session, path, data)
    return JSONResponse({"path": path, "size": len(data)}, status_code=201)


async def download(request: Request) -> Response:
    service = service_of(request)
    key = service.authenticate(request)
    path = _path(request)
    async with service.sessions.using(key, request.path_params["id"]) as held:
        content = await read_file(held.session, path)
    return Response(content, media_type="application/octet-stream")


async def list_dir(request: Request) -> Response:
    service = service_of(request)
    key = service.authenticate(request)
    path = request.query_params.get("path") or "."
    async with service.sessions.using(key, request.path_params["id"]) as held:
        try:
            result = await held.session.execute_command(
                ["find", path, "-mindepth", "1", "-maxdepth", "1", "-printf", r"%y %s %P\n"]
            )
        except SandboxError as exc:
            raise from_sandbox_error(exc) from exc
    if result.exit_code != 0:
        raise ApiError(404, "file_not_found", f"cannot list {path!r}: {result.stderr.strip()}")
    entries = []
    for line in result.stdout.splitlines():
        kind, size, name = line.split(" ", 2)
        entries.append({"name": name, "type": "dir" if kind == "d" else "file", "size": int(size)})
    return JSONResponse({"path": path, "entries": sorted(entries, key=lambda e: e["name"])})
