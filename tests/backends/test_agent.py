"""The container run agent's pure parts: end markers and the generated script."""

from __future__ import annotations

import shlex

import pytest

from llm_sandbox.backends.agent import protocol as agent
from llm_sandbox.backends.agent.host import _MarkerSplitter


def test_output_before_the_marker_is_the_programs() -> None:
    splitter = _MarkerSplitter(agent.marker("n1"))
    assert splitter.feed(b"hello") == b"hello"
    assert splitter.feed(b" world\0llm-sandbox-end:n1:3\0") == b" world"
    assert splitter.exit_code == 3


def test_marker_split_across_chunks_is_held_back_then_recognised() -> None:
    splitter = _MarkerSplitter(agent.marker("abc"))
    data = b"out\0llm-sandbox-end:abc:42\0"
    received = b"".join(splitter.feed(data[i : i + 1]) for i in range(len(data)))
    assert received == b"out"
    assert splitter.exit_code == 42


def test_nul_bytes_and_foreign_markers_are_output() -> None:
    splitter = _MarkerSplitter(agent.marker("right"))
    fake = b"\0\0llm-sandbox-end:wrong:0\0 tail"
    assert splitter.feed(fake) == fake
    assert splitter.exit_code is None


def test_script_quotes_everything_from_the_caller() -> None:
    script = agent.run_script(
        ["echo", "$(id); rm -rf /", "a b"],
        files=[("/opt/x y/f'1", 3)],
        stdin_size=2,
        stdin_path="/opt/llm-sandbox/stdin",
        env={"K": "v; reboot"},
        cwd="/sandbox",
    )
    last = script.strip().splitlines()[-1]
    assert shlex.split(last)[:4] == ["exec", "echo", "$(id); rm -rf /", "a b"]
    assert "export K='v; reboot'" in script
    assert "head -c 3 > '/opt/x y/f'\"'\"'1'" in script


@pytest.mark.parametrize("nonce", [agent.new_nonce() for _ in range(3)])
def test_nonces_are_unguessable(nonce: str) -> None:
    assert len(nonce) == 32
