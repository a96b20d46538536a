"""Oryx's SDK storage (`ORYX_SDK_STORAGE_BASE_URL`, baked as https://oryx-cdn.microsoft.io),
answering the request sequence Oryx makes for one platform:

1. `GET /{platform}?restype=container&comp=list&include=metadata&marker=` : Azure Blob list XML
   with each SDK blob's metadata and an empty `<NextMarker/>` (Oryx pages until it is empty);
2. `GET /{platform}/defaultVersion.{flavor}.txt` : the default version;
3. `GET /{platform}/{platform}-{flavor}-{version}.tar.gz` : the SDK, with `x-ms-meta-checksum`
   (the tarball's SHA-512, hex) that Oryx checks the download against.

The tarballs are generated at start (a `bin/<platform>` script printing its version): the
simulator reproduces the network exchange, not the SDKs. `ORYX_SIM_PLATFORMS` overrides the
catalogue: `platform=version,version;platform=version` (the last version is the default);
`ORYX_SIM_FLAVORS` the Debian flavors (default `bullseye,bookworm`).
"""

import hashlib
import io
import os
import tarfile
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

DEFAULT_PLATFORMS = "python=3.10.14,3.11.9;nodejs=18.20.4,20.15.1;dotnet=8.0.303"
BLOBS: dict[str, tuple[bytes, str]] = {}  # "platform/name.tar.gz" -> (tarball, sha512 hex)
CATALOGUE: dict[str, list[str]] = {}
FLAVORS: list[str] = []


def _tarball(platform: str, version: str) -> bytes:
    script = f"#!/bin/sh\necho {platform} {version} '(oryx-cdn-sim)'\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(f"bin/{platform}")
        info.size, info.mode, info.mtime = len(script), 0o755, 0
        archive.addfile(info, io.BytesIO(script))
    return buffer.getvalue()


def setup() -> None:
    spec = os.environ.get("ORYX_SIM_PLATFORMS") or DEFAULT_PLATFORMS
    FLAVORS.extend((os.environ.get("ORYX_SIM_FLAVORS") or "bullseye,bookworm").split(","))
    for entry in spec.split(";"):
        platform, _, versions = entry.partition("=")
        CATALOGUE[platform.strip()] = [v.strip() for v in versions.split(",") if v.strip()]
    for platform, versions in CATALOGUE.items():
        for flavor in FLAVORS:
            for version in versions:
                data = _tarball(platform, version)
                name = f"{platform}/{platform}-{flavor}-{version}.tar.gz"
                BLOBS[name] = (data, hashlib.sha512(data).hexdigest())


def _blob_list(platform: str) -> bytes:
    entries = []
    for flavor in FLAVORS:
        for version in CATALOGUE[platform]:
            name = f"{platform}-{flavor}-{version}.tar.gz"
            data, checksum = BLOBS[f"{platform}/{name}"]
            entries.append(
                f"<Blob><Name>{escape(name)}</Name><Properties>"
                f"<Content-Length>{len(data)}</Content-Length>"
                "<Content-Type>application/x-gzip</Content-Type></Properties>"
                f"<Metadata><Version>{escape(version)}</Version>"
                f"<Sdk_version>{escape(version)}</Sdk_version>"
                f"<Os_type>{escape(flavor)}</Os_type>"
                f"<Checksum>{checksum}</Checksum></Metadata></Blob>"
            )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<EnumerationResults ContainerName="https://oryx-cdn.microsoft.io/{escape(platform)}">'
        f"<Blobs>{''.join(entries)}</Blobs><NextMarker /></EnumerationResults>"
    ).encode()


def handle(method: str, host: str, path: str, headers: dict, body: bytes):
    parts = urlsplit(path)
    segments = [segment for segment in parts.path.split("/") if segment]
    query = parse_qs(parts.query, keep_blank_values=True)
    if method not in ("GET", "HEAD"):
        return 405, {"Content-Type": "text/plain"}, b"method not allowed"
    if len(segments) == 1 and segments[0] in CATALOGUE and query.get("comp") == ["list"]:
        return 200, {"Content-Type": "application/xml"}, _blob_list(segments[0])
    if len(segments) == 2 and segments[0] in CATALOGUE:
        platform, name = segments
        for flavor in FLAVORS:
            if name == f"defaultVersion.{flavor}.txt":
                return 200, {"Content-Type": "text/plain"}, CATALOGUE[platform][-1].encode()
        blob = BLOBS.get(f"{platform}/{name}")
        if blob is not None:
            data, checksum = blob
            return (
                200,
                {"Content-Type": "application/x-gzip", "x-ms-meta-checksum": checksum},
                data,
            )
    return (
        404,
        {"Content-Type": "application/xml"},
        (
            b'<?xml version="1.0" encoding="utf-8"?><Error><Code>BlobNotFound</Code>'
            b"<Message>The specified blob does not exist.</Message></Error>"
        ),
    )
