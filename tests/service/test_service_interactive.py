"""Interactive sessions over HTTP: cells keep state, rich results stream as `display` events,
a restart clears the state; on a real kernel (embedded backend: the host's node)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from service_server import Running, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with running_server(tmp_path_factory.mktemp("interactive")) as running:
        yield running


def test_cells_keep_state_stream_results_and_restart(server: Running) -> None:
    token = server.keys.create("cells")
    with server.client(token) as http:
        created = http.post("/v1/sessions", json={"lang": "javascript", "interactive": True})
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        try:
            run = f"/v1/sessions/{sid}/run"
            assert http.post(run, json={"code": "let x = 20"}).json()["exit_code"] == 0
            value = http.post(run, json={"code": "x * 2 + 2"}).json()
            assert value["results"][0]["text/plain"] == "42"
            streamed = http.post(run, json={"code": "console.log('p')\nx + 1", "stream": True})
            events = [
                (block.split("\n")[0][7:], json.loads(block.split("\n")[1][6:]))
                for block in streamed.text.strip().split("\n\n")
            ]
            names = [name for name, _ in events]
            assert "display" in names
            assert names[-1] == "result"
            assert events[names.index("display")][1]["text/plain"] == "21"
            failed = http.post(run, json={"code": "null.f()"}).json()
            assert failed["exit_code"] == 1
            assert failed["error"]["name"] == "TypeError"
            assert http.post(f"/v1/sessions/{sid}/restart").status_code == 200
            gone = http.post(run, json={"code": "typeof x"}).json()
            assert gone["results"][0]["text/plain"] == "'undefined'"
            plain = http.post("/v1/sessions", json={"lang": "python"}).json()["id"]
            refused = http.post(f"/v1/sessions/{plain}/restart")
            assert refused.status_code == 400
            http.delete(f"/v1/sessions/{plain}")
        finally:
            http.delete(f"/v1/sessions/{sid}")
