"""Output capping and decoding, independent of any backend."""

from __future__ import annotations

from llm_sandbox.output import CappedStream
from llm_sandbox.results import ConsoleOutput, Verdict


def test_keeps_up_to_the_limit_and_counts_the_rest() -> None:
    stream = CappedStream("stdout", 10)
    for _ in range(1000):
        stream.feed(b"abcdefgh")
    assert stream.text() == "abcdefghab"
    assert stream.truncated
    assert stream.total_bytes == 8000


def test_not_truncated_at_exactly_the_limit() -> None:
    stream = CappedStream("stdout", 4)
    stream.feed(b"abcd")
    assert not stream.truncated


def test_callback_gets_characters_split_across_chunks_intact() -> None:
    seen: list[str] = []
    stream = CappedStream("stdout", 100, seen.append)
    data = "é✓".encode()
    for byte in data:
        stream.feed(bytes([byte]))
    stream.finish()
    assert "".join(seen) == "é✓"
    assert stream.text() == "é✓"


def test_invalid_utf8_is_replaced() -> None:
    stream = CappedStream("stdout", 100)
    stream.feed(b"a\xffb")
    assert stream.text() == "a\ufffdb"


def test_callback_that_raises_is_dropped_not_fatal() -> None:
    calls: list[str] = []

    def bad(text: str) -> None:
        calls.append(text)
        raise ValueError("boom")

    stream = CappedStream("stdout", 100, bad)
    stream.feed(b"one")
    stream.feed(b"two")
    assert calls == ["one"]
    assert stream.text() == "onetwo"


def test_verdicts() -> None:
    assert ConsoleOutput(exit_code=0).verdict is Verdict.OK
    assert ConsoleOutput(exit_code=2).verdict is Verdict.ERROR
    assert ConsoleOutput(exit_code=137, out_of_memory=True).verdict is Verdict.OUT_OF_MEMORY
    assert ConsoleOutput(exit_code=1, compile_failed=True).verdict is Verdict.COMPILE_ERROR
    assert not ConsoleOutput(exit_code=0, out_of_memory=True).success()
    assert ConsoleOutput(stdout_truncated=True).truncated
