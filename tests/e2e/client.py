"""A Python client for the loopback end-to-end test, run as an unprivileged uid inside the
gateway's namespace. Prints one JSON object: what came back, or the error class and message.

    client.py fetch URL CA_PEM TIMEOUT                   urllib, as most Python tools do
    client.py tls HOST|- CONNECT_IP PATH CA_PEM TIMEOUT  raw ssl: SNI HOST (- for none) to CONNECT_IP
    client.py http HOST CONNECT_IP PATH TIMEOUT          http.client with Host: HOST
    client.py dns NAME SERVER_IP TIMEOUT [PORT]          one A query over UDP (port 53)
    client.py tcp IP PORT TIMEOUT                        send a line, read until EOF
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import struct
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any


def describe(body: bytes) -> dict[str, Any]:
    return {
        "length": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "text": body.decode("latin-1") if len(body) <= 200 else None,
    }


def issuer_of(certificate: dict[str, Any]) -> str:
    return ", ".join(
        f"{key}={value}" for rdn in certificate.get("issuer", ()) for key, value in rdn
    )


def fetch(url: str, ca: str, timeout: str) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=ca)
    try:
        with urllib.request.urlopen(url, context=context, timeout=float(timeout)) as response:
            return {"status": response.status, **describe(response.read())}
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, BaseException):
            raise reason from None
        raise


def tls(host: str, connect_ip: str, path: str, ca: str, timeout: str) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=ca)
    server_hostname: str | None = host
    if host == "-":
        context.check_hostname = False
        server_hostname = None
    raw = socket.create_connection((connect_ip, 443), timeout=float(timeout))
    with context.wrap_socket(raw, server_hostname=server_hostname) as connection:
        issuer = issuer_of(connection.getpeercert() or {})
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        connection.sendall(request.encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return {"status_line": head.split(b"\r\n")[0].decode(), "issuer": issuer, **describe(body)}


def http(host: str, connect_ip: str, path: str, timeout: str) -> dict[str, Any]:
    import http.client

    connection = http.client.HTTPConnection(connect_ip, 80, timeout=float(timeout))
    connection.request("GET", path, headers={"Host": host})
    response = connection.getresponse()
    body = response.read()
    return {"status": response.status, "reason": response.reason,
            "headers": dict(response.getheaders()), **describe(body)}  # fmt: skip


def dns(name: str, server_ip: str, timeout: str, port: str = "53") -> dict[str, Any]:
    query_id = 0x4242
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    packet = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question + b"\0\x01\0\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(float(timeout))
        udp.sendto(packet, (server_ip, int(port)))
        answer, _ = udp.recvfrom(4096)
    flags, answers = struct.unpack("!H", answer[2:4])[0], struct.unpack("!H", answer[6:8])[0]
    # The A records' addresses: the last 4 bytes of each answer with RDLENGTH 4.
    addresses = []
    offset = 12 + len(question) + 4
    for _ in range(answers):
        offset += 2 if answer[offset] & 0xC0 == 0xC0 else len(question)
        rtype, _class, _ttl, length = struct.unpack("!HHIH", answer[offset : offset + 10])
        offset += 10
        if rtype == 1 and length == 4:
            addresses.append(socket.inet_ntoa(answer[offset : offset + 4]))
        offset += length
    return {"rcode": flags & 0xF, "addresses": addresses}


def tcp(ip: str, port: str, timeout: str) -> dict[str, Any]:
    with socket.create_connection((ip, int(port)), timeout=float(timeout)) as connection:
        connection.sendall(b"hello from the workload\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return describe(answer)


COMMANDS: dict[str, Callable[..., dict[str, Any]]] = {
    "fetch": fetch, "tls": tls, "http": http, "dns": dns, "tcp": tcp,
}  # fmt: skip


def main() -> None:
    started = time.monotonic()
    try:
        result: dict[str, Any] = {"error": None, **COMMANDS[sys.argv[1]](*sys.argv[2:])}
    except Exception as error:  # noqa: BLE001 - the error is the measurement
        result = {"error": f"{type(error).__name__}: {error}"}
    result["seconds"] = round(time.monotonic() - started, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
