"""Piston v2 compatibility: `POST /api/v2/execute` and `GET /api/v2/runtimes`.

Shapes as Piston's API documents them, so Piston clients work unchanged:

- execute takes `language`, `version` (`"*"` = any), `files` (`[{name?, content, encoding?}]`,
  the first is the program), `stdin`, `args`, `compile_timeout` / `run_timeout` (ms),
  `compile_memory_limit` / `run_memory_limit` (bytes, -1 = no extra limit);
- it answers `{language, version, run: {stdout, stderr, output, code, signal}}`, plus
  `compile` for compiled languages (and no `run` when compiling failed);
- bad input is a 400 with `{"message": "..."}`, as Piston does.

A run that times out is killed and answered as Piston does: `code: null`, `signal: "SIGKILL"`.
"""

from __future__ import annotations

import base64
import binascii
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llm_sandbox.exceptions import SandboxError, SandboxTimeoutError
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory
from llm_sandbox.results import ConsoleOutput
from llm_sandbox.service.errors import ApiError, from_sandbox_error
from llm_sandbox.service.schema import Body, Field
from llm_sandbox.service.state import service_of
from llm_sandbox.service.streaming import unless_disconnected

EXECUTE = Body(
    "PistonExecute",
    {
        "language": Field("string", "Language name or alias.", required=True),
        "version": Field("string", "SemVer of the runtime, or '*' for any.", required=True),
        "files": Field("array", "Files; the first is the program.", required=True, items="object"),
        "stdin": Field("string", "Standard input."),
        "args": Field("array", "Command-line arguments of the program.", items="string"),
        "compile_timeout": Field("number", "Milliseconds for compiling."),
        "run_timeout": Field("number", "Milliseconds for running."),
        "compile_memory_limit": Field("number", "Bytes for compiling (-1: default)."),
        "run_memory_limit": Field("number", "Bytes for running (-1: default)."),
    },
)

DEFAULT_COMPILE_TIMEOUT = 10_000
DEFAULT_RUN_TIMEOUT = 3_000

# Runtimes of the default images (Debian bookworm); Python on the embedded backend is the
# server's own interpreter.
VERSIONS = {
    "python": f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}",
    "javascript": "18.19.0",
    "java": "17.0.0",
    "cpp": "12.2.0",
    "go": "1.19.8",
    "ruby": "3.1.2",
    "r": "4.2.2",
}
ALIASES = {
    "python": ["py", "python3"],
    "javascript": ["js", "node", "node-js", "node-javascript"],
    "java": [],
    "cpp": ["c++", "g++"],
    "go": ["golang"],
    "ruby": ["rb", "ruby3"],
    "r": ["r-lang", "rscript"],
}


def bad(message: str) -> ApiError:
    return ApiError(400, "piston_bad_request", message)


def runtimes_list() -> list[dict[str, Any]]:
    out = []
    for lang in LanguageHandlerFactory.get_supported_languages():
        out.append(
            {
                "language": lang,
                "version": VERSIONS.get(lang, "0.0.0"),
                "aliases": ALIASES.get(lang, []),
            }
        )
    return out


def _resolve(language: str, version: str) -> tuple[str, str]:
    for runtime in runtimes_list():
        if language == runtime["language"] or language in runtime["aliases"]:
            ours = runtime["version"]
            if version in ("*", ours) or ours.startswith(version + "."):
                return runtime["language"], ours
    raise bad(f"{language}-{version} runtime is unknown")


def _is_compiled(lang: str) -> bool:
    handler = LanguageHandlerFactory.create_handler(lang)
    return bool(handler.command_plan("", 1).compile)


def _stage(stdout: str, stderr: str, code: int | None, signal: str | None) -> dict[str, Any]:
    return {
        "stdout": stdout,
        "stderr": stderr,
        "output": stdout + stderr,
        "code": code,
        "signal": signal,
    }


