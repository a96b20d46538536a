"""The upstream test hosts for the loopback end-to-end test, run inside the server namespace.

Usage: servers.py CERT_PEM KEY_PEM PAYLOAD NAME=IP [NAME=IP ...]

For every NAME=IP: HTTPS on IP:443 and HTTP on IP:80. `GET /whoami` answers NAME (which host a
request really reached); `GET /payload` answers the PAYLOAD file's bytes. Prints `ready` once
every listener is bound, then serves until killed.
"""

from __future__ import annotations

import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def handler_for(name: str, payload: bytes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = {"/whoami": name.encode(), "/payload": payload}.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main(cert: str, key: str, payload_path: str, *hosts: str) -> None:
    payload = Path(payload_path).read_bytes()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    servers = []
    for host in hosts:
        name, ip = host.split("=")
        handler = handler_for(name, payload)
        plain = ThreadingHTTPServer((ip, 80), handler)
        secure = ThreadingHTTPServer((ip, 443), handler)
        secure.socket = tls.wrap_socket(secure.socket, server_side=True)
        servers += [plain, secure]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(*sys.argv[1:])
