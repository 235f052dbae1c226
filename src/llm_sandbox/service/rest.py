"""The REST API (`/v1/...`): sessions, runs (JSON or SSE), commands, installs, files, plots.

Every handler authenticates first, then parses its body strictly (`schema.BODIES`), then works
through the async API, so the event loop never waits on a sandbox.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llm_sandbox.aio import AsyncInteractiveSandboxSession, AsyncSandboxSession
from llm_sandbox.exceptions import SandboxError, SandboxTimeoutError
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory
from llm_sandbox.results import ConsoleOutput
from llm_sandbox.service.errors import ApiError, from_sandbox_error
from llm_sandbox.service.files import download, list_dir, upload
from llm_sandbox.service.sandboxes import HeldSession, check_language
from llm_sandbox.service.schema import Body, Field
from llm_sandbox.service.state import Service, service_of
from llm_sandbox.service.streaming import Emit, EventStream, unless_disconnected

_RUN_FIELDS = {
    "code": Field("string", "The code to run.", required=True),
    "stdin": Field("string", "Standard input of the program."),
    "timeout": Field("number", "Seconds before the run is killed."),
    "libraries": Field("array", "Libraries to install first.", items="string"),
    "stream": Field("boolean", "Answer with server-sent events (stdout, stderr, result)."),
}
RUN = Body("Run", _RUN_FIELDS)
ONE_SHOT = Body(
    "OneShotRun",
    {
        "lang": Field("string", "Language of the code (GET /v1/languages).", required=True),
        "memory": Field("integer", "Memory of the sandbox in bytes."),
        **_RUN_FIELDS,
    },
)
SESSION = Body(
    "SessionCreate",
    {
        "lang": Field("string", "Language of the session (GET /v1/languages).", required=True),
        "memory": Field("integer", "Memory of the sandbox in bytes."),
        "plots": Field("boolean", "Capture plots (matplotlib, ...) of each run."),
        "interactive": Field(
            "boolean", "A stateful kernel (python, javascript, r): runs are cells."
        ),
        "ttl": Field(
            "number",
            "Seconds the session may stay idle before it is closed (at most the "
            "server's session_ttl).",
        ),
        "env_vars": Field("object", "Environment variables of every command."),
        "libraries": Field("array", "Libraries installed when it opens.", items="string"),
    },
)
EXEC = Body(
    "Exec",
    {
        "command": Field("array", "The argv to run (no shell).", required=True, items="string"),
        "stdin": Field("string", "Standard input of the command."),
        "timeout": Field("number", "Seconds before the command is killed."),
        "workdir": Field("string", "Working directory (default: the session's)."),
        "stream": Field("boolean", "Answer with server-sent events."),
    },
)
INSTALL = Body(
    "Install",
    {"libraries": Field("array", "Libraries to install.", required=True, items="string")},
)


def result_json(result: ConsoleOutput) -> dict[str, Any]:
    """A run's result as JSON: the result's fields, its verdict, and plots if it has any."""
    data = result.to_dict(include_plots=True)
    data["verdict"] = result.verdict.value
    data["truncated"] = result.truncated
    return data


def timeout_json(exc: SandboxTimeoutError) -> dict[str, Any]:
    return {
        "exit_code": None,
        "stdout": exc.stdout,
        "stderr": exc.stderr,
        "verdict": "timeout",
        "timed_out": True,
        "message": str(exc),
    }


Call = Callable[[Emit | None], Awaitable[ConsoleOutput]]


async def _answer(request: Request, call: Call, stream: bool, held: AsyncExitStack) -> Response:
    """Run `call` and answer as JSON, or as server-sent events when `stream`."""

    async def work(emit: Emit | None) -> dict[str, Any]:
        try:
            answer = result_json(await call(emit))
        except SandboxTimeoutError as exc:
            return timeout_json(exc)
        if emit is not None:  # rich results as events of their own, before the final result
            for plot in answer.get("plots") or ():
                await emit("plot", plot)
        return answer

    if stream:
        return EventStream(work, held)
    async with held:
        try:
            return JSONResponse(await unless_disconnected(request.receive, lambda: work(None)))
        except SandboxError as exc:
            raise from_sandbox_error(exc) from exc


def _callbacks(emit: Emit | None) -> dict[str, Any]:
    if emit is None:
        return {}

    async def out(text: str) -> None:
        await emit("stdout", {"text": text})

    async def err(text: str) -> None:
        await emit("stderr", {"text": text})

    return {"on_stdout": out, "on_stderr": err}


def _run_call(session: AsyncSandboxSession, body: dict[str, Any]) -> Call:
    interactive = isinstance(session, AsyncInteractiveSandboxSession)
    if interactive and body.get("stdin") is not None:
        raise ApiError(422, "stdin_in_cell", "a cell of an interactive session takes no stdin")

    async def call(emit: Emit | None) -> ConsoleOutput:
        callbacks = _callbacks(emit)
        if not interactive:
            return await session.run(
                body["code"],
                libraries=body.get("libraries"),
                timeout=body.get("timeout"),
                stdin=body.get("stdin"),
                **callbacks,
            )
        if emit is not None:

            async def display(bundle: dict[str, Any]) -> None:
                await emit("display", bundle)

            callbacks["on_result"] = display
        result: ConsoleOutput = await session.run(
            body["code"], libraries=body.get("libraries"), timeout=body.get("timeout"), **callbacks
        )
        return result

    return call


async def _session_for_run(
    service: Service, key: str, session_id: str
) -> tuple[HeldSession, AsyncExitStack]:
    """The key's session, marked busy, and one run counted against the key's quota; the
    stack gives both back (when the answer, or its stream, ends)."""
    stack = AsyncExitStack()
    async with AsyncExitStack() as guard:
        guard.push_async_exit(stack)
        held = await stack.enter_async_context(service.sessions.using(key, session_id))
        stack.enter_context(service.quotas.run(key))
        guard.pop_all()
    return held, stack


# --- endpoints --------------------------------------------------------------------------------
async def languages(request: Request) -> Response:
    service_of(request).authenticate(request)
    return JSONResponse({"languages": LanguageHandlerFactory.get_supported_languages()})


async def run_once(request: Request) -> Response:
    service = service_of(request)
    key = service.authenticate(request)
    body = await service.body(request, ONE_SHOT)
    lang = check_language(body["lang"])
    body["timeout"] = service.quotas.timeout(key, body.get("timeout"))
    service.quotas.check_memory(key, body.get("memory"))
    stack = AsyncExitStack()
    async with AsyncExitStack() as guard:
        guard.push_async_exit(stack)
        stack.enter_context(service.quotas.run(key))
        session = await stack.enter_async_context(service.oneshot.session(lang, body.get("memory")))
        guard.pop_all()
    return await _answer(request, _run_call(session, body), bool(body.get("stream")), stack)


async def create_session(request: Request) -> Response:
    service = service_of(request)
    key = service.authenticate(request)
    body = await service.body(request, SESSION)
    lang = check_language(body["lang"])
    env_vars = body.get("env_vars") or {}
    if not all(isinstance(v, str) for v in env_vars.values()):
        raise ApiError(422, "invalid_field", "the values of 'env_vars' must be strings")
    held = await service.hold_session(
        key,
        lang,
        memory=body.get("memory"),
        plots=bool(body.get("plots")),
        interactive=bool(body.get("interactive")),
        env_vars=env_vars,
        libraries=body.get("libraries"),
        ttl=body.get("ttl"),
    )
    return JSONResponse(held.describe(), status_code=201)


async def list_sessions(request: Request) -> Response:
    service = service_of(request)
    key = service.authenticate(request)
    return JSONResponse({"sessions": [s.describe() for s in service.sessions.owned(key)]})


async def get_session(request: Request) -> Response:
    service = service_of(request)
    key = service.authenticate(request)
    return JSONResponse(service.sessions.get(key, request.path_params["id"]).describe())


async def delete_session(request: Request) -> Response:
    service = service_of(request)
    key = service.authenticate(request)
    await service.sessions.remove(key, request.path_params["id"])
    return Response(status_code=204)


async def session_run(request: Request) -> Response:
    service = service_of(request)
    key = service.authenticate(request)
    body = await service.body(request, RUN)
    body["timeout"] = service.quotas.timeout(key, body.get("timeout"))
    held, stack = await _session_for_run(service, key, request.path_params["id"])
    return await _answer(request, _run_call(held.session, body), bool(body.get("stream")), stack)


async def session_exec(request: Request) -> Response:
    service = service_of(request)
    key = service.authenticate(request)
    body = await service.body(request, EXEC)
    body["timeout"] = service.quotas.timeout(key, body.get("timeout"))
    held, stack = await _session_for_run(service, key, request.path_params["id"])

    async def call(emit: Emit | None) -> ConsoleOutput:
        return await held.session.execute_command(
            body["command"],
            timeout=body.get("timeout"),
            workdir=body.get("workdir"),
            stdin=body.get("stdin"),
            **_callbacks(emit),
        )

    return await _answer(request, call, bool(body.get("stream")), stack)


async def session_install(request: Request) -> Response:
    service = service_of(request)
    key = service.authenticate(request)
    body = await service.body(request, INSTALL)
    async with service.sessions.using(key, request.path_params["id"]) as held:
        try:
            result = await held.session.install(body["libraries"])
        except SandboxError as exc:
            raise from_sandbox_error(exc) from exc
    return JSONResponse(result_json(result) if isinstance(result, ConsoleOutput) else {})


async def restart(request: Request) -> Response:
    """Start a fresh kernel in an interactive session (its state is gone)."""
    service = service_of(request)
    key = service.authenticate(request)
    async with service.sessions.using(key, request.path_params["id"]) as held:
        if not held.interactive:
            raise ApiError(
                400,
                "not_interactive",
                "only interactive sessions have a kernel to restart; "
                "create one with interactive: true",
            )
        assert isinstance(held.session, AsyncInteractiveSandboxSession)
        try:
            await held.session.restart()
        except SandboxError as exc:
            raise from_sandbox_error(exc) from exc
    return JSONResponse(held.describe())


async def plots(request: Request) -> Response:
    service = service_of(request)
    key = service.authenticate(request)
    held = service.sessions.get(key, request.path_params["id"])
    found = getattr(held.session, "plots", None)
    if found is None:
        raise ApiError(
            400, "plots_off", "this session does not capture plots; create it with plots: true"
        )
    return JSONResponse({"plots": [dataclasses.asdict(p) for p in found]})


ROUTES = [
    Route("/v1/languages", languages, methods=["GET"]),
    Route("/v1/run", run_once, methods=["POST"]),
    Route("/v1/sessions", create_session, methods=["POST"]),
    Route("/v1/sessions", list_sessions, methods=["GET"]),
    Route("/v1/sessions/{id}", get_session, methods=["GET"]),
    Route("/v1/sessions/{id}", delete_session, methods=["DELETE"]),
    Route("/v1/sessions/{id}/run", session_run, methods=["POST"]),
    Route("/v1/sessions/{id}/exec", session_exec, methods=["POST"]),
    Route("/v1/sessions/{id}/install", session_install, methods=["POST"]),
    Route("/v1/sessions/{id}/files", upload, methods=["PUT"]),
    Route("/v1/sessions/{id}/files", download, methods=["GET"]),
    Route("/v1/sessions/{id}/dir", list_dir, methods=["GET"]),
    Route("/v1/sessions/{id}/plots", plots, methods=["GET"]),
    Route("/v1/sessions/{id}/restart", restart, methods=["POST"]),
]
BODIES = {
    "/v1/run": ONE_SHOT,
    "/v1/sessions": SESSION,
    "/v1/sessions/{id}/run": RUN,
    "/v1/sessions/{id}/exec": EXEC,
    "/v1/sessions/{id}/install": INSTALL,
}
