"""The server side of RFC 6455, just what the exec endpoint needs (test double, stdlib only).

Handshake: `accept_key`. Framing: `read_frame` (client frames are masked; fragments are
reassembled) and `frame` (server frames are never masked).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def frame(opcode: int, payload: bytes) -> bytes:
    head = bytes([0x80 | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([size])
    elif size < 1 << 16:
        head += bytes([126]) + struct.pack(">H", size)
    else:
        head += bytes([127]) + struct.pack(">Q", size)
    return head + payload


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("websocket peer went away mid-frame")
        data += chunk
    return bytes(data)


def _unmask(payload: bytes, mask: bytes) -> bytes:
    size = len(payload)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """The next complete message (opcode, payload); control frames are returned as they come."""
    opcode_seen: int | None = None
    parts: list[bytes] = []
    while True:
        first, second = _exactly(sock, 2)
        fin, opcode = first & 0x80, first & 0x0F
        size = second & 0x7F
        if size == 126:
            size = struct.unpack(">H", _exactly(sock, 2))[0]
        elif size == 127:
            size = struct.unpack(">Q", _exactly(sock, 8))[0]
        mask = _exactly(sock, 4) if second & 0x80 else b""
        payload = _exactly(sock, size)
        if mask:
            payload = _unmask(payload, mask)
        if opcode >= OP_CLOSE:
            return opcode, payload
        if opcode != OP_CONTINUATION:
            opcode_seen = opcode
        parts.append(payload)
        if fin:
            return opcode_seen or OP_BINARY, b"".join(parts)
