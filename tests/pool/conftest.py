from __future__ import annotations

from collections.abc import Iterator

import pytest

import pool_double
from llm_sandbox.backends.registry import BackendCapabilities, register_backend, unregister_backend
from llm_sandbox.pool import manager


@pytest.fixture
def behaviour(monkeypatch: pytest.MonkeyPatch) -> Iterator[pool_double.Behaviour]:
    """The "fakepool" backend registered, with fresh behaviour, and a fast upkeep tick."""
    fresh = pool_double.Behaviour()
    monkeypatch.setattr(pool_double, "BEHAVIOUR", fresh)
    monkeypatch.setattr(manager, "UPKEEP_TICK", 0.02)
    monkeypatch.setattr(manager, "RETRY_AFTER_FAILURE", 0.1)
    register_backend(
        "fakepool", pool_double.PoolBackend, capabilities=BackendCapabilities(pooling=True)
    )
    yield fresh
    unregister_backend("fakepool")
