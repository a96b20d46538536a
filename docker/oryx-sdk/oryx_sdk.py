#!/usr/bin/env python3
"""The SDK-CDN requests Oryx makes before it builds (microsoft/Oryx, BuildScriptGenerator's
SdkStorageVersionProviderBase, PlatformInstallerBase and its "general" HttpClient):

1. the SDK list of the platform's container (ListBlobsHelper.GetAllBlobs): `GET {base}/{platform}
   ?restype=container&comp=list&include=metadata&marker=`, then a do/while over `<NextMarker>`
   that asks again before it tests the marker, so a one-page list is fetched twice; a version
   counts when its blob has `Sdk_version` metadata and `Os_type` equal to the Debian flavor;
2. `GET {base}/{platform}/defaultVersion.{flavor}.txt`, always (GetAvailableVersionsFromStorage
   reads it with the list, whether or not a version was asked for);
3. the tarball `{platform}-{flavor}-{version}.tar.gz` fetched as curl does without `-f` (an error
   page is saved like a tarball), then checked against the blob's `x-ms-meta-checksum` header
   (SHA-512), so a firewall's 470 page fails at the checksum, or at tar.

Every request sends `User-Agent: oryx/1.0`; the HttpClient retries 6 times, waiting 2^n s, on
5xx, 408, 404 and connection errors, inside one overall timeout (10 s in current images,
`--timeout 100` for the older ones). When the base URL fails, `ORYX_SDK_STORAGE_BACKUP_BASE_URL`
is tried. The version asked for may be exact (3.11.9), a prefix (3.11, 20) or a Node range
(>=18, ^20.1, ~18.20, 20.x); it is resolved against the list, as Oryx resolves it.

    oryx-sdk fetch --platform python [--version 3.11] [--flavor bookworm] [--base-url URL]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import sys
import tarfile
import time
import urllib.error
import urllib.request
from xml.etree import ElementTree

USER_AGENT = "oryx/1.0"
RETRIES = 6
RETRY_STATUSES = {404, 408} | set(range(500, 600))
DEFAULT_BASE = os.environ.get("ORYX_SDK_STORAGE_BASE_URL", "https://oryx-cdn.microsoft.io")


class Failed(Exception):
    pass


def say(line: str) -> None:
    print(line, flush=True)


class Client:
    """One HttpClient: the retries and their waits share one overall deadline."""

    def __init__(self, timeout: float) -> None:
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout

    def get(self, url: str, retry: bool = True) -> tuple[int, dict, bytes]:
        attempt = 0
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise Failed(f"A task was canceled. (timeout of {self.timeout:g} s)")
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            try:
                with urllib.request.urlopen(request, timeout=remaining) as answer:
                    return answer.status, dict(answer.headers), answer.read()
            except urllib.error.HTTPError as error:
                status, headers, body = error.code, dict(error.headers), error.read()
                if not retry or status not in RETRY_STATUSES or attempt >= RETRIES:
                    return status, headers, body
                reason = f"HTTP {status}"
            except (urllib.error.URLError, OSError) as error:
                if attempt >= RETRIES:
                    raise Failed(str(getattr(error, "reason", error))) from None
                reason = str(getattr(error, "reason", error))
            attempt += 1
            wait = 2.0**attempt
            if time.monotonic() + wait >= self.deadline:
                # The overall timeout ends the wait: .NET cancels Task.Delay.
                say(f"oryx-sdk: GET {url}: {reason}; the next retry would pass the timeout")
                raise Failed(f"A task was canceled. (timeout of {self.timeout:g} s)")
            say(f"oryx-sdk: GET {url}: {reason}; retry {attempt} of {RETRIES} in {wait:g} s")
            time.sleep(wait)


def _page(client: Client, base: str, platform: str, marker: str, flavor: str,
          versions: list[str]) -> str:  # fmt: skip
    url = f"{base}/{platform}?restype=container&comp=list&include=metadata&marker={marker}"
    status, _, body = client.get(url)
    if status != 200:
        raise Failed(f"GET {url}: HTTP {status}")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as error:
        raise Failed(f"GET {url}: not a blob list ({error})") from None
    for blob in root.iter("Blob"):
        metadata = blob.find("Metadata")
        meta = {child.tag.lower(): (child.text or "") for child in list(metadata or [])}
        if meta.get("sdk_version") and meta.get("os_type", "").lower() == flavor.lower():
            versions.append(meta["sdk_version"])
    return (root.findtext("NextMarker") or "").strip()


def list_versions(client: Client, base: str, platform: str, flavor: str) -> list[str]:
    versions: list[str] = []
    marker = _page(client, base, platform, "", flavor, versions)
    while True:  # Oryx's do/while: the next page is asked for before the marker is tested
        marker = _page(client, base, platform, marker, flavor, versions)
        if not marker:
            return sorted(set(versions), key=_key)


def _key(version: str) -> tuple:
    return tuple(int(part) if part.isdigit() else -1 for part in re.split(r"[.-]", version))


def resolve(wanted: str, versions: list[str]) -> str | None:
    wanted = wanted.strip().lstrip("v")
    if wanted in versions:
        return wanted
    match = re.fullmatch(r"(>=|\^|~)?\s*(\d+(?:\.\d+)*)(?:\.x)?", wanted)
    if not match:
        return None
    operator, number = match.groups()
    parts = _key(number)
    chosen = None
    for version in versions:
        key = _key(version)
        if operator == ">=":
            ok = key >= parts
        elif operator == "^":
            ok = key[:1] == parts[:1] and key >= parts
        elif operator == "~":
            ok = key[:2] == parts[:2] and key >= parts
        else:
            ok = key[: len(parts)] == parts
        if ok:
            chosen = version
    return chosen


def fetch(base: str, platform: str, wanted: str | None, flavor: str, timeout: float) -> str:
    client = Client(timeout)
    say(f"oryx-sdk: SDK storage {base}, platform {platform}, flavor {flavor}")
    versions = list_versions(client, base, platform, flavor)
    say(f"oryx-sdk: {len(versions)} version(s) listed: {', '.join(versions)}")
    url = f"{base}/{platform}/defaultVersion.{flavor}.txt"
    status, _, body = client.get(url)
    if status != 200:
        raise Failed(f"Http request to retrieve the default version from '{url}' failed: HTTP {status}")
    default = next((line.strip() for line in body.decode(errors="replace").splitlines()
                    if line.strip() and not line.startswith(("#", "//"))), "")  # fmt: skip
    if not wanted:
        version = default
        say(f"oryx-sdk: default version {version}")
    else:
        version = resolve(wanted, versions)
        if version is None:
            raise Failed(f"Platform '{platform}' version '{wanted}' is unsupported. "
                         f"Supported versions: {', '.join(versions)}")  # fmt: skip
        say(f"oryx-sdk: version {wanted} resolves to {version}")
    name = f"{platform}-{flavor}-{version}.tar.gz"
    url = f"{base}/{platform}/{name}"
    status, headers, body = client.get(url, retry=False)  # curl without -f: keeps any answer
    say(f"oryx-sdk: downloaded {name}: HTTP {status}, {len(body)} bytes")
    expected = {key.lower(): value for key, value in headers.items()}.get("x-ms-meta-checksum")
    actual = hashlib.sha512(body).hexdigest()
    if expected and expected.lower() != actual:
        raise Failed(f"checksum of {name} does not match x-ms-meta-checksum")
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
            members = archive.getnames()
    except (tarfile.TarError, OSError, EOFError):
        raise Failed("gzip: stdin: not in gzip format; tar: Child returned status 1") from None
    say(f"oryx-sdk: {platform} {version} installed ({len(members)} file(s), checksum verified)")
    return version


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="list, default version, tarball")
    fetch_parser.add_argument("--platform", required=True)
    fetch_parser.add_argument("--version", default="")
    fetch_parser.add_argument("--flavor", default=os.environ.get("DEBIAN_FLAVOR", "bookworm"))
    fetch_parser.add_argument("--base-url", default=DEFAULT_BASE)
    fetch_parser.add_argument("--timeout", type=float, default=10.0)
    arguments = parser.parse_args()
    bases = [arguments.base_url.rstrip("/")]
    backup = os.environ.get("ORYX_SDK_STORAGE_BACKUP_BASE_URL", "").rstrip("/")
    if backup:
        bases.append(backup)
    for base in bases:
        try:
            fetch(base, arguments.platform, arguments.version, arguments.flavor, arguments.timeout)
            return 0
        except Failed as error:
            say(f"Http request to retrieve the SDKs available to download from '{base}' failed."
                f" {error}")  # fmt: skip
    return 1


if __name__ == "__main__":
    sys.exit(main())