def _files(files: list[Any]) -> list[tuple[str | None, str]]:
    if not files:
        raise bad("files must hold at least one file: the program")
    out: list[tuple[str | None, str]] = []
    for item in files:
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise bad("each file must be an object with a string 'content'")
        name = item.get("name")
        if name is not None and (
            not isinstance(name, str) or "/" in name or name in ("", ".", "..")
        ):
            raise bad(f"file name {name!r} must be a plain file name")
        content = item["content"]
        encoding = item.get("encoding", "utf8")
        if encoding == "base64":
            try:
                content = base64.b64decode(content, validate=True).decode("utf-8", "replace")
            except binascii.Error as exc:
                raise bad(f"file {name!r} is not valid base64") from exc
        elif encoding not in ("utf8", "utf-8"):
            raise bad(f"file encoding {encoding!r} is not supported: use utf8 or base64")
        out.append((name, content))
    return out


def _limit(value: Any, default: int | None) -> int | None:
    if value is None or value == -1:
        return default
    if not isinstance(value, int | float) or value <= 0:
        raise bad("timeouts and memory limits must be positive numbers (or -1)")
    return int(value)


async def runtimes(request: Request) -> Response:
    service_of(request).authenticate(request)
    return JSONResponse(runtimes_list())


async def execute(request: Request) -> Response:
    service = service_of(request)
    key = service.authenticate(request)
    try:
        body = await service.body(request, EXECUTE, status=400)
    except ApiError as exc:
        if exc.status != 400:
            raise
        raise bad(exc.message) from exc
    lang, version = _resolve(body["language"], body["version"])
    files = _files(body["files"])
    args = body.get("args") or []
    run_ms = _limit(body.get("run_timeout"), DEFAULT_RUN_TIMEOUT) or DEFAULT_RUN_TIMEOUT
    compile_ms = _limit(body.get("compile_timeout"), DEFAULT_COMPILE_TIMEOUT) or 0
    compiled = _is_compiled(lang)
    timeout = (run_ms + (compile_ms if compiled else 0)) / 1000
    memories = [
        m
        for m in (
            _limit(body.get("run_memory_limit"), None),
            _limit(body.get("compile_memory_limit"), None) if compiled else None,
        )
        if m is not None
    ]
    memory = max(memories) if memories else None
    asked = body.get("run_timeout") is not None or (
        compiled and body.get("compile_timeout") is not None
    )
    # Piston's default timeouts are cut to the key's limit; only asking for more is refused.
    timeout = (
        service.quotas.timeout(key, timeout)
        if asked
        else min(timeout, service.quotas.of(key).max_timeout)
    )
    service.quotas.check_memory(key, memory)
    async with AsyncExitStack() as stack:
        stack.enter_context(service.quotas.run(key))
        session = await stack.enter_async_context(service.oneshot.session(lang, memory))
        answer: dict[str, Any] = {"language": lang, "version": version}
        try:
            if len(files) > 1:
                with tempfile.TemporaryDirectory(prefix="llm-sandbox-piston-") as tmp:
                    for index, (name, content) in enumerate(files[1:], start=1):
                        local = Path(tmp) / (name or f"file{index}")
                        local.write_text(content, encoding="utf-8")
                        await session.copy_to_runtime(str(local), local.name)
            result: ConsoleOutput = await unless_disconnected(
                request.receive,
                lambda: session.run(
                    files[0][1], timeout=timeout, stdin=body.get("stdin") or None, args=args
                ),
            )
        except SandboxTimeoutError as exc:
            if compiled:
                answer["compile"] = _stage("", "", 0, None)
            answer["run"] = _stage(exc.stdout, exc.stderr, None, "SIGKILL")
            return JSONResponse(answer)
        except SandboxError as exc:
            raise from_sandbox_error(exc) from exc
    if result.compile_failed:
        answer["compile"] = _stage(result.stdout, result.stderr, result.exit_code, None)
        return JSONResponse(answer)
    if compiled:
        answer["compile"] = _stage(result.compile_stdout, result.compile_stderr, 0, None)
    signal = "SIGKILL" if result.out_of_memory else None
    answer["run"] = _stage(result.stdout, result.stderr, result.exit_code, signal)
    return JSONResponse(answer)


async def piston_error(request: Request, exc: ApiError) -> Response:
    """Piston's error shape: `{"message": ...}`."""
    return JSONResponse({"message": exc.message}, status_code=exc.status, headers=exc.headers)


ROUTES = [
    Route("/api/v2/runtimes", runtimes, methods=["GET"]),
    Route("/api/v2/execute", execute, methods=["POST"]),
]
BODIES = {"/api/v2/execute": EXECUTE}
