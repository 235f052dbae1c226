"""One-shot runs and Piston from a warm pool (`pool_size` > 0), on real sandboxes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm_sandbox.service.pooled import PooledOneShot
from llm_sandbox.service.settings import ServiceSettings
from service_server import Running, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    settings = ServiceSettings(backend="local", pool_size=2)
    with running_server(tmp_path_factory.mktemp("pool"), settings) as running:
        yield running


@pytest.fixture(scope="module")
def key(server: Running) -> str:
    return server.keys.create("pooled")


def test_runs_borrow_wiped_sandboxes_from_the_pool(server: Running, key: str) -> None:
    assert isinstance(server.service.oneshot, PooledOneShot)
    with server.client(key) as http:
        first = http.post(
            "/v1/run", json={"lang": "python", "code": "open('left.txt', 'w').write('secret')"}
        )
        assert first.status_code == 200, first.text
        for _ in range(4):  # every sandbox of the pool has been used at least once
            seen = http.post(
                "/v1/run",
                json={"lang": "python", "code": "import os\nprint(os.path.exists('left.txt'))"},
            )
            assert seen.json()["stdout"] == "False\n"
        piston = http.post(
            "/api/v2/execute",
            json={"language": "python", "version": "*", "files": [{"content": "print(5)"}]},
        )
        assert piston.json()["run"]["stdout"] == "5\n"
    pool = server.service.oneshot._pools["python"]
    assert len(list(pool.containers())) <= 3  # reused, not one sandbox per request


def test_other_memory_gets_a_fresh_sandbox(server: Running, key: str) -> None:
    with server.client(key) as http:
        answer = http.post(
            "/v1/run", json={"lang": "python", "code": "print(1)", "memory": 256 * 1024 * 1024}
        )
    assert answer.json()["stdout"] == "1\n"
