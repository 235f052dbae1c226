"""Sessions that borrow a pooled sandbox, on the poolable test double: the previous
generation's ways of making them, which options they take, and giving the sandbox back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from llm_sandbox import ArtifactSandboxSession, SandboxSession, create_session
from llm_sandbox.exceptions import ConfigurationError, DuplicateClientError, SandboxTimeoutError
from llm_sandbox.pool import (
    ArtifactPooledSandboxSession,
    ContainerPoolManager,
    ContainerState,
    PoolConfig,
    PooledSandboxSession,
    create_pool_manager,
)
from llm_sandbox.pool.exceptions import SessionNotOpenError
from pool_double import Behaviour


@pytest.fixture
def pool(behaviour: Behaviour) -> Iterator[ContainerPoolManager]:
    with create_pool_manager(
        backend="fakepool", config=PoolConfig(max_pool_size=2), workdir="/sandbox"
    ) as pool:
        yield pool


def test_sandbox_session_with_pool_borrows_and_gives_back(pool: ContainerPoolManager) -> None:
    session = SandboxSession(pool=pool, lang="python", verbose=False)
    assert isinstance(session, PooledSandboxSession)
    with session:
        assert session.run("out hello").stdout == "hello\n"
        lease = session.pooled_container
        assert lease is not None
        assert lease.state is ContainerState.BUSY
        assert session.backend_session is session
    assert lease.state in (ContainerState.RESETTING, ContainerState.IDLE)
    assert session.pooled_container is None
    with PooledSandboxSession(pool) as again:
        assert again.run("out again").stdout == "again\n"
    assert pool.get_stats()["created"] == 1


def test_the_other_constructors(pool: ContainerPoolManager) -> None:
    assert isinstance(SandboxSession("python", pool=pool), PooledSandboxSession)
    assert isinstance(create_session("fakepool", pool), PooledSandboxSession)
    artifact = ArtifactSandboxSession(pool=pool, enable_plotting=False)
    assert isinstance(artifact, ArtifactPooledSandboxSession)
    assert artifact.enable_plotting is False
    assert isinstance(ArtifactPooledSandboxSession(pool_manager=pool), ArtifactSandboxSession)


def test_before_open_the_old_error_is_raised(pool: ContainerPoolManager) -> None:
    session = PooledSandboxSession(pool)
    with pytest.raises(SessionNotOpenError):
        session.backend_session  # noqa: B018
    with pytest.raises(SessionNotOpenError):
        session.run("out x")


def test_client_is_refused_before_anything_is_borrowed(pool: ContainerPoolManager) -> None:
    with pytest.raises(DuplicateClientError, match="create_pool_manager"):
        PooledSandboxSession(pool, client=object())
    assert pool.get_stats()["acquisitions"] == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lang": "javascript"}, "differs from the pool's"),
        ({"backend": "docker"}, "differs from the pool's"),
        ({"network": True}, "belongs to the pool's sandboxes"),
        ({"libraries": ["numpy"]}, "belongs to the pool's sandboxes"),
        ({"workdir": "/elsewhere"}, "differs from the pool's"),
    ],
)
def test_sandbox_options_belong_to_the_pool(
    pool: ContainerPoolManager, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PooledSandboxSession(pool, **options)  # type: ignore[arg-type]


def test_options_the_previous_generation_ignored_are_accepted_when_they_agree(
    pool: ContainerPoolManager,
) -> None:
    session = PooledSandboxSession(pool, lang="python", workdir="/sandbox", image=None)
    assert session.config.workdir == "/sandbox"


def test_an_expired_session_gives_its_sandbox_back(pool: ContainerPoolManager) -> None:
    with PooledSandboxSession(pool, session_timeout=0.2) as session:
        lease = session.pooled_container
        assert lease is not None
        time.sleep(0.3)
        with pytest.raises(SandboxTimeoutError, match="expired"):
            session.run("out x")
        assert lease.state is not ContainerState.BUSY
    assert pool.acquire() is lease
