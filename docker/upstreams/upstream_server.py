#!/usr/bin/env python3
"""A simulated public site behind the harness's firewall: HTTPS on 443 and HTTP on 80.

The harness mounts the run's certificate for this upstream (cert.pem, key.pem: every host name
it answers, signed by the run's test CA) at /egress/upstream, points the gateway's DNS at this
container for those names, and reads this process's output: one JSON object per line, first
`{"event": "listening", ...}`, then `{"event": "request", ...}` per request answered.

What the site answers comes from a module in /opt/upstreams/sites (`--site NAME`), which
defines `handle(method, host, path, headers, body) -> (status, headers, body)` and may define
`setup()`, run once before listening.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CERT_DIR = os.environ.get("UPSTREAM_CERT_DIR", "/egress/upstream")
SITES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sites")
_print_lock = threading.Lock()


def emit(event: dict) -> None:
    with _print_lock:
        print(json.dumps(event), flush=True)


class SiteHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    site = None  # the site module, set on the class by main()
    scheme = "http"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        try:
            status, headers, payload = self.site.handle(
                self.command, host, self.path, dict(self.headers), body
            )
        except Exception as error:  # noqa: BLE001 - a site bug shows as a 500, not a dropped connection
            status, headers, payload = 500, {"Content-Type": "text/plain"}, repr(error).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        emit(
            {
                "event": "request",
                "scheme": self.scheme,
                "method": self.command,
                "host": host,
                "path": self.path,
                "status": status,
                "user_agent": self.headers.get("User-Agent", ""),
            }
        )

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass  # the JSON lines above are the log


class TlsSiteHandler(SiteHandler):
    scheme = "https"


# socketserver listens with a backlog of 5: a burst of new connections overflows the accept
# queue and the kernel drops or resets them (measured: benchmarks/bench_load.py, issue 16).
LISTEN_BACKLOG = 1024


class TlsServer(ThreadingHTTPServer):
    """Handshakes in the request's own thread, so one stalled client cannot block accept()."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address, handler, context: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self.context = context

    def finish_request(self, request, client_address) -> None:
        try:
            request = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            emit({"event": "tls_error", "client": client_address[0], "error": str(error)})
            return
        super().finish_request(request, client_address)


class PlainServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", default="ok", help="module name in the sites folder")
    parser.add_argument("--https-port", type=int, default=443)
    parser.add_argument("--http-port", type=int, default=80)
    arguments = parser.parse_args()
    sys.path.insert(0, SITES_DIR)
    site = importlib.import_module(arguments.site)
    if hasattr(site, "setup"):
        site.setup()
    SiteHandler.site = site
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(os.path.join(CERT_DIR, "cert.pem"), os.path.join(CERT_DIR, "key.pem"))
    servers = [
        TlsServer(("0.0.0.0", arguments.https_port), TlsSiteHandler, context),
        PlainServer(("0.0.0.0", arguments.http_port), SiteHandler),
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    emit(
        {
            "event": "listening",
            "site": arguments.site,
            "https_port": arguments.https_port,
            "http_port": arguments.http_port,
        }
    )
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
