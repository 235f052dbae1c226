"""The MCP tools and resource, over the HTTP service's `Service` (its settings, per-key
quotas and session registry), so stdio and HTTP clients get the same limits and the same
session TTL as REST clients.

Limits come from the server's settings: a client may ask for a shorter timeout, never a longer
one than `limits.max_timeout`; memory and output are the server's. Every failure is an MCP tool
error whose message names the fix.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from collections.abc import Iterator
from typing import Any

from mcp import types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from llm_sandbox.exceptions import SandboxError, SandboxTimeoutError
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory
from llm_sandbox.mcp_server import languages
from llm_sandbox.mcp_server.content import Content, result_content, text
from llm_sandbox.service.errors import ApiError, from_sandbox_error
from llm_sandbox.service.files import read_file, write_file
from llm_sandbox.service.sandboxes import check_language, open_session
from llm_sandbox.service.state import Service

LANGUAGES_URI = "sandbox://languages"


@contextlib.contextmanager
def tool_errors() -> Iterator[None]:
    """Our errors as MCP tool errors (the message names the fix)."""
    try:
        yield
    except ToolError:
        raise
    except ApiError as exc:
        raise ToolError(exc.message) from exc
    except SandboxTimeoutError as exc:
        raise ToolError(
            f"{exc}; the run was killed. Make the code finish sooner, or pass a longer timeout "
            f"(stdout so far: {exc.stdout[-2000:]!r}; stderr so far: {exc.stderr[-2000:]!r})"
        ) from exc
    except SandboxError as exc:
        raise ToolError(from_sandbox_error(exc).message) from exc


class SandboxTools:
    """The tools of one server. `local_owner` is whose sessions a transport without headers
    (stdio) holds; over HTTP the owner is the API key the request carries."""

    def __init__(self, service: Service, local_owner: str | None = None) -> None:
        self.service = service
        self.local_owner = local_owner

    def owner(self, ctx: Context) -> str:
        headers = ctx.headers
        if headers is None:
            if self.local_owner is None:
                raise ToolError("this server needs an API key: send 'Authorization: Bearer KEY'")
            return self.local_owner
        scheme, _, token = headers.get("authorization", "").partition(" ")
        name = self.service.keys.verify(token.strip()) if scheme.lower() == "bearer" else None
        if name is None:
            raise ToolError(
                "send a valid API key as 'Authorization: Bearer KEY' "
                "(create one with `llm-sandbox keys create NAME`)"
            )
        return name

    def timeout(self, owner: str, timeout: float | None) -> float:
        if timeout is not None and timeout <= 0:
            raise ToolError(f"timeout must be above 0 seconds, got {timeout}")
        return self.service.quotas.timeout(owner, timeout)

    @staticmethod
    def language(language: str) -> str:
        return check_language(language.strip().lower())

    # --- stateless ------------------------------------------------------------------------
    async def execute_code(
        self,
        code: str,
        ctx: Context,
        language: str = "python",
        libraries: list[str] | None = None,
        timeout: float | None = None,
    ) -> list[Content]:
        """Execute code in a secure sandbox environment and automatic visualization capture.

        Runs `code` in a fresh sandbox that is thrown away afterwards. `libraries` are installed
        first. `timeout` is in seconds (default and maximum: the server's settings). Plots
        (matplotlib, plotly, ...) come back as images, then a JSON result with exit_code,
        stdout, stderr and verdict. For state kept between runs, use create_session.
        """
        with tool_errors():
            owner = self.owner(ctx)
            lang = self.language(language)
            timeout = self.timeout(owner, timeout)
            service = self.service
            async with contextlib.AsyncExitStack() as stack:
                stack.enter_context(service.quotas.run(owner))
                if LanguageHandlerFactory.create_handler(lang).is_support_plot_detection:
                    session = await open_session(service.settings, lang, plots=True)
                    await stack.enter_async_context(service.oneshot.lent(session))
                else:  # no plots to capture: a sandbox from the pool when the server has one
                    session = await stack.enter_async_context(service.oneshot.session(lang, None))
                result = await session.run(code, libraries=libraries, timeout=timeout)
            return result_content(result)

    def get_supported_languages(self) -> list[types.TextContent]:
        """Get the list of supported programming languages."""
        return [text(languages.supported())]

    def get_language_details(self, language: str) -> list[types.TextContent]:
        """Get the details of one language: libraries, plots, interactive sessions, example."""
        with tool_errors():
            return [text(languages.details(self.language(language)))]

    # --- sessions -------------------------------------------------------------------------
    async def create_session(
        self,
        ctx: Context,
        language: str = "python",
        interactive: bool = False,
        libraries: list[str] | None = None,
    ) -> list[types.TextContent]:
        """Create a sandbox session that keeps files (and, if interactive, variables) between runs.

        Returns its session_id for run_in_session, upload_file, download_file and
        close_session. With interactive=true (python, javascript, r) each run is a notebook
        cell: variables and imports stay. Plots are captured when the language supports them.
        A session idle longer than the server's TTL is closed; close it when done.
        """
        with tool_errors():
            owner = self.owner(ctx)
            lang = self.language(language)
            plots = LanguageHandlerFactory.create_handler(lang).is_support_plot_detection
            held = await self.service.hold_session(
                owner,
                lang,
                plots=plots and not interactive,
                interactive=interactive,
                libraries=libraries,
            )
            return [text({"session_id": held.id, **held.describe()})]

    async def run_in_session(
        self,
        session_id: str,
        code: str,
        ctx: Context,
        libraries: list[str] | None = None,
        timeout: float | None = None,
    ) -> list[Content]:
        """Run code in a session made by create_session (a cell, if the session is interactive).

        Files written stay for the next run. Returns plots as images, then a JSON result.
        """
        with tool_errors():
            owner = self.owner(ctx)
            timeout = self.timeout(owner, timeout)
            async with self.service.sessions.using(owner, session_id) as held:
                with self.service.quotas.run(owner):
                    result = await held.session.run(code, libraries=libraries, timeout=timeout)
            return result_content(result)

    async def upload_file(
        self, session_id: str, path: str, content: str, ctx: Context, is_base64: bool = False
    ) -> list[types.TextContent]:
        """Write a file into a session: `content` is text, or base64 when is_base64 is true.

        A relative `path` is in the session's working directory.
        """
        with tool_errors():
            owner = self.owner(ctx)
            data = _decode(content) if is_base64 else content.encode("utf-8")
            limit = self.service.settings.body_limit
            if len(data) > limit:
                raise ToolError(
                    f"the file is {len(data)} bytes, over this server's limit of {limit} bytes "
                    "(body_limit); send a smaller file"
                )
            async with self.service.sessions.using(owner, session_id) as held:
                await write_file(held.session, path, data)
            return [text({"path": path, "size": len(data)})]

    async def download_file(
        self, session_id: str, path: str, ctx: Context
    ) -> list[types.TextContent]:
        """Read a file from a session: JSON with its text, or its base64 if it is not UTF-8."""
        with tool_errors():
            owner = self.owner(ctx)
            async with self.service.sessions.using(owner, session_id) as held:
                data = await read_file(held.session, path)
            limit = self.service.settings.body_limit
            if len(data) > limit:
                raise ToolError(
                    f"{path!r} is {len(data)} bytes, over this server's limit of {limit} bytes "
                    "(body_limit); read part of it with run_in_session instead"
                )
            answer: dict[str, Any] = {"path": path, "size": len(data)}
            try:
                answer["text"] = data.decode("utf-8")
            except UnicodeDecodeError:
                answer["base64"] = base64.b64encode(data).decode("ascii")
            return [text(answer)]

    def list_sessions(self, ctx: Context) -> list[types.TextContent]:
        """List this client's open sessions."""
        with tool_errors():
            owner = self.owner(ctx)
            return [text([s.describe() for s in self.service.sessions.owned(owner)])]

    async def close_session(self, session_id: str, ctx: Context) -> list[types.TextContent]:
        """Close a session and remove its sandbox."""
        with tool_errors():
            await self.service.sessions.remove(self.owner(ctx), session_id)
            return [text({"closed": session_id})]

    def register(self, server: MCPServer[Any]) -> None:
        for tool in (
            self.execute_code,
            self.get_supported_languages,
            self.get_language_details,
            self.create_session,
            self.run_in_session,
            self.upload_file,
            self.download_file,
            self.list_sessions,
            self.close_session,
        ):
            server.add_tool(tool, structured_output=False)
        server.resource(
            LANGUAGES_URI,
            name="language_details",
            description="Details of every supported language (JSON).",
            mime_type="application/json",
        )(_language_resource)


def _language_resource() -> str:
    return json.dumps(languages.all_details(), indent=2)


def _decode(content: str) -> bytes:
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ToolError(
            f"content is not valid base64 ({exc}); send is_base64=false for text"
        ) from exc
