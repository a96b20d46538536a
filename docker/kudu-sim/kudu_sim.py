#!/usr/bin/env python3
"""Kudu's deployment API, reduced to what breaks behind a firewall.

`POST /api/zipdeploy` and `POST /api/publish` unpack the uploaded zip into the site's wwwroot,
then, as Kudu does after every deployment, call the site's own SCM host over HTTPS:
`POST https://<HTTP_HOST>/operations/settriggers`, then `POST https://<HTTP_HOST>/api/app/restart`
(`HTTP_HOST` is the Host header the deployment came in with: <site>.scm.azurewebsites.net).
With App Service's Route All those calls leave through the firewall. When one fails, the API
answers 500 with the JSON Kudu returns for an `HttpRequestException`.

    kudu-sim serve [--host 0.0.0.0] [--port 8080]
        the API (plain HTTP), until stopped (SIGTERM); the workload behind the firewall
    kudu-sim client --src DIR [--site NAME] [--port 8080] [--endpoint zipdeploy|publish]
        what `az webapp deploy --type zip` does, from outside the firewall: zips DIR and posts
        it to http://<site>.scm.azurewebsites.net:<port>/api/zipdeploy with the SCM site's Host
        header; prints `HTTP <status>` and the body, exits 0 on 2xx and 1 otherwise
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import ssl
import sys
import threading
import urllib.error
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WWWROOT = os.environ.get("KUDU_SIM_WWWROOT", "/tmp/home/site/wwwroot")
CALL_TIMEOUT = float(os.environ.get("KUDU_SIM_CALL_TIMEOUT", "10"))
DEFAULT_SITE = os.environ.get("WEBSITE_SITE_NAME", "mysite")
SELF_CALLS = ("/operations/settriggers", "/api/app/restart")
# Kudu's body for an HttpRequestException (ASP.NET Web API's HttpError, exception details on).
SEND_FAILED = {
    "Message": "An error has occurred.",
    "ExceptionMessage": "An error occurred while sending the request.",
    "ExceptionType": "System.Net.Http.HttpRequestException",
    "StackTrace": None,
}


def scm_host(site: str) -> str:
    return f"{site}.scm.azurewebsites.net"


def call_self(http_host: str) -> str | None:
    """Kudu's post-deployment calls to its own SCM site; the first error, or None."""
    context = ssl.create_default_context()
    for path in SELF_CALLS:
        request = urllib.request.Request(
            f"https://{http_host}{path}",
            data=b"",
            method="POST",
            headers={"User-Agent": "Kudu/simulated", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=CALL_TIMEOUT, context=context) as answer:
                answer.read()
                log(f"POST https://{http_host}{path}: {answer.status}")
        except (urllib.error.URLError, OSError, ssl.SSLError) as error:
            log(f"POST https://{http_host}{path} failed: {error!r}")
            return f"{path}: {error!r}"
    return None


def log(line: str) -> None:
    print(f"kudu-sim: {line}", file=sys.stderr, flush=True)


class KuduApi(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        route = self.path.split("?", 1)[0]
        if route not in ("/api/zipdeploy", "/api/publish"):
            self._json(404, {"Message": f"No HTTP resource was found at '{route}'."})
            return
        length = int(self.headers.get("Content-Length") or 0)
        upload = self.rfile.read(length)
        peer_host, peer_port = self.client_address[:2]
        # Who deployed: a client outside the firewall shows its own address, never loopback.
        log(f"{route}: {length} bytes from {peer_host}:{peer_port}, Host: {self.headers['Host']}")
        try:
            with zipfile.ZipFile(io.BytesIO(upload)) as archive:
                os.makedirs(WWWROOT, exist_ok=True)
                archive.extractall(WWWROOT)
                count = len(archive.namelist())
        except zipfile.BadZipFile as error:
            self._json(400, {"Message": f"The upload is not a zip file: {error}"})
            return
        log(f"{route}: unpacked {count} entries into {WWWROOT}")
        http_host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        if not http_host or http_host in ("localhost", "127.0.0.1"):
            http_host = scm_host(DEFAULT_SITE)
        failure = call_self(http_host)
        if failure is not None:
            self._json(500, SEND_FAILED)
            return
        self._json(200, {"status": 4, "complete": True, "message": "Deployment successful."})

    def _json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log(format % args)


def serve(host: str, port: int) -> int:
    """The API until SIGTERM (the harness stops the workload once its client is done)."""
    server = ThreadingHTTPServer((host, port), KuduApi)
    server.daemon_threads = True
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log(f"API listening on {host}:{server.server_address[1]}")
    stopped.wait()
    server.shutdown()
    log("stopped")
    return 0


def zip_of(folder: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for root, _, files in os.walk(folder):
            for name in sorted(files):
                path = os.path.join(root, name)
                archive.write(path, os.path.relpath(path, folder))
    return buffer.getvalue()


def client(source: str, site: str, endpoint: str, port: int) -> int:
    """What `az webapp deploy --type zip` does: the zip to the SCM site, by its public name."""
    route = "/api/zipdeploy" if endpoint == "zipdeploy" else "/api/publish?type=zip"
    url = f"http://{scm_host(site)}:{port}{route}"
    request = urllib.request.Request(
        url,
        data=zip_of(source),
        method="POST",
        # The SCM site's name, as Azure's front end hands it to Kudu; Kudu calls it back.
        headers={"Host": scm_host(site), "Content-Type": "application/zip"},
    )
    try:
        with urllib.request.urlopen(request, timeout=CALL_TIMEOUT * 3 + 10) as answer:
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        print(f"kudu-sim client: POST {url} failed: {error}", file=sys.stderr, flush=True)
        return 1
    print(f"HTTP {status}")
    print(body.decode(errors="replace"), flush=True)
    return 0 if 200 <= status < 300 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the API until stopped")
    serve_parser.add_argument("--host", default="0.0.0.0")
    serve_parser.add_argument("--port", type=int, default=8080)
    client_parser = commands.add_parser("client", help="deploy a folder as `az webapp deploy`")
    client_parser.add_argument("--src", required=True, help="the folder to zip and deploy")
    client_parser.add_argument("--site", default=DEFAULT_SITE)
    client_parser.add_argument("--endpoint", choices=("zipdeploy", "publish"), default="zipdeploy")
    client_parser.add_argument("--port", type=int, default=8080, help="Kudu's API port")
    arguments = parser.parse_args()
    if arguments.command == "serve":
        return serve(arguments.host, arguments.port)
    return client(arguments.src, arguments.site, arguments.endpoint, arguments.port)


if __name__ == "__main__":
    sys.exit(main())
