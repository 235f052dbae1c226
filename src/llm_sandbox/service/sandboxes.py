"""Where the service gets sandboxes: sessions that clients hold, and one-shot sandboxes.

`SessionRegistry` keeps each client session with the key that owns it; a key asking for a
session of another key gets the same 404 as for one that does not exist, so it cannot even
learn that it exists. A reaper closes sessions idle past their TTL. `OneShot` gives a sandbox
for a single run (REST `/v1/run` and Piston): a fresh session here; the seam a pool plugs into.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from llm_sandbox.aio import (
    AsyncArtifactSandboxSession,
    AsyncInteractiveSandboxSession,
    AsyncSandboxSession,
)
from llm_sandbox.config import ResourceLimits
from llm_sandbox.exceptions import SandboxError
from llm_sandbox.language_handlers.factory import LanguageHandlerFactory
from llm_sandbox.service.errors import ApiError, from_sandbox_error
from llm_sandbox.service.settings import ServiceSettings

REAP_INTERVAL = 1.0


def check_language(lang: str, status: int = 400) -> str:
    """`lang` if a handler exists for it, else a 400 listing the languages."""
    languages = LanguageHandlerFactory.get_supported_languages()
    if lang not in languages:
        raise ApiError(
            status,
            "unknown_language",
            f"unknown language {lang!r}; use one of: {', '.join(sorted(languages))}",
        )
    return lang


def session_options(settings: ServiceSettings, memory: int | None) -> dict[str, Any]:
    """The `SandboxSession` options every sandbox of the service gets."""
    return {
        **settings.options,
        "backend": settings.backend,
        "limits": ResourceLimits(memory=memory or settings.memory),
        "default_timeout": settings.default_timeout,
    }


async def open_session(
    settings: ServiceSettings,
    lang: str,
    *,
    memory: int | None = None,
    plots: bool = False,
    interactive: bool = False,
    env_vars: dict[str, str] | None = None,
    libraries: list[str] | None = None,
) -> AsyncSandboxSession:
    """An open session (our errors become `ApiError`s: a backend that cannot start → 503)."""
    options = session_options(settings, memory)
    if env_vars:
        options["env_vars"] = env_vars
    if libraries:
        options["libraries"] = libraries
    try:
        session: AsyncSandboxSession
        if interactive:
            session = AsyncInteractiveSandboxSession(lang, **options)
        elif plots:
            session = AsyncArtifactSandboxSession(lang, **options)
        else:
            session = AsyncSandboxSession(lang, **options)
        await session.open()
    except SandboxError as exc:
        raise from_sandbox_error(exc) from exc
    return session


@dataclass
class HeldSession:
    """A client's session and its bookkeeping."""

    id: str
    owner: str
    lang: str
    session: AsyncSandboxSession
    ttl: float
    plots: bool
    interactive: bool = False
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    busy: int = 0

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "lang": self.lang,
            "plots": self.plots,
            "interactive": self.interactive,
            "ttl": self.ttl,
            "created": self.created,
            "idle": round(time.monotonic() - self.last_used, 3),
            "state": self.session.state.name.lower(),
        }


class SessionRegistry:
    """The open client sessions, by id, each owned by one key."""

    def __init__(self) -> None:
        self._sessions: dict[str, HeldSession] = {}
        self._opening: dict[str, int] = {}
        """Sessions each key is opening now (counted against its limit already)."""
        self._closing = 0
        """`close_all` calls in progress."""

    @contextlib.contextmanager
    def opening(self, owner: str) -> Iterator[None]:
        """Count a session being opened for `owner` until it is added (or failed)."""
        self._opening[owner] = self._opening.get(owner, 0) + 1
        try:
            yield
        finally:
            self._opening[owner] -= 1

    def add(self, held: HeldSession) -> None:
        self._sessions[held.id] = held

    @staticmethod
    def new_id() -> str:
        return "ses_" + secrets.token_hex(12)

    def count(self, owner: str) -> int:
        held = sum(1 for s in self._sessions.values() if s.owner == owner)
        return held + self._opening.get(owner, 0)

    def owned(self, owner: str) -> list[HeldSession]:
        return [s for s in self._sessions.values() if s.owner == owner]

    def get(self, owner: str, session_id: str) -> HeldSession:
        held = self._sessions.get(session_id)
        if held is None or held.owner != owner:
            raise ApiError(
                404,
                "session_not_found",
                f"no session {session_id!r} for this key; create one with POST /v1/sessions",
            )
        return held

    @contextlib.asynccontextmanager
    async def using(self, owner: str, session_id: str) -> AsyncIterator[HeldSession]:
        """The session, marked busy (the reaper leaves it alone) while the block runs."""
        held = self.get(owner, session_id)
        held.busy += 1
        held.last_used = time.monotonic()
        try:
            yield held
        finally:
            held.busy -= 1
            held.last_used = time.monotonic()

    async def remove(self, owner: str, session_id: str) -> None:
        held = self.get(owner, session_id)
        self._sessions.pop(session_id, None)
        await held.session.close()

    async def reap(self) -> list[str]:
        """Close sessions idle past their TTL; their ids."""
        now = time.monotonic()
        expired = [s for s in self._sessions.values() if not s.busy and now - s.last_used > s.ttl]
        for held in expired:
            self._sessions.pop(held.id, None)
        async with anyio.create_task_group() as group:
            for held in expired:
                group.start_soon(held.session.close)
        return [h.id for h in expired]

    async def reaper(self) -> None:
        while True:
            await anyio.sleep(REAP_INTERVAL)
            await self.reap()

    async def close_all(self) -> None:
        """Close every session; returns when they, and those a concurrent call is closing,
        are closed."""
        held = list(self._sessions.values())
        self._sessions.clear()
        with anyio.CancelScope(shield=True):
            self._closing += 1
            try:
                async with anyio.create_task_group() as group:
                    for h in held:
                        group.start_soon(h.session.close)
            finally:
                self._closing -= 1
            while self._closing:
                await anyio.sleep(0.05)

    def __len__(self) -> int:
        return len(self._sessions)


class OneShot:
    """A sandbox for one run: opened for it and closed after (a pool replaces this)."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.in_use: set[AsyncSandboxSession] = set()

    @contextlib.asynccontextmanager
    async def session(self, lang: str, memory: int | None) -> AsyncIterator[AsyncSandboxSession]:
        session = await open_session(self.settings, lang, memory=memory)
        async with self.lent(session):
            yield session

    @contextlib.asynccontextmanager
    async def lent(self, session: AsyncSandboxSession) -> AsyncIterator[None]:
        """Count `session` as in use (closed at shutdown) until the block ends; then close
        it (a pooled session goes back to its pool)."""
        self.in_use.add(session)
        try:
            yield
        finally:
            self.in_use.discard(session)
            await session.close()

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as group:
                for session in list(self.in_use):
                    group.start_soon(session.close)
