"""The wire protocol, pure: requests, frames, and a parser that survives hostile output."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Mapping

import pytest

from llm_sandbox.kernels.protocol import (
    CHUNK_MAX,
    FRAME_MAX,
    MAGIC,
    Event,
    Garbled,
    Message,
    Output,
    OutputParser,
    encode_message,
    escape,
    marker,
    new_nonce,
    parse_request,
    request,
    start_request,
    unescape,
)

NONCE = "0123456789abcdef0123456789abcdef"


def run(parser: OutputParser, *chunks: bytes) -> tuple[bytes, list[dict[str, object]], list[str]]:
    """Feed chunks, then finish: (all output, message bodies, garbled reasons)."""
    events: list[Event] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.finish()
    output = b"".join(e.data for e in events if isinstance(e, Output))
    messages = [e.body for e in events if isinstance(e, Message)]
    garbled = [e.reason for e in events if isinstance(e, Garbled)]
    return output, messages, garbled


def frames(message: Mapping[str, object], nonce: str = NONCE) -> bytes:
    return b"".join(encode_message(nonce, message))


# --- requests -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"print('hi')",
        b"a\nb\r\nc\0d",
        b"100% literal %0A and %25 and %00 stay",
        "unicode: é ✓ \U0001f600".encode(),
        bytes(range(256)),
        b"\t leading tab, trailing newline\n",
    ],
)
def test_a_payload_survives_escaping_on_one_line(payload: bytes) -> None:
    line = request("execute", {"id": 7, "silent": False}, payload)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert b"\0" not in line
    assert b"\r" not in line
    kind, fields, decoded = parse_request(line)
    assert kind == "execute"
    assert fields == {"id": "7", "silent": "0"}
    assert decoded == payload
    assert unescape(escape(payload)) == payload


def test_request_fields_are_plain_tokens() -> None:
    with pytest.raises(ValueError, match="field"):
        request("execute", {"id": "1 2"})
    with pytest.raises(ValueError, match="field"):
        request("execute", {"id": "a\nb"})
    with pytest.raises(ValueError, match="kind"):
        request("execute now")
    assert request("interrupt", {"id": "3"}) == b"interrupt id=3\n"


def test_start_request_carries_a_fresh_nonce() -> None:
    a, b = new_nonce(), new_nonce()
    assert a != b
    assert len(a) == 32
    assert int(a, 16) >= 0
    assert start_request(a) == f"start nonce={a} protocol=1\n".encode()
    with pytest.raises(ValueError, match="nonce"):
        start_request("not-hex")


# --- frames ---------------------------------------------------------------------------------------
def test_a_message_round_trips() -> None:
    body = {"type": "display_data", "id": "1", "data": {"text/plain": "é\0\n"}}
    assert run(OutputParser(NONCE), frames(body)) == (b"", [body], [])


def test_a_large_message_spans_frames_of_at_most_frame_max_bytes() -> None:
    body = {"type": "display_data", "data": {"image/png": "A" * (5 * CHUNK_MAX + 17)}}
    parts = encode_message(NONCE, body)
    assert len(parts) == 6
    assert all(len(part) <= FRAME_MAX for part in parts)
    assert all(part.startswith(marker(NONCE)) for part in parts)
    assert run(OutputParser(NONCE), *parts) == (b"", [body], [])


def test_output_around_and_between_frames_keeps_its_order() -> None:
    first = {"type": "execute_result", "n": 1}
    second = {"type": "error", "n": 2}
    parts = encode_message(NONCE, {"type": "display_data", "big": "x" * (2 * CHUNK_MAX)})
    stream = b"before\n" + frames(first) + b"middle" + parts[0] + b"!" + parts[1] + parts[2]
    stream += frames(second) + b"after"
    output, messages, garbled = run(OutputParser(NONCE), stream)
    assert output == b"before\nmiddle!after"
    assert [m["type"] for m in messages] == ["execute_result", "display_data", "error"]
    assert garbled == []


def test_any_read_boundary_gives_the_same_result() -> None:
    body = {"type": "execute_reply", "id": "3", "text": "y" * 5000}
    stream = b"a\0b" + frames(body) + b"\0\0tail\0" + MAGIC
    whole = run(OutputParser(NONCE), stream)
    assert whole == (b"a\0b\0\0tail\0" + MAGIC, [body], [])
    bytewise = run(OutputParser(NONCE), *(stream[i : i + 1] for i in range(len(stream))))
    assert bytewise == whole
    rng = random.Random(5)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(stream)), 6))
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert run(OutputParser(NONCE), *pieces) == whole


def test_markers_without_the_nonce_are_program_output() -> None:
    other = "f" * 32
    forged = frames({"type": "execute_reply", "id": "1"}, nonce=other)
    lookalikes = [
        forged,
        MAGIC + NONCE[:31].encode() + b"x:.:0002:{}",  # one digit off
        MAGIC + b":.:0002:{}",
        b"\0llmk" + NONCE.encode(),
        b"\0" * 100,
    ]
    for data in lookalikes:
        assert run(OutputParser(NONCE), data) == (data, [], [])


def test_invalid_utf8_and_nul_bytes_pass_through_unchanged() -> None:
    data = b"\xff\xfe\x00\x80ok\xc3(\n" + bytes(range(256))
    body = {"type": "sync", "id": "1"}
    output, messages, _ = run(OutputParser(NONCE), data + frames(body) + data)
    assert output == data + data
    assert messages == [body]


def test_a_half_written_marker_is_held_back_then_released() -> None:
    parser = OutputParser(NONCE)
    prefix = marker(NONCE)[:20]
    events = parser.feed(b"out" + prefix)
    assert events == [Output(b"out")]
    assert parser.feed(b"not a frame") == [Output(prefix + b"not a frame")]


def test_a_frame_with_our_nonce_but_a_broken_header_is_reported_not_trusted() -> None:
    bad = marker(NONCE) + b"?:0002:{}"
    output, messages, garbled = run(OutputParser(NONCE), bad + frames({"type": "ok"}))
    assert messages == [{"type": "ok"}]
    assert garbled == ["malformed frame header"]
    assert output == bad
    too_long = marker(NONCE) + b".:ffff:"
    output, _, garbled = run(OutputParser(NONCE), too_long)
    assert garbled == ["malformed frame header"]
    assert output == too_long


def test_payloads_that_are_not_messages_are_reported() -> None:
    def raw_frame(payload: bytes) -> bytes:
        return marker(NONCE) + b".:%04x:" % len(payload) + payload

    _, messages, garbled = run(
        OutputParser(NONCE),
        raw_frame(b"{not json"),
        raw_frame(b"[1, 2]"),
        raw_frame(b'{"no": "type"}'),
        raw_frame(b'{"type": "fine"}'),
    )
    assert messages == [{"type": "fine"}]
    assert garbled == [
        "a message that is not JSON",
        "a message without a type",
        "a message without a type",
    ]


def test_a_stream_that_ends_inside_a_message_says_so() -> None:
    parts = encode_message(NONCE, {"type": "display_data", "x": "z" * (CHUNK_MAX + 1)})
    output, messages, garbled = run(OutputParser(NONCE), parts[0])
    assert (output, messages) == (b"", [])
    assert garbled == ["the stream ended inside a message"]


def test_an_oversized_message_is_dropped_without_being_kept() -> None:
    parser = OutputParser(NONCE, max_message=10_000)
    big = frames({"type": "display_data", "data": "b" * 50_000})
    output, messages, garbled = run(parser, big, b"ok", frames({"type": "sync"}))
    assert output == b"ok"
    assert messages == [{"type": "sync"}]
    assert len(garbled) == 1
    assert "exceeded the limit" in garbled[0]


def test_a_50_mb_flood_passes_in_linear_time() -> None:
    """Output full of NULs and marker prefixes is scanned once, not re-scanned per read."""
    rng = random.Random(1)
    block = bytearray(os.urandom(1 << 16))
    for _ in range(200):  # NULs, half markers and forged frames all through the output
        at = rng.randrange(len(block) - 64)
        block[at : at + 40] = marker(NONCE)[: rng.randrange(1, 39)].ljust(40, b"\0")
    data = bytes(block)
    parser = OutputParser(NONCE)
    seen = 0
    started = time.monotonic()
    body = {"type": "execute_reply", "id": "9"}
    messages = []
    for i in range(800):  # 800 x 64 KiB = 50 MiB
        for event in parser.feed(data + (frames(body) if i == 799 else b"")):
            if isinstance(event, Output):
                seen += len(event.data)
            elif isinstance(event, Message):
                messages.append(event.body)
    for event in parser.finish():
        seen += len(event.data) if isinstance(event, Output) else 0
    assert seen == 800 * len(data)
    assert messages == [body]
    assert time.monotonic() - started < 30


def test_messages_are_json_objects_with_a_type() -> None:
    body = {"type": "error", "traceback": ["a", "b"], "evalue": "\u2028"}
    data = b"".join(part[len(marker(NONCE)) + 7 :] for part in encode_message(NONCE, body))
    assert json.loads(data) == body
