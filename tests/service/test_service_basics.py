"""The server: health, readiness, schema and docs, keys and auth, body limits, strict bodies."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_sandbox.cli import main
from llm_sandbox.exceptions import ConfigurationError
from llm_sandbox.service import app as app_module
from llm_sandbox.service.keys import KeyStore
from llm_sandbox.service.settings import KeyLimits, ServiceSettings, load_settings
from service_server import Running, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with running_server(tmp_path_factory.mktemp("service")) as running:
        yield running


@pytest.fixture(scope="module")
def key(server: Running) -> str:
    return server.keys.create("alice")


def test_health_needs_no_key(server: Running) -> None:
    with server.client() as http:
        assert http.get("/healthz").json() == {"status": "ok"}


def test_ready_opens_a_sandbox_once_for_many_probes(server: Running) -> None:
    import concurrent.futures

    opened: list[object] = []
    real = app_module.open_session  # type: ignore[attr-defined]  # the name the probe calls

    async def counting(*args: Any, **kwargs: Any) -> Any:
        opened.append(args)
        return await real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app_module, "open_session", counting)
        patch.setattr(server.app.state, "ready", app_module.ReadyProbe())
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: httpx.get(server.url + "/readyz"), range(16)))
    assert {a.status_code for a in answers} == {200}
    assert answers[0].json()["status"] == "ready"
    assert len(opened) == 1  # a public endpoint cannot make the server open many sandboxes


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_unreachable_backend_is_503_naming_the_reason(tmp_path: Path) -> None:
    settings = ServiceSettings(backend="docker")
    env = pytest.MonkeyPatch()
    env.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    try:
        with running_server(tmp_path, settings) as server:
            token = server.keys.create("k")
            with server.client(token) as http:
                ready = http.get("/readyz")
                run = http.post("/v1/run", json={"lang": "python", "code": "print(1)"})
    finally:
        env.undo()
        gc.collect()  # the docker SDK leaves the socket of a failed connection to the collector
    assert ready.status_code == 503
    assert run.status_code == 503
    assert run.json()["error"]["code"] == "backend_unavailable"
    assert "docker" in run.json()["error"]["message"].lower()


def test_schema_and_docs(server: Running) -> None:
    with server.client() as http:
        spec = http.get("/openapi.json").json()
        page = http.get("/docs")
    assert spec["openapi"].startswith("3.")
    assert "/api/v2/execute" in spec["paths"]
    assert "/v1/sessions/{id}/run" in spec["paths"]
    assert spec["components"]["schemas"]["Run"]["additionalProperties"] is False
    assert page.status_code == 200
    assert "/v1/sessions/{id}/run" in page.text
    assert "<script" not in page.text  # nothing fetched from a CDN


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/languages"),
        ("POST", "/v1/run"),
        ("POST", "/v1/sessions"),
        ("GET", "/v1/sessions"),
        ("GET", "/v1/sessions/ses_x"),
        ("DELETE", "/v1/sessions/ses_x"),
        ("POST", "/v1/sessions/ses_x/run"),
        ("GET", "/api/v2/runtimes"),
        ("POST", "/api/v2/execute"),
    ],
)
def test_every_endpoint_but_health_needs_a_key(server: Running, method: str, path: str) -> None:
    with server.client() as http:
        missing = http.request(method, path, json={})
        wrong = http.request(method, path, json={}, headers={"Authorization": "Bearer lsk_forged"})
    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"


def test_revoked_key_stops_working(server: Running) -> None:
    token = server.keys.create("short-lived")
    with server.client(token) as http:
        assert http.get("/v1/languages").status_code == 200
        server.keys.revoke("short-lived")
        assert http.get("/v1/languages").status_code == 401


def test_body_over_the_limit_is_413(server: Running, key: str) -> None:
    code = "x = '" + "a" * (1024 * 1024) + "'"
    with server.client(key) as http:
        answer = http.post("/v1/run", json={"lang": "python", "code": code})
        chunked = http.post(
            "/v1/run", content=iter([b'{"lang": "python", "code": "', b"a" * 1_100_000, b'"}'])
        )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "body_too_large"
    assert chunked.status_code == 413


def test_malformed_json_and_unknown_fields_are_422(server: Running, key: str) -> None:
    with server.client(key) as http:
        bad = http.post("/v1/run", content=b"{nope", headers={"content-type": "application/json"})
        unknown = http.post("/v1/run", json={"lang": "python", "code": "1", "colour": "red"})
        wrong_type = http.post("/v1/run", json={"lang": "python", "code": 1})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "malformed_json"
    assert unknown.status_code == 422
    assert "colour" in unknown.json()["error"]["message"]
    assert wrong_type.status_code == 422


def test_unknown_language_is_400_listing_languages(server: Running, key: str) -> None:
    with server.client(key) as http:
        answer = http.post("/v1/run", json={"lang": "cobol", "code": "1"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "unknown_language"
    assert "python" in answer.json()["error"]["message"]


def test_keys_stored_hashed_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys_file = tmp_path / "keys.json"
    assert main(["keys", "--keys", str(keys_file), "create", "bob"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert token.startswith("lsk_")
    assert len(token) > 40
    stored = keys_file.read_text()
    assert token not in stored
    assert keys_file.stat().st_mode & 0o077 == 0
    assert KeyStore(keys_file).verify(token) == "bob"
    assert KeyStore(keys_file).verify(token + "x") is None
    assert main(["keys", "--keys", str(keys_file), "list"]) == 0
    assert "bob" in capsys.readouterr().out
    assert main(["keys", "--keys", str(keys_file), "create", "bob"]) != 0  # exists
    assert main(["keys", "--keys", str(keys_file), "revoke", "bob"]) == 0
    assert KeyStore(keys_file).verify(token) is None


def test_keys_with_limits_of_their_own(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys_file = tmp_path / "keys.json"
    cli = ["keys", "--keys", str(keys_file)]
    assert main([*cli, "create", "carol", "--limit", "sessions=2", "--limit", "max_memory=1g"]) == 0
    capsys.readouterr()
    assert KeyStore(keys_file).limits_of("carol") == {"sessions": 2, "max_memory": 1 << 30}
    assert main([*cli, "limits", "carol", "--limit", "max_timeout=5"]) == 0
    assert "max_timeout=5" in capsys.readouterr().out
    assert KeyStore(keys_file).limits_of("carol") == {
        "sessions": 2,
        "max_memory": 1 << 30,
        "max_timeout": 5.0,
    }
    assert main([*cli, "list"]) == 0
    assert "sessions=2" in capsys.readouterr().out
    for bad, message in (
        (["--limit", "colour=red"], "unknown service setting"),
        (["--limit", "sessions=-1"], "must not be negative"),
        (["--limit", "sessions"], "is not NAME=VALUE"),
    ):
        assert main([*cli, "limits", "carol", *bad]) != 0
        assert message in capsys.readouterr().err
    assert main([*cli, "limits", "dave"]) != 0
    assert "no key named 'dave'" in capsys.readouterr().err
    assert main([*cli, "limits", "carol", "--replace"]) == 0
    assert KeyStore(keys_file).limits_of("carol") == {}
    assert KeyStore(keys_file).limits_of("nobody") == {}


def test_settings_from_file_and_environment(tmp_path: Path) -> None:
    toml = tmp_path / "service.toml"
    toml.write_text('backend = "local"\nbody_limit = 2048\n[limits]\nsessions = 3\n')
    settings = load_settings(toml, {"LLM_SANDBOX_SERVICE_LIMITS_RUNS_PER_MINUTE": "7"})
    assert settings.backend == "local"
    assert settings.body_limit == 2048
    assert settings.limits == KeyLimits(sessions=3, runs_per_minute=7)
    js = tmp_path / "service.json"
    js.write_text(json.dumps({"session_ttl": 5}))
    assert load_settings(js, {}).session_ttl == 5.0
    with pytest.raises(ConfigurationError, match="unknown service setting"):
        load_settings(None, {"LLM_SANDBOX_SERVICE_BODYLIMIT": "1"})
    with pytest.raises(ConfigurationError, match="must be a int"):
        load_settings(None, {"LLM_SANDBOX_SERVICE_BODY_LIMIT": "big"})


def test_default_limits_allow_32_runs_at_once() -> None:
    limits = KeyLimits()
    assert limits.concurrent_runs >= 32
    assert limits.sessions >= 32
    assert limits.runs_per_minute >= 32


def test_serve_with_a_bad_config_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "service.toml"
    bad.write_text("colour = 'red'\n")
    assert main(["serve", "--config", str(bad)]) == 125
    assert "unknown service setting(s) colour" in capsys.readouterr().err
    assert main(["serve", "--config", str(tmp_path / "missing.toml")]) == 125
    assert "cannot read the service config" in capsys.readouterr().err
