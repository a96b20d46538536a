"""The default site: 200 and a JSON echo of what was asked, for any method and path."""

import json


def handle(method: str, host: str, path: str, headers: dict, body: bytes):
    payload = {"ok": True, "method": method, "host": host, "path": path, "bytes": len(body)}
    return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode()
