"""The public face of an App Service site's SCM host, as Kudu reaches it after a deployment:
`POST https://<site>.scm.azurewebsites.net/operations/settriggers`, `/api/app/restart`,
`/operations/autoswap`, and `https://<site>.azurewebsites.net/admin/host/synctriggers`."""

import json

SELF_CALLS = {
    "/operations/settriggers",
    "/api/app/restart",
    "/operations/autoswap",
    "/admin/host/synctriggers",
}


def handle(method: str, host: str, path: str, headers: dict, body: bytes):
    route = path.split("?", 1)[0]
    if method == "POST" and route in SELF_CALLS:
        return 200, {"Content-Type": "application/json"}, b"{}"
    if method == "GET" and route == "/":
        return 200, {"Content-Type": "text/plain"}, f"{host}: Kudu site (simulated)".encode()
    message = {"Message": f"No HTTP resource was found that matches the request URI '{path}'."}
    return 404, {"Content-Type": "application/json"}, json.dumps(message).encode()
