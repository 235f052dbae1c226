"""The server name (SNI) of a TLS ClientHello. Pure; never raises on malformed input."""

from __future__ import annotations


class HelloError(ValueError):
    """The bytes are a TLS record but not one whole, well-formed ClientHello."""


def client_hello_sni(record: bytes) -> str | None:
    """The host name in the server_name extension of the ClientHello in `record` (the first
    TLS record a client sends), or None when it has none.

    Raises `HelloError` when the record does not hold the whole ClientHello (a hello split over
    several records could hide its server name from a check of the first) or is malformed.
    """
    try:
        return _parse(record)
    except (IndexError, UnicodeDecodeError) as exc:
        raise HelloError(f"malformed ClientHello ({type(exc).__name__})") from None


def _parse(record: bytes) -> str | None:
    if record[0] != 0x16 or record[5] != 0x01:
        raise HelloError("the first TLS record is not a ClientHello")
    record_end = 5 + int.from_bytes(record[3:5], "big")
    hello_end = 9 + int.from_bytes(record[6:9], "big")
    if hello_end > record_end or record_end > len(record):
        raise HelloError("the ClientHello does not fit in the first TLS record")
    pos = 9 + 2 + 32  # record header, handshake header, version, random
    pos += 1 + record[pos]  # session id
    pos += 2 + int.from_bytes(record[pos : pos + 2], "big")  # cipher suites
    pos += 1 + record[pos]  # compression methods
    if pos >= hello_end:
        return None  # no extensions at all
    end = pos + 2 + int.from_bytes(record[pos : pos + 2], "big")
    if end > hello_end:
        raise HelloError("the ClientHello's extensions overrun it")
    pos += 2
    while pos + 4 <= end:
        kind = int.from_bytes(record[pos : pos + 2], "big")
        size = int.from_bytes(record[pos + 2 : pos + 4], "big")
        body = record[pos + 4 : pos + 4 + size]
        if kind == 0:
            # server_name_list: its length, then entries (type 0 = host_name, length, name)
            if body[2] != 0:
                raise HelloError("a server name that is not a host name")
            length = int.from_bytes(body[3:5], "big")
            name = body[5 : 5 + length]
            if len(name) != length:
                raise HelloError("a truncated server name")
            return name.decode("ascii")
        pos += 4 + size
    return None
