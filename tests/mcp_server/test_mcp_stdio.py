"""The MCP server over stdio, driven by the `mcp` SDK's own client against the real command
(a child process): tools, resource, plots as image content, sessions, limits, errors."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import anyio
import pytest
from mcp import Client, types

from llm_sandbox.layout import LABEL
from mcp_support import PNG_MAGIC, SRC, answer, error_text, module_server, server_env, stdio
from support import IN_CI

pytestmark = pytest.mark.timeout(300)

TOOLS = {
    "execute_code",
    "get_supported_languages",
    "get_language_details",
    "create_session",
    "run_in_session",
    "upload_file",
    "download_file",
    "list_sessions",
    "close_session",
}


def test_module_entry_point_runs_code_and_lists_tools() -> None:
    async def main() -> None:
        async with Client(module_server()) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(tools) == TOOLS
            schema = tools["execute_code"].input_schema
            assert schema["required"] == ["code"]
            assert {"code", "language", "libraries", "timeout"} <= set(schema["properties"])
            result = answer(await client.call_tool("execute_code", {"code": "print(1)"}))
            assert result["stdout"] == "1\n"
            assert result["exit_code"] == 0
            assert result["verdict"] == "ok"
            failed = answer(
                await client.call_tool(
                    "execute_code", {"code": "import sys; sys.exit(3)", "language": "Python"}
                )
            )
            assert failed["exit_code"] == 3  # the program's failure is a result, not an error
            languages = answer(await client.call_tool("get_supported_languages", {}))
            assert "python" in languages
            assert "javascript" in languages
            details = answer(await client.call_tool("get_language_details", {"language": "R"}))
            assert details["language"] == "r"
            assert details["visualization_support"] is True
            resource = await client.read_resource("sandbox://languages")
            content = resource.contents[0]
            assert isinstance(content, types.TextResourceContents)
            assert json.loads(content.text)["python"]["interactive"] is True

    anyio.run(main)


def test_plot_comes_back_as_image_content() -> None:
    code = (
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [3, 1, 2])\nplt.show()\nprint('drawn')\n"
    )

    async def main() -> None:
        async with Client(module_server()) as client:
            result = await client.call_tool("execute_code", {"code": code, "timeout": 60})
            assert not result.is_error, result.content
            images = [c for c in result.content if isinstance(c, types.ImageContent)]
            assert len(images) == 1
            assert images[0].mime_type == "image/png"
            assert base64.b64decode(images[0].data).startswith(PNG_MAGIC)
            assert answer(result)["stdout"] == "drawn\n"

    anyio.run(main)


def test_limits_and_errors_are_tool_errors_a_person_can_act_on() -> None:
    async def main() -> None:
        async with Client(module_server(LLM_SANDBOX_SERVICE_LIMITS_MAX_TIMEOUT="10")) as client:
            over = error_text(
                await client.call_tool("execute_code", {"code": "print(1)", "timeout": 3600})
            )
            assert "3600" in over
            assert "max_timeout" in over
            assert "10.0 s" in over
            killed = error_text(
                await client.call_tool(
                    "execute_code",
                    {
                        "code": "import time\nprint('start', flush=True)\ntime.sleep(60)",
                        "timeout": 3,
                    },
                )
            )
            assert "timeout" in killed.lower()
            assert "stdout so far" in killed  # says what the program printed (may be empty)
            unknown = error_text(
                await client.call_tool("execute_code", {"code": "x", "language": "cobol"})
            )
            assert "cobol" in unknown
            assert "python" in unknown
            missing = error_text(
                await client.call_tool("run_in_session", {"session_id": "nope", "code": "1"})
            )
            assert "nope" in missing
            assert "create" in missing
            bad = error_text(
                await client.call_tool(
                    "upload_file",
                    {"session_id": "nope", "path": "a", "content": "%%", "is_base64": True},
                )
            )
            assert "base64" in bad

    anyio.run(main)


def test_stateful_session_keeps_files_and_kernel_state() -> None:
    async def main() -> None:
        async with Client(module_server()) as client:
            made = answer(await client.call_tool("create_session", {"language": "python"}))
            sid = made["session_id"]
            uploaded = await client.call_tool(
                "upload_file", {"session_id": sid, "path": "data.txt", "content": "héllo"}
            )
            assert answer(uploaded)["size"] == len("héllo".encode())
            ran = await client.call_tool(
                "run_in_session",
                {
                    "session_id": sid,
                    "code": "t = open('data.txt').read()\n"
                    "open('out.bin', 'wb').write(b'\\xff' + t.encode())\n"
                    "print(t.upper())",
                },
            )
            assert answer(ran)["stdout"] == "HÉLLO\n"
            text = answer(
                await client.call_tool("download_file", {"session_id": sid, "path": "data.txt"})
            )
            assert text["text"] == "héllo"
            binary = answer(
                await client.call_tool("download_file", {"session_id": sid, "path": "out.bin"})
            )
            assert base64.b64decode(binary["base64"]) == b"\xff" + "héllo".encode()

            cells = answer(
                await client.call_tool(
                    "create_session", {"language": "python", "interactive": True}
                )
            )
            cid = cells["session_id"]
            await client.call_tool("run_in_session", {"session_id": cid, "code": "x = 41"})
            again = await client.call_tool(
                "run_in_session", {"session_id": cid, "code": "print(x + 1)"}
            )
            assert answer(again)["stdout"] == "42\n"

            listed = answer(await client.call_tool("list_sessions", {}))
            assert {s["id"] for s in listed} == {sid, cid}
            for session_id in (sid, cid):
                closed = await client.call_tool("close_session", {"session_id": session_id})
                assert answer(closed) == {"closed": session_id}
            assert answer(await client.call_tool("list_sessions", {})) == []
            gone = error_text(
                await client.call_tool("run_in_session", {"session_id": sid, "code": "1"})
            )
            assert sid in gone

    anyio.run(main)


def test_idle_session_is_closed_after_its_ttl() -> None:
    """A client that stops calling leaves nothing: the reaper closes its idle sessions."""

    async def main() -> None:
        async with Client(module_server(LLM_SANDBOX_SERVICE_SESSION_TTL="1")) as client:
            sid = answer(await client.call_tool("create_session", {}))["session_id"]
            with anyio.fail_after(60):
                while answer(await client.call_tool("list_sessions", {})):
                    await anyio.sleep(0.5)
            gone = error_text(
                await client.call_tool("run_in_session", {"session_id": sid, "code": "1"})
            )
            assert sid in gone

    anyio.run(main)


def test_cli_subcommand_serves_the_same_tools() -> None:
    async def main() -> None:
        async with Client(stdio("-m", "llm_sandbox", "mcp", "--backend", "local")) as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            result = answer(await client.call_tool("execute_code", {"code": "print(2)"}))
            assert result["stdout"] == "2\n"

    anyio.run(main)


def test_console_script() -> None:
    project = tomllib.loads((Path(SRC).parent / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["llm-sandbox-mcp"] == "llm_sandbox.mcp_server.server:main"
    script = Path(sys.executable).parent / "llm-sandbox-mcp"
    if not script.exists():
        if IN_CI:
            pytest.fail(f"{script} is missing: install the package (pip install -e '.[mcp]')")
        pytest.skip("the console script is not installed in this environment")

    async def main() -> None:
        async with Client(stdio(command=str(script))) as client:
            result = answer(await client.call_tool("execute_code", {"code": "print(3)"}))
            assert result["stdout"] == "3\n"

    anyio.run(main)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BACKEND": "docker", "SANDBOX_CPUS": "lots"}, "SANDBOX_CPUS"),
        ({"BACKEND": "docker", "SANDBOX_CPU_COUNT": "1.5"}, "SANDBOX_CPU_COUNT"),
        ({"BACKEND": "docker", "SANDBOX_READ_ONLY": "maybe"}, "SANDBOX_READ_ONLY"),
        ({"BACKEND": "local", "SANDBOX_MEMORY": "512m"}, "BACKEND=docker"),
        ({"LLM_SANDBOX_SERVICE_NOPE": "1"}, "nope"),
    ],
)
def test_bad_environment_stops_the_server_with_a_message(env: dict[str, str], named: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "llm_sandbox.mcp_server.server"],
        env={**os.environ, **server_env(**env)},
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert named in done.stderr
    assert "Traceback" not in done.stderr


def _sandbox_containers(label: str = f"label={LABEL}") -> set[str]:
    listed = subprocess.run(
        ["docker", "ps", "-a", "-q", "--no-trunc", "--filter", label],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(listed.stdout.split())


def _need_docker() -> None:
    if (
        shutil.which("docker") is None
        or subprocess.run(
            ["docker", "info"], capture_output=True, timeout=60, check=False
        ).returncode
    ):
        if IN_CI:
            pytest.fail("docker is not running: scripts/test.sh starts it")
        pytest.skip("docker is not running")


def test_a_client_that_goes_away_leaves_no_sandbox() -> None:
    """Docker (its containers can be counted from outside): the client disconnects with a
    session open; the server sees stdin close (then SIGTERM), removes the container, exits."""
    if (
        shutil.which("docker") is None
        or subprocess.run(
            ["docker", "info"], capture_output=True, timeout=60, check=False
        ).returncode
    ):
        if IN_CI:
            pytest.fail("docker is not running: scripts/test.sh starts it")
        pytest.skip("docker is not running")
    before = _sandbox_containers()

    async def main() -> set[str]:
        async with Client(module_server(BACKEND="docker")) as client:
            answer(await client.call_tool("create_session", {}))
            return _sandbox_containers() - before

    opened = anyio.run(main)
    assert opened
    deadline = time.monotonic() + 120
    while opened & _sandbox_containers():
        assert time.monotonic() < deadline, "the server left its containers behind"
        time.sleep(0.5)


def test_sigterm_closes_every_sandbox_before_exit() -> None:
    """MCP clients SIGTERM a server that does not exit when stdin closes: it still removes its
    containers. Spoken as raw JSON-RPC lines, so the test holds the process and its signal."""
    _need_docker()
    server = subprocess.Popen(
        [sys.executable, "-m", "llm_sandbox.mcp_server.server"],
        env={**os.environ, **server_env(BACKEND="docker")},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    try:

        def call(message: dict[str, object]) -> dict[str, object]:
            server.stdin.write(json.dumps(message) + "\n")  # type: ignore[union-attr]
            server.stdin.flush()  # type: ignore[union-attr]
            reply: dict[str, object] = json.loads(server.stdout.readline())  # type: ignore[union-attr]
            return reply

        hello = {"protocolVersion": "2025-06-18", "capabilities": {}}
        hello["clientInfo"] = {"name": "test", "version": "1"}
        assert "result" in call(
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}
        )
        server.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        server.stdin.write("\n")
        made = call(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "create_session", "arguments": {}},
            }
        )
        assert "result" in made
        owned = f"label={LABEL}.pid={server.pid}"
        assert _sandbox_containers(owned)
        server.send_signal(signal.SIGTERM)
        assert server.wait(120) == 0
        assert _sandbox_containers(owned) == set()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(30)
        server.stdin.close()
        server.stdout.close()
