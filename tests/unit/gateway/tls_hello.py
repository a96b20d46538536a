"""A real OpenSSL client's first bytes, for the gateway's tests."""

from __future__ import annotations

import ssl


def client_hello(sni: str | None) -> bytes:
    """The bytes a real OpenSSL client sends first, with `sni` as server_name (None: none)."""
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if sni is None:
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    connection = tls.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        connection.do_handshake()
    except ssl.SSLWantReadError:
        return outgoing.read()
    raise AssertionError("the handshake finished without a server")
