"""What one running service holds: settings, keys, quotas, sessions, one-shot sandboxes; and
the two things every request does first (authenticate, read the body within the limit)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from llm_sandbox.service.errors import ApiError
from llm_sandbox.service.keys import KeyStore
from llm_sandbox.service.quotas import Quotas
from llm_sandbox.service.sandboxes import HeldSession, OneShot, SessionRegistry, open_session
from llm_sandbox.service.schema import Body, parse
from llm_sandbox.service.settings import ServiceSettings


@dataclass
class Service:
    settings: ServiceSettings
    keys: KeyStore
    quotas: Quotas = field(init=False)
    sessions: SessionRegistry = field(default_factory=SessionRegistry)
    oneshot: Any = None
    """Where one-shot runs get their sandbox (`OneShot`, or a pool-backed one)."""

    def __post_init__(self) -> None:
        self.quotas = Quotas(
            self.settings.limits, self.keys.limits_of, self.settings.default_timeout
        )
        if self.oneshot is None:
            self.oneshot = OneShot(self.settings)

    def authenticate(self, request: Request) -> str:
        """The name of the key the request carries (`Authorization: Bearer KEY`), or 401."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "unauthorized",
                "send an API key as 'Authorization: Bearer KEY' "
                "(create one with `llm-sandbox keys create NAME`)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        name = self.keys.verify(token.strip())
        if name is None:
            raise ApiError(
                401,
                "invalid_key",
                "the API key is not valid (revoked or mistyped); create one with "
                "`llm-sandbox keys create NAME`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return name

    async def hold_session(
        self,
        key: str,
        lang: str,
        *,
        memory: int | None = None,
        plots: bool = False,
        interactive: bool = False,
        env_vars: dict[str, str] | None = None,
        libraries: list[str] | None = None,
        ttl: float | None = None,
    ) -> HeldSession:
        """Open a session for `key` within its limits and keep it (idle past `ttl`, at most
        the `session_ttl` setting, it is closed)."""
        self.quotas.check_memory(key, memory)
        self.quotas.check_session(key, self.sessions.count(key))
        with self.sessions.opening(key):
            session = await open_session(
                self.settings,
                lang,
                memory=memory,
                plots=plots,
                interactive=interactive,
                env_vars=env_vars,
                libraries=libraries,
            )
            held = HeldSession(
                self.sessions.new_id(),
                key,
                lang,
                session,
                ttl=min(float(ttl or self.settings.session_ttl), self.settings.session_ttl),
                plots=plots,
                interactive=interactive,
            )
            self.sessions.add(held)
        return held

    async def body(self, request: Request, spec: Body, status: int = 422) -> dict[str, Any]:
        return parse(await self.raw_body(request), spec, status)

    async def raw_body(self, request: Request) -> bytes:
        """The request body, or 413 as soon as it passes the size limit."""
        limit = self.settings.body_limit
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large(limit)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "body_too_large",
        f"the request body is over the limit of {limit} bytes; send less, or raise the "
        "server's body_limit setting",
    )


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service
