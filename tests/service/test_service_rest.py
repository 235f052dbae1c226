"""The REST API against a real server and real sandboxes (embedded backend): sessions, runs as
JSON and as server-sent events, commands, files, isolation between keys, per-key limits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_sandbox.service.settings import KeyLimits, ServiceSettings
from service_server import Running, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    settings = ServiceSettings(
        backend="local", limits=KeyLimits(sessions=3, max_timeout=20, max_memory=1 << 30)
    )
    with running_server(tmp_path_factory.mktemp("rest"), settings) as running:
        yield running


@pytest.fixture(scope="module")
def alice(server: Running) -> str:
    return server.keys.create("alice")


@pytest.fixture(scope="module")
def mallory(server: Running) -> str:
    return server.keys.create("mallory")


def sse(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_one_shot_run_exact_exit_code(server: Running, alice: str) -> None:
    code = "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(7)"
    with server.client(alice) as http:
        answer = http.post("/v1/run", json={"lang": "python", "code": code, "stdin": "x"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["exit_code"] == 7
    assert body["stdout"] == "out\n"
    assert body["stderr"] == "err\n"
    assert body["verdict"] == "error"


def test_session_lifecycle_run_exec_files(server: Running, alice: str) -> None:
    with server.client(alice) as http:
        created = http.post("/v1/sessions", json={"lang": "python", "ttl": 60})
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        assert http.get(f"/v1/sessions/{sid}").json()["lang"] == "python"
        assert sid in [s["id"] for s in http.get("/v1/sessions").json()["sessions"]]
        first = http.post(f"/v1/sessions/{sid}/run", json={"code": "open('a.txt','w').write('hi')"})
        assert first.json()["exit_code"] == 0
        up = http.put(f"/v1/sessions/{sid}/files", params={"path": "in.bin"}, content=b"\x00\x01")
        assert up.status_code == 201, up.text
        listing = http.get(f"/v1/sessions/{sid}/dir").json()["entries"]
        assert {e["name"] for e in listing} >= {"a.txt", "in.bin"}
        down = http.get(f"/v1/sessions/{sid}/files", params={"path": "a.txt"})
        assert down.content == b"hi"
        missing = http.get(f"/v1/sessions/{sid}/files", params={"path": "nope.txt"})
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "file_not_found"
        ran = http.post(f"/v1/sessions/{sid}/exec", json={"command": ["cat", "in.bin"]})
        assert ran.json()["stdout"] == "\x00\x01"
        assert http.delete(f"/v1/sessions/{sid}").status_code == 204
        assert http.get(f"/v1/sessions/{sid}").status_code == 404


def test_streamed_run_sends_output_then_exact_exit_code(server: Running, alice: str) -> None:
    code = (
        "import sys, time\nprint('one', flush=True)\ntime.sleep(0.2)\n"
        "print('two', file=sys.stderr, flush=True)\nsys.exit(3)"
    )
    with server.client(alice) as http:
        answer = http.post("/v1/run", json={"lang": "python", "code": code, "stream": True})
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = sse(answer.text)
    names = [name for name, _ in events]
    assert names[-1] == "result"
    # chunks arrive as the program writes them (one line may come in pieces)
    assert "".join(data["text"] for name, data in events if name == "stdout") == "one\n"
    assert "".join(data["text"] for name, data in events if name == "stderr") == "two\n"
    assert names.index("stdout") < names.index("stderr") < names.index("result")
    assert events[-1][1]["exit_code"] == 3


def test_timeout_is_a_result_with_output_so_far(server: Running, alice: str) -> None:
    code = "import time\nprint('before', flush=True)\ntime.sleep(30)"
    with server.client(alice) as http:
        answer = http.post("/v1/run", json={"lang": "python", "code": code, "timeout": 1})
    body = answer.json()
    assert body["verdict"] == "timeout"
    assert body["stdout"] == "before\n"


def test_a_key_never_sees_runs_in_or_deletes_another_keys_session(
    server: Running, alice: str, mallory: str
) -> None:
    with server.client(alice) as owner, server.client(mallory) as other:
        sid = owner.post("/v1/sessions", json={"lang": "python"}).json()["id"]
        try:
            assert other.get(f"/v1/sessions/{sid}").status_code == 404
            assert sid not in [s["id"] for s in other.get("/v1/sessions").json()["sessions"]]
            assert other.post(f"/v1/sessions/{sid}/run", json={"code": "1"}).status_code == 404
            exec_ = other.post(f"/v1/sessions/{sid}/exec", json={"command": ["true"]})
            assert exec_.status_code == 404
            files = other.get(f"/v1/sessions/{sid}/files", params={"path": "x"})
            assert files.status_code == 404
            up = other.put(f"/v1/sessions/{sid}/files", params={"path": "x"}, content=b"1")
            assert up.status_code == 404
            assert other.delete(f"/v1/sessions/{sid}").status_code == 404
            assert owner.get(f"/v1/sessions/{sid}").status_code == 200  # still there
        finally:
            owner.delete(f"/v1/sessions/{sid}")


def test_limits_answer_429_with_retry_after(server: Running, tmp_path: Path) -> None:
    token = server.keys.create("limited")
    with server.client(token) as http:
        ids = [http.post("/v1/sessions", json={"lang": "python"}).json()["id"] for _ in range(3)]
        try:
            over = http.post("/v1/sessions", json={"lang": "python"})
            assert over.status_code == 429
            assert int(over.headers["retry-after"]) >= 1
            assert "sessions" in over.json()["error"]["message"]
            long = http.post(f"/v1/sessions/{ids[0]}/run", json={"code": "1", "timeout": 999})
            assert long.status_code == 429
            assert "max_timeout" in long.json()["error"]["message"]
            big = http.post("/v1/run", json={"lang": "python", "code": "1", "memory": 1 << 40})
            assert big.status_code == 429
        finally:
            for sid in ids:
                http.delete(f"/v1/sessions/{sid}")


def test_a_keys_own_limits_replace_the_servers(server: Running, alice: str) -> None:
    """Limits set for one key (also while the server runs) hold for it and for no other."""
    token = server.keys.create("small", {"sessions": 1, "max_timeout": 2})
    with server.client(token) as small, server.client(alice) as other:
        sid = small.post("/v1/sessions", json={"lang": "python"}).json()["id"]
        try:
            over = small.post("/v1/sessions", json={"lang": "python"})
            assert over.status_code == 429
            assert "1 sessions open" in over.json()["error"]["message"]
            long = small.post(f"/v1/sessions/{sid}/run", json={"code": "1", "timeout": 5})
            assert long.status_code == 429
            assert "limit of 2" in long.json()["error"]["message"]
            # No timeout asked: the server's default (30 s) is cut to the key's 2 s.
            slow = small.post(
                f"/v1/sessions/{sid}/run", json={"code": "import time; time.sleep(10)"}
            )
            assert slow.json()["verdict"] == "timeout", slow.text
            assert "after 2.0 s" in slow.json()["message"]
            assert other.post("/v1/run", json={"lang": "python", "code": "1", "timeout": 5})
            server.keys.set_limits("small", {"sessions": 2, "max_timeout": 10})
            assert small.post(
                f"/v1/sessions/{sid}/run", json={"code": "1", "timeout": 5}
            ).is_success
            second = small.post("/v1/sessions", json={"lang": "python"})
            assert second.status_code == 201, second.text
            small.delete(f"/v1/sessions/{second.json()['id']}")
        finally:
            small.delete(f"/v1/sessions/{sid}")


def test_runs_per_minute(tmp_path: Path) -> None:
    settings = ServiceSettings(backend="local", limits=KeyLimits(runs_per_minute=2))
    with running_server(tmp_path, settings) as server:
        token = server.keys.create("k")
        with server.client(token) as http:
            codes = [
                http.post("/v1/run", json={"lang": "python", "code": "1"}).status_code
                for _ in range(3)
            ]
            last = http.post("/v1/run", json={"lang": "python", "code": "1"})
    assert codes == [200, 200, 429]
    assert 1 <= int(last.headers["retry-after"]) <= 60


def test_idle_session_past_ttl_is_closed(server: Running, alice: str) -> None:
    with server.client(alice) as http:
        sid = http.post("/v1/sessions", json={"lang": "python", "ttl": 0.5}).json()["id"]
        held = server.service.sessions.get("alice", sid)
        deadline = time.monotonic() + 10
        while http.get(f"/v1/sessions/{sid}").status_code == 200:
            assert time.monotonic() < deadline, "the idle session was not closed"
            time.sleep(0.2)
    assert not held.session.is_open


def test_disconnect_mid_stream_kills_the_run(server: Running, alice: str, tmp_path: Path) -> None:
    with server.client(alice) as http:
        sid = http.post("/v1/sessions", json={"lang": "python"}).json()["id"]
        try:
            code = (
                "import time\nopen('beat','a').write('.')\nprint('started', flush=True)\n"
                "while True:\n    open('beat','a').write('.')\n    time.sleep(0.05)"
            )
            with http.stream(
                "POST", f"/v1/sessions/{sid}/run", json={"code": code, "stream": True}
            ) as answer:
                for line in answer.iter_lines():
                    if "started" in line:
                        break
            # the connection is closed: the run must be killed and the session free again
            deadline = time.monotonic() + 10
            while True:
                size = http.post(
                    f"/v1/sessions/{sid}/exec", json={"command": ["stat", "-c", "%s", "beat"]}
                )
                first = int(size.json()["stdout"])
                time.sleep(0.5)
                again = http.post(
                    f"/v1/sessions/{sid}/exec", json={"command": ["stat", "-c", "%s", "beat"]}
                )
                if int(again.json()["stdout"]) == first:
                    break
                assert time.monotonic() < deadline, "the run kept writing after the disconnect"
            assert server.service.sessions.get("alice", sid).busy == 0
        finally:
            http.delete(f"/v1/sessions/{sid}")


def test_32_runs_at_once_for_one_key(server: Running, alice: str) -> None:
    import concurrent.futures

    def one(i: int) -> httpx.Response:
        with server.client(alice) as http:
            return http.post("/v1/run", json={"lang": "python", "code": f"print({i})"})

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(one, range(32)))
    assert [a.status_code for a in answers] == [200] * 32
    assert sorted(int(a.json()["stdout"]) for a in answers) == list(range(32))


def test_a_sandbox_that_dies_fails_its_request_cleanly_others_go_on(
    server: Running, alice: str
) -> None:
    with server.client(alice) as http:
        doomed = http.post("/v1/sessions", json={"lang": "python"}).json()["id"]
        other = http.post("/v1/sessions", json={"lang": "python"}).json()["id"]
        try:
            # the sandbox is torn down under the session (as when its engine loses it)
            server.service.sessions.get("alice", doomed).session.sync._teardown()
            failed = http.post(f"/v1/sessions/{doomed}/run", json={"code": "print(1)"})
            assert 400 <= failed.status_code < 600
            assert failed.json()["error"]["code"]
            fine = http.post(f"/v1/sessions/{other}/run", json={"code": "print(2)"})
            assert fine.json()["stdout"] == "2\n"
        finally:
            http.delete(f"/v1/sessions/{doomed}")
            http.delete(f"/v1/sessions/{other}")


def test_install_and_plots_off(server: Running, alice: str) -> None:
    with server.client(alice) as http:
        sid = http.post("/v1/sessions", json={"lang": "python"}).json()["id"]
        try:
            bad = http.post(f"/v1/sessions/{sid}/install", json={"libraries": ["--index-url=x"]})
            assert bad.status_code == 400
            assert bad.json()["error"]["code"] == "invalid_package"
            plots = http.get(f"/v1/sessions/{sid}/plots")
            assert plots.status_code == 400
            assert "plots: true" in plots.json()["error"]["message"]
        finally:
            http.delete(f"/v1/sessions/{sid}")


@pytest.mark.parametrize("piston", [False, True])
def test_a_client_that_gives_up_on_a_json_answer_kills_its_run(
    server: Running, alice: str, piston: bool
) -> None:
    marker = "7654.321"
    code = f"import subprocess\nsubprocess.run(['sleep', '{marker}'])"
    if piston:
        path = "/api/v2/execute"
        body: dict[str, Any] = {
            "language": "python", "version": "*", "files": [{"content": code}],
            "run_timeout": 15000,
        }  # fmt: skip
    else:
        path, body = "/v1/run", {"lang": "python", "code": code, "timeout": 20}
    with server.client(alice, timeout=3) as http, pytest.raises(httpx.ReadTimeout):
        http.post(path, json=body)
    deadline = time.monotonic() + 10
    while sleeping(marker):
        assert time.monotonic() < deadline, "the run went on after its client left"
        time.sleep(0.1)


def sleeping(marker: str) -> bool:
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes() == (
                b"sleep\0" + marker.encode() + b"\0"
            ):
                return True
        except OSError:
            continue
    return False


def test_stream_ends_with_an_error_event_and_upload_over_the_limit_is_413(
    server: Running, alice: str
) -> None:
    with server.client(alice) as http:
        sid = http.post("/v1/sessions", json={"lang": "python"}).json()["id"]
        try:
            big = http.put(
                f"/v1/sessions/{sid}/files", params={"path": "big"}, content=b"x" * (2 << 20)
            )
            assert big.status_code == 413
            server.service.sessions.get("alice", sid).session.sync._teardown()
            answer = http.post(f"/v1/sessions/{sid}/run", json={"code": "1", "stream": True})
            assert answer.status_code == 200
            last = sse(answer.text)[-1]
            assert last[0] == "error"
            assert last[1]["code"]
            assert last[1]["message"]
        finally:
            http.delete(f"/v1/sessions/{sid}")
