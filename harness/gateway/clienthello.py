"""The SNI of a TLS ClientHello, read straight from the bytes (RFC 8446 4.1.2, RFC 6066 3).

mitmproxy's `parse_client_hello` builds a full Kaitai Struct object of the hello (every cipher
suite and extension as objects): profiled at 32 concurrent connections it was the largest single
cost of the firewall's own code, ~1.5 ms a connection. The decision needs one field. This walks
the handshake message (assembled from its records by mitmproxy's `get_client_hello`) to the
server_name extension; anything it does not expect is left to mitmproxy's full parser
(`Unusual`), so the answer never differs from mitmproxy's `ClientHello.sni`.
"""

from __future__ import annotations

__all__ = ["Unusual", "server_name"]

CLIENT_HELLO = 0x01
SERVER_NAME_EXTENSION = 0x0000
HOST_NAME = 0x00


class Unusual(ValueError):
    """Not the plain shape this reader handles: ask mitmproxy's full parser instead."""


def server_name(handshake: bytes) -> bytes | None:
    """The host name of a ClientHello handshake message (its 4-byte header included, as
    mitmproxy's `get_client_hello` returns it); None when it has no server_name extension.
    `Unusual` for anything but one extension with exactly one host name, in a well-formed hello.
    """
    if len(handshake) < 4 or handshake[0] != CLIENT_HELLO:
        raise Unusual("not a ClientHello")
    hello = memoryview(handshake)[: 4 + int.from_bytes(handshake[1:4], "big")]
    position = 4 + 2 + 32  # message header, legacy_version, random
    position = _skip(hello, position, 1)  # legacy_session_id
    position = _skip(hello, position, 2)  # cipher_suites
    position = _skip(hello, position, 1)  # legacy_compression_methods
    if position == len(hello):
        return None  # no extensions at all
    extensions_end = position + 2 + _number(hello, position, 2)
    if extensions_end != len(hello):
        raise Unusual("extensions do not end with the hello")
    position += 2
    found: bytes | None = None
    while position < extensions_end:
        kind = _number(hello, position, 2)
        length = _number(hello, position + 2, 2)
        body = position + 4
        if body + length > extensions_end:
            raise Unusual("an extension runs past the hello")
        if kind == SERVER_NAME_EXTENSION:
            if found is not None:
                raise Unusual("two server_name extensions")
            found = _host_name(hello[body : body + length])
        position = body + length
    return found


def _host_name(extension: memoryview) -> bytes:
    if _number(extension, 0, 2) + 2 != len(extension) or len(extension) < 5:
        raise Unusual("server_name list length")
    if extension[2] != HOST_NAME or 5 + _number(extension, 3, 2) != len(extension):
        raise Unusual("not exactly one host name")
    return bytes(extension[5:])


def _number(view: memoryview, position: int, size: int) -> int:
    if position + size > len(view):
        raise Unusual("truncated field")
    return int.from_bytes(view[position : position + size], "big")


def _skip(view: memoryview, position: int, size: int) -> int:
    return position + size + _number(view, position, size)
