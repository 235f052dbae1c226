"""The Piston v2 endpoints with Piston's request and response shapes (what Piston clients send)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service_server import Running, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with running_server(tmp_path_factory.mktemp("piston")) as running:
        yield running


@pytest.fixture(scope="module")
def key(server: Running) -> str:
    return server.keys.create("piston")


def test_runtimes_shape(server: Running, key: str) -> None:
    with server.client(key) as http:
        runtimes = http.get("/api/v2/runtimes").json()
    python = next(r for r in runtimes if r["language"] == "python")
    assert set(python) == {"language", "version", "aliases"}
    assert "py" in python["aliases"]
    assert python["version"].count(".") == 2


def test_execute_shape_as_piston_clients_send_it(server: Running, key: str) -> None:
    request = {
        "language": "py",
        "version": "*",
        "files": [{"name": "main.py", "content": "import sys\nprint(input()*2)\nsys.exit(4)"}],
        "stdin": "ab\n",
        "args": [],
        "compile_timeout": 10000,
        "run_timeout": 3000,
        "compile_memory_limit": -1,
        "run_memory_limit": -1,
    }
    with server.client(key) as http:
        answer = http.post("/api/v2/execute", json=request)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["language"] == "python"
    assert body["run"] == {
        "stdout": "abab\n",
        "stderr": "",
        "output": "abab\n",
        "code": 4,
        "signal": None,
    }
    assert "compile" not in body


def test_args_reach_the_program(server: Running, key: str) -> None:
    request = {
        "language": "javascript",
        "version": "*",
        "files": [{"content": "console.log(JSON.stringify(process.argv.slice(2)))"}],
        "args": ["a b", "--c", ""],
    }
    with server.client(key) as http:
        body = http.post("/api/v2/execute", json=request).json()
    assert body["run"]["stdout"] == '["a b","--c",""]\n', body
    with server.client(key) as http:
        wrong = http.post("/api/v2/execute", json={**request, "args": "a"})
    assert wrong.status_code == 400, wrong.text


def test_extra_files_are_beside_the_program(server: Running, key: str) -> None:
    request = {
        "language": "python",
        "version": "3",
        "files": [
            {"content": "import helper\nprint(helper.X)"},
            {"name": "helper.py", "content": "X = 42"},
        ],
    }
    with server.client(key) as http:
        body = http.post("/api/v2/execute", json=request).json()
    assert body["run"]["stdout"] == "42\n", body


def test_timeout_is_sigkill(server: Running, key: str) -> None:
    request = {
        "language": "python",
        "version": "*",
        "files": [{"content": "import time\nprint('a', flush=True)\ntime.sleep(30)"}],
        "run_timeout": 500,
    }
    with server.client(key) as http:
        body = http.post("/api/v2/execute", json=request).json()
    assert body["run"]["signal"] == "SIGKILL"
    assert body["run"]["code"] is None
    assert body["run"]["stdout"] == "a\n"


def test_compile_warnings_are_in_the_compile_stage(server: Running, key: str) -> None:
    source = '#include <cstdio>\n#warning "look here"\nint main() { puts("ran"); }\n'
    request = {"language": "c++", "version": "*", "files": [{"content": source}]}
    with server.client(key) as http:
        body = http.post("/api/v2/execute", json=request).json()
    assert body["compile"]["code"] == 0, body
    assert "look here" in body["compile"]["stderr"]
    assert body["compile"]["output"] == body["compile"]["stderr"]
    assert body["run"]["stdout"] == "ran\n"
    assert "look here" not in body["run"]["stderr"]


def test_default_timeouts_are_cut_to_the_keys_limit(server: Running) -> None:
    token = server.keys.create("brief", {"max_timeout": 1})
    sleeper = {
        "language": "python",
        "version": "*",
        "files": [{"content": "import time\ntime.sleep(2.5)\nprint('late')"}],
    }
    with server.client(token) as http:
        cut = http.post("/api/v2/execute", json=sleeper).json()  # Piston's default: 3 s
        asked = http.post("/api/v2/execute", json={**sleeper, "run_timeout": 5000})
    assert cut["run"]["signal"] == "SIGKILL", cut
    assert cut["run"]["stdout"] == ""
    assert asked.status_code == 429
    assert "max_timeout" in asked.text


@pytest.mark.parametrize(
    ("request_body", "fragment"),
    [
        ({"language": "cobol", "version": "*", "files": [{"content": "x"}]}, "cobol-* runtime"),
        ({"language": "python", "version": "2.7", "files": [{"content": "x"}]}, "unknown"),
        ({"language": "python", "version": "*", "files": []}, "files"),
        ({"language": "python", "files": [{"content": "x"}]}, "version"),
        ({"language": "python", "version": "*", "files": [{"content": "x"}], "x": 1}, "x"),
        ({"language": "python", "version": "*", "files": [{"name": 1}]}, "content"),
    ],
)
def test_bad_input_is_400_with_message(
    server: Running, key: str, request_body: dict[str, object], fragment: str
) -> None:
    with server.client(key) as http:
        answer = http.post("/api/v2/execute", json=request_body)
        malformed = http.post("/api/v2/execute", content=b"{")
    assert answer.status_code == 400
    assert set(answer.json()) == {"message"}
    assert fragment in answer.json()["message"]
    assert malformed.status_code == 400
