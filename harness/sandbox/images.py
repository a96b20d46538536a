"""Building the images: a Debian trixie base made with debootstrap, and the images on top of it
(the gateway, the workloads, the simulated sites: docker/README.md).

Every image carries the label `egress-harness.hash`, a hash of everything it was built from (the
recipe, its files, its parent's hash); `build_images` skips an image whose label already matches,
so a second call costs a few inspections.

No image ever contains the host's CA bundle. apt fetches over plain HTTP (Debian's packages are
signed), so the base and the Dockerfile steps need no CA at all. The gateway's Python packages
come from pip's default index over HTTPS: they are installed by `docker run` with the host bundle
bind-mounted read-only, then `docker commit`; a bind mount is not part of the container's layer.
"""

from __future__ import annotations

__all__ = [
    "ALL_IMAGES",
    "BASE_IMAGE",
    "DEBIAN_IMAGE",
    "DOTNET_MONO_IMAGE",
    "GATEWAY_IMAGE",
    "KUDU_SIM_IMAGE",
    "NODE_IMAGE",
    "ORYX_CDN_SIM_IMAGE",
    "ORYX_SDK_IMAGE",
    "PYTHON_IMAGE",
    "SIMULATOR_IMAGES",
    "UPSTREAMS_IMAGE",
    "WORKLOAD_IMAGES",
    "build_images",
    "debian_mirror",
    "docker_dir",
    "image_is_current",
    "images_for_scenarios",
    "images_needed",
]

import functools
import glob
import hashlib
import importlib.util
import json
import lzma
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
from docker.errors import APIError, ImageNotFound

from harness.errors import EnvironmentProblem
from harness.sandbox.containers import labelled_container
from harness.sandbox.engine import client as engine_client
from harness.sandbox.labels import HASH_LABEL, LABEL, new_run_id
from harness.sandbox.minbase import (
    MINBASE_BASE,
    minbase_packages,
    packages_index_url,
    suite_script,
)
from harness.scenario import Scenario

TAG = "latest"
BASE_IMAGE = "egress/base"
GATEWAY_IMAGE = "egress/gateway"
PYTHON_IMAGE = "egress/python"
NODE_IMAGE = "egress/node"
DEBIAN_IMAGE = "egress/debian"
# Mono's System.Net.Http.HttpClient and `httpget`, a .NET client for docs/oryx.md.
DOTNET_MONO_IMAGE = "egress/dotnet-mono"
WORKLOAD_IMAGES = {
    PYTHON_IMAGE: "python",
    NODE_IMAGE: "node",
    DEBIAN_IMAGE: "debian",
    DOTNET_MONO_IMAGE: "dotnet-mono",
}
# Simulated public sites (docs/formats.md "Upstreams"): the server, and images built on it.
UPSTREAMS_IMAGE = "egress/upstreams"
KUDU_SIM_IMAGE = "egress/kudu-sim"
ORYX_CDN_SIM_IMAGE = "egress/oryx-cdn-sim"
# Oryx's SDK-CDN requests (`oryx-sdk fetch`): the App Service chain's Oryx step without Oryx.
ORYX_SDK_IMAGE = "egress/oryx-sdk"
SIMULATOR_IMAGES = {
    KUDU_SIM_IMAGE: "kudu-sim",
    ORYX_CDN_SIM_IMAGE: "oryx-cdn-sim",
    ORYX_SDK_IMAGE: "oryx-sdk",
}
ALL_IMAGES = (
    BASE_IMAGE,
    GATEWAY_IMAGE,
    PYTHON_IMAGE,
    NODE_IMAGE,
    DEBIAN_IMAGE,
    DOTNET_MONO_IMAGE,
    UPSTREAMS_IMAGE,
    *SIMULATOR_IMAGES,
)

DEBIAN_SUITE = "trixie"
# Bump when the base recipe below changes in a way its inputs do not show.
BASE_RECIPE_VERSION = "1"
# Bump when the debootstrap step (suite, variant, what is cleaned out of it) changes.
ROOTFS_RECIPE_VERSION = "1"
# The debootstrap result, imported once: a rebuild of the base (or of anything) starts from it.
ROOTFS_IMAGE = "egress/base-rootfs"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
BUILD_CA_DIR = "/run/egress-build-ca"
BUILD_CA_FILE = f"{BUILD_CA_DIR}/ca.crt"
MIRROR_ENV = "EGRESS_DEBIAN_MIRROR"
PARALLEL_BUILDS = 4

Progress = Callable[[str], None]


def docker_dir() -> Path:
    """The checkout's docker/ folder (recipes and the gateway entrypoint)."""
    return Path(__file__).resolve().parents[2] / "docker"


def build_images(
    progress: Progress, *, rebuild: bool = False, only: Iterable[str] | None = None
) -> None:
    """Build whatever image is missing or out of date; one progress line per step.

    `only` names the images a command needs (`images_needed`); their parents are built first
    (the base, and `egress/upstreams` under the simulators), images with no dependency between
    them in parallel. None builds all nine. Names that are not the project's are ignored.
    """
    engine = engine_client(timeout=900)
    started = time.monotonic()
    progress = _serialised(progress)  # builds run in threads; their lines must not interleave
    wanted = _with_parents(ALL_IMAGES if only is None else only)
    if not wanted:
        return
    with tempfile.TemporaryDirectory(prefix="egress-gateway-wheels-") as wheels_dir:
        wheels = GatewayWheels(Path(wheels_dir))
        if GATEWAY_IMAGE in wanted and (rebuild or not _current(
                engine, GATEWAY_IMAGE, _tree_hash(docker_dir() / "gateway", _base_hash()))):  # fmt: skip
            wheels.start(progress)  # downloads while the base is made
        try:
            _build_all(engine, progress, wanted, rebuild, wheels)
        finally:
            wheels.stop()
    names = ", ".join(image.removeprefix("egress/") for image in ALL_IMAGES if image in wanted)
    progress(f"images ready in {time.monotonic() - started:.1f} s ({names})")


def _build_all(
    engine: docker.DockerClient, progress: Progress, wanted: set[str], rebuild: bool,
    wheels: GatewayWheels,
) -> None:  # fmt: skip
    base_hash = _build_base(engine, progress, rebuild)
    upstreams_hash = _tree_hash(docker_dir() / "upstreams", base_hash)
    steps: dict[str, Callable[[], object]] = {
        GATEWAY_IMAGE: lambda: _build_gateway(engine, progress, base_hash, rebuild, wheels),
        UPSTREAMS_IMAGE: lambda: _build_from_dockerfile(
            engine, progress, UPSTREAMS_IMAGE, docker_dir() / "upstreams", base_hash, rebuild
        ),
    }
    for image, folder in WORKLOAD_IMAGES.items():
        steps[image] = functools.partial(
            _build_from_dockerfile,
            engine, progress, image, docker_dir() / "workloads" / folder, base_hash, rebuild,
        )  # fmt: skip
    for image, folder in SIMULATOR_IMAGES.items():
        # FROM egress/upstreams (their Dockerfiles say so): their hash chains on its hash.
        steps[image] = functools.partial(
            _build_from_dockerfile, engine, progress, image, docker_dir() / folder,
            upstreams_hash, rebuild,
        )  # fmt: skip
    first = [image for image in ALL_IMAGES if image in wanted and image not in SIMULATOR_IMAGES
             and image != BASE_IMAGE]  # fmt: skip
    then = [image for image in SIMULATOR_IMAGES if image in wanted]
    # The engine builds several images at once; apt's downloads overlap instead of queueing.
    with ThreadPoolExecutor(max_workers=PARALLEL_BUILDS, thread_name_prefix="egress-build") as pool:
        for batch in (first, then):
            for future in [pool.submit(steps[image]) for image in batch]:
                future.result()


def _serialised(progress: Progress) -> Progress:
    lock = threading.Lock()

    def locked(line: str) -> None:
        with lock:
            progress(line)

    return locked


def images_needed(images: Iterable[str]) -> set[str]:
    """The project's images among `images` (a scenario's workload, upstream and client images),
    with the gateway every run needs; other names are the user's own and are not built."""
    return _with_parents([GATEWAY_IMAGE, *images])


def images_for_scenarios(scenarios: Iterable[Scenario]) -> set[str]:
    """Every project image the scenarios run (workload, upstreams, client, and each step's of a
    chain), with their parents."""
    named: list[str] = []
    for scenario in scenarios:
        named.append(scenario.workload.image)
        named.extend(upstream.image for upstream in scenario.upstreams)
        if scenario.client is not None:
            named.append(scenario.client.image)
        for step in scenario.steps:
            named.append(step.workload.image)
            if step.client is not None:
                named.append(step.client.image)
    return images_needed(named)


def _with_parents(images: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for name in images:
        image = name.split("@")[0].removesuffix(f":{TAG}")
        if image not in ALL_IMAGES:
            continue
        found.update({image, BASE_IMAGE})
        if image in SIMULATOR_IMAGES:
            found.add(UPSTREAMS_IMAGE)
    return found


def image_is_current(engine: docker.DockerClient, image: str) -> bool | None:
    """None when absent, else whether its hash label matches the recipe in this checkout."""
    try:
        found = engine.images.get(f"{image}:{TAG}")
    except ImageNotFound:
        return None
    return found.labels.get(HASH_LABEL) == _expected_hashes().get(image)


def _expected_hashes() -> dict[str, str]:
    base = _base_hash()
    hashes = {BASE_IMAGE: base, GATEWAY_IMAGE: _tree_hash(docker_dir() / "gateway", base)}
    for image, folder in WORKLOAD_IMAGES.items():
        hashes[image] = _tree_hash(docker_dir() / "workloads" / folder, base)
    hashes[UPSTREAMS_IMAGE] = _tree_hash(docker_dir() / "upstreams", base)
    for image, folder in SIMULATOR_IMAGES.items():
        hashes[image] = _tree_hash(docker_dir() / folder, hashes[UPSTREAMS_IMAGE])
    return hashes


def _tree_hash(folder: Path, *inputs: str) -> str:
    digest = hashlib.sha256()
    for value in inputs:
        digest.update(value.encode() + b"\0")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(f"{path.stat().st_mode & 0o111:o}".encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _base_hash() -> str:
    return _tree_hash(docker_dir() / "base", DEBIAN_SUITE, "minbase", BASE_RECIPE_VERSION)


def _current(engine: docker.DockerClient, image: str, wanted: str) -> bool:
    try:
        found = engine.images.get(f"{image}:{TAG}")
    except ImageNotFound:
        return False
    return found.labels.get(HASH_LABEL) == wanted


def _image_labels(content_hash: str) -> dict[str, str]:
    return {LABEL: "1", HASH_LABEL: content_hash}


# --- the base: debootstrap + docker import -------------------------------------------------------


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (EGRESS_DEBIAN_MIRROR overrides it)."""
    if os.environ.get(MIRROR_ENV):
        return os.environ[MIRROR_ENV].rstrip("/")
    candidates: list[str] = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for stanza in Path(path).read_text(errors="replace").split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                key, _, value = line.partition(":")
                if value and not line.startswith((" ", "\t", "#")):
                    fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            candidates.extend(fields.get("uris", "").split())
    sources_list = Path("/etc/apt/sources.list")
    if sources_list.exists():
        for line in sources_list.read_text(errors="replace").splitlines():
            words = re.sub(r"\[[^]]*\]", " ", line).split()
            if len(words) >= 2 and words[0] == "deb":
                candidates.append(words[1])
    for uri in candidates:
        # The main archive, not its security or ports siblings: debootstrap needs the full suite.
        if uri.startswith(("http://", "https://")) and re.search(r"/debian/?$", uri):
            return uri.rstrip("/")
    raise EnvironmentProblem(
        "cannot tell which Debian mirror to build the base image from: no `deb` source ending in "
        "/debian in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources; "
        f"set {MIRROR_ENV} to a Debian mirror URL"
    )


def _rootfs_hash() -> str:
    """The debootstrap result's own hash: the suite, the variant and how it is cleaned."""
    return hashlib.sha256(
        f"debootstrap\0{DEBIAN_SUITE}\0minbase\0{ROOTFS_RECIPE_VERSION}".encode()
    ).hexdigest()


def _build_base(engine: docker.DockerClient, progress: Progress, rebuild: bool) -> str:
    """The base: the cached debootstrap result (made once, `ROOTFS_IMAGE`) plus base/'s files.
    `--rebuild` builds the base again from that cache; only a changed suite repeats debootstrap."""
    wanted = _base_hash()
    if not rebuild and _current(engine, BASE_IMAGE, wanted):
        progress(f"{BASE_IMAGE}: up to date")
        return wanted
    if not _current(engine, ROOTFS_IMAGE, _rootfs_hash()):
        _debootstrap_rootfs(engine, progress)
    else:
        progress(f"{BASE_IMAGE}: debootstrap result cached in {ROOTFS_IMAGE}")
    with tempfile.TemporaryDirectory(prefix="egress-base-") as context:
        shutil.copy(docker_dir() / "base" / "apt-sandbox.conf", Path(context) / "apt-sandbox.conf")
        (Path(context) / "Dockerfile").write_text(
            f"FROM {ROOTFS_IMAGE}:{TAG}\n"
            "COPY apt-sandbox.conf /etc/apt/apt.conf.d/00egress-sandbox\n"
            "ENV LANG=C.UTF-8\n"
            'CMD ["bash"]\n'
        )
        _build_from_dockerfile(
            engine, progress, BASE_IMAGE, Path(context), "", rebuild=True, wanted=wanted,
            tag=f"{BASE_IMAGE}:{TAG}", describe="the cached debootstrap result + base/",
        )  # fmt: skip
    return wanted


def _debootstrap_rootfs(engine: docker.DockerClient, progress: Progress) -> None:
    if shutil.which("debootstrap") is None:
        raise EnvironmentProblem(
            "debootstrap is missing (it makes the Debian base image); "
            "install it with `apt-get install debootstrap`"
        )
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            "building the base image runs debootstrap, which needs root; "
            "run `egress images build` as root (e.g. with sudo) once"
        )
    mirror = debian_mirror()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="egress-rootfs-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        progress(f"{BASE_IMAGE}: debootstrap {DEBIAN_SUITE} (minbase) from {mirror}")
        packages = _minbase_packages(mirror)
        completed = None
        if packages is not None:
            # The packages debootstrap would work out itself (harness.sandbox.minbase), given.
            script = Path(scratch) / f"{DEBIAN_SUITE}-listed"
            script.write_text(suite_script(DEBIAN_SUITE, *packages))
            completed = _debootstrap(rootfs, mirror, "--no-resolve-deps", script=script)
            if completed.returncode != 0:
                progress(f"{BASE_IMAGE}: debootstrap with the package lists failed; "
                         "again, resolving the dependencies itself")  # fmt: skip
                shutil.rmtree(rootfs, ignore_errors=True)
        if completed is None or completed.returncode != 0:
            completed = _debootstrap(rootfs, mirror)
        if completed.returncode != 0:
            tail = "\n".join((completed.stdout + completed.stderr).splitlines()[-15:])
            raise EnvironmentProblem(
                f"debootstrap failed (exit {completed.returncode}):\n{tail}\n"
                f"check that {mirror} is reachable, or set {MIRROR_ENV}"
            )
        for leftover in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for entry in (rootfs / leftover).glob("*"):
                if entry.is_file():
                    entry.unlink()
        for cache in (rootfs / "var/cache/apt").glob("*.bin"):
            cache.unlink()
        progress(f"{BASE_IMAGE}: docker import as {ROOTFS_IMAGE} (the debootstrap cache)")
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
        )
        assert tar.stdout is not None
        try:
            engine.api.import_image(
                src=tar.stdout,
                repository=ROOTFS_IMAGE,
                tag=TAG,
                changes=[
                    f"LABEL {LABEL}=1 {HASH_LABEL}={_rootfs_hash()}",
                    'CMD ["bash"]',
                ],
                stream_src=True,
            )
        finally:
            tar.stdout.close()
            tar.wait()
    progress(f"{BASE_IMAGE}: debootstrap + import in {time.monotonic() - started:.1f} s")


def _debootstrap(
    rootfs: Path, mirror: str, *options: str, script: Path | None = None
) -> subprocess.CompletedProcess[str]:
    suite = [DEBIAN_SUITE, str(rootfs), mirror, *([str(script)] if script else [])]
    return subprocess.run(
        ["debootstrap", "--variant=minbase", *options, *suite],
        capture_output=True,
        text=True,
        check=False,
    )


def _minbase_packages(mirror: str) -> tuple[list[str], list[str]] | None:
    """minbase's required and base packages from the suite's Packages index (None when it
    cannot be read: debootstrap then resolves them itself, as it always did)."""
    try:
        arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip
        url = packages_index_url(mirror, DEBIAN_SUITE, arch)
        with urllib.request.urlopen(url, timeout=60) as response:
            index = lzma.decompress(response.read()).decode("utf-8", errors="replace")
    except (OSError, subprocess.SubprocessError, lzma.LZMAError, ValueError):
        return None
    # debootstrap adds ca-certificates for an HTTPS mirror (scripts/debian-common).
    https = mirror.startswith("https://")
    return minbase_packages(index, [*MINBASE_BASE, *(["ca-certificates"] if https else [])])


# --- images from Dockerfiles ---------------------------------------------------------------------


def _build_from_dockerfile(
    engine: docker.DockerClient,
    progress: Progress,
    image: str,
    context: Path,
    base_hash: str,
    rebuild: bool,
    *,
    tag: str | None = None,
    wanted: str | None = None,
    describe: str | None = None,
) -> str:
    """Build `context`'s Dockerfile on the base; returns the new image's id."""
    wanted = wanted or _tree_hash(context, base_hash)
    target = tag or f"{image}:{TAG}"
    if not rebuild and tag is None and _current(engine, image, wanted):
        progress(f"{image}: up to date")
        return engine.images.get(target).id
    started = time.monotonic()
    source = describe or f"{context.relative_to(docker_dir().parent)}/Dockerfile"
    progress(f"{image}: building from {source}")
    log: list[str] = []
    image_id = ""
    for chunk in engine.api.build(
        path=str(context),
        tag=target,
        buildargs={"BASE": f"{BASE_IMAGE}:{TAG}"},
        labels=_image_labels(wanted),
        rm=True,
        forcerm=True,
        decode=True,
    ):
        if "stream" in chunk:
            for line in chunk["stream"].splitlines():
                log.append(line)
                if line.startswith("Step "):
                    progress(f"{image}: {_shorten(line)}")
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
        if "error" in chunk:
            tail = "\n".join(log[-15:] + [chunk["error"]])
            raise EnvironmentProblem(
                f"building {image} failed:\n{tail}\n"
                "check that the Debian mirror answers (`apt-get update` on this machine), "
                "then run `egress images build` again"
            )
    progress(f"{image}: built in {time.monotonic() - started:.1f} s")
    return image_id or engine.images.get(target).id


def _shorten(line: str, width: int = 90) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."


# --- the gateway: system layer from its Dockerfile, Python packages by run + commit ---------------

# The gateway's Python is Debian's python3 of the base's suite; the wheels fetched ahead are for it.
GATEWAY_PYTHON = {"trixie": "3.13"}
BUILD_WHEELS_DIR = "/run/egress-build-wheels"


class GatewayWheels:
    """The gateway's Python packages as wheels, downloaded by this machine's pip into `folder`
    while the base image is made: on a fresh engine debootstrap comes first (~50 s here), and
    the download was ~10 s of the gateway's pip step that waits for it. The gateway's pip then
    installs from the folder without an index, and from its index when they do not fit."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: subprocess.Popen[str] | None = None
        self.started = 0.0

    def start(self, progress: Progress) -> None:
        version = GATEWAY_PYTHON.get(DEBIAN_SUITE)
        if version is None or importlib.util.find_spec("pip") is None:
            return
        machine = platform.machine()
        platforms = [f"manylinux_2_{minor}_{machine}" for minor in range(41, 16, -1)]
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--no-cache-dir", "--only-binary=:all:", "--implementation", "cp",
            "--python-version", version, *(f"--platform={name}" for name in platforms),
            f"--platform=manylinux2014_{machine}", "--dest", str(self.folder),
            "--requirement", str(docker_dir() / "gateway" / "requirements.txt"),
        ]  # fmt: skip
        progress(f"{GATEWAY_IMAGE}: downloading its wheels while the base is made")
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, text=True)  # fmt: skip

    def ready(self, progress: Progress) -> Path | None:
        """The folder once the download is done, or None (not started, or it failed)."""
        if self.process is None:
            return None
        code = self.process.wait()
        if code != 0:
            progress(f"{GATEWAY_IMAGE}: downloading the wheels ahead failed (pip exit {code}); "
                     "pip in the image downloads them")  # fmt: skip
            return None
        return self.folder

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _build_gateway(
    engine: docker.DockerClient,
    progress: Progress,
    base_hash: str,
    rebuild: bool,
    wheels: GatewayWheels | None = None,
) -> None:
    context = docker_dir() / "gateway"
    wanted = _tree_hash(context, base_hash)
    if not rebuild and _current(engine, GATEWAY_IMAGE, wanted):
        progress(f"{GATEWAY_IMAGE}: up to date")
        return
    if not Path(HOST_CA_BUNDLE).is_file():
        raise EnvironmentProblem(
            f"{HOST_CA_BUNDLE} is missing; the gateway's Python packages are downloaded with the "
            "host's CA bundle (install ca-certificates)"
        )
    system_layer = _build_from_dockerfile(
        engine,
        progress,
        GATEWAY_IMAGE,
        context,
        base_hash,
        rebuild,
        tag=f"{GATEWAY_IMAGE}:system",
        wanted=wanted,
    )
    wheels_dir = wheels.ready(progress) if wheels is not None else None
    started = time.monotonic()
    progress(
        f"{GATEWAY_IMAGE}: pip install -r requirements.txt (host CA mounted for this step only"
        f"{'; from the wheels downloaded ahead' if wheels_dir else ''})"
    )
    run_id = new_run_id("build-gateway")
    # A folder holding a copy is mounted, not the file: a file mount leaves an empty placeholder
    # file in the layer, a folder mount only an empty folder.
    ca_dir = tempfile.mkdtemp(prefix="egress-build-ca-")
    shutil.copy(HOST_CA_BUNDLE, Path(ca_dir) / "ca.crt")
    os.chmod(ca_dir, 0o755)
    install = (
        "/opt/egress/venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check"
        " -r /opt/egress/requirements.txt"
    )
    online = f"{install} --cert {BUILD_CA_FILE}"
    # Offline from the wheels when they are there; a resolution that fails installs nothing.
    offline = f"{install} --no-index --find-links {BUILD_WHEELS_DIR} || " if wheels_dir else ""
    volumes = {ca_dir: {"bind": BUILD_CA_DIR, "mode": "ro"}}
    if wheels_dir is not None:
        volumes[str(wheels_dir)] = {"bind": BUILD_WHEELS_DIR, "mode": "ro"}
    try:
        with labelled_container(
            engine,
            system_layer,
            run_id=run_id,
            role="build",
            what="the gateway's package install",
            entrypoint=["/bin/sh", "-c"],
            command=[f"( {offline}{online} ) && /opt/egress/venv/bin/mitmdump --version"],
            volumes=volumes,
        ) as container:
            container.start()
            status = container.wait(timeout=900)
            output = container.logs().decode(errors="replace")
            if status.get("StatusCode") != 0:
                tail = "\n".join(output.splitlines()[-15:])
                raise EnvironmentProblem(
                    f"installing the gateway's Python packages failed:\n{tail}\n"
                    "check that pip's index answers from this machine, then run "
                    "`egress images build` again"
                )
            _refuse_ca_in_layer(container)
            container.commit(
                repository=GATEWAY_IMAGE,
                tag=TAG,
                changes=[
                    f"LABEL {LABEL}=1 {HASH_LABEL}={wanted}",
                    "ENV PYTHONPATH=/opt/egress PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1",
                    'ENTRYPOINT ["/opt/egress/entrypoint.sh"]',
                    "CMD []",
                    "WORKDIR /",
                ],
            )
    finally:
        shutil.rmtree(ca_dir, ignore_errors=True)
    try:
        engine.images.remove(f"{GATEWAY_IMAGE}:system", noprune=True)
    except APIError:
        pass
    version = next((line for line in output.splitlines() if line.startswith("Mitmproxy")), "")
    progress(f"{GATEWAY_IMAGE}: built in {time.monotonic() - started:.1f} s ({version.strip()})")


_NOT_IN_A_LAYER = (
    f"{BUILD_CA_DIR}/",
    f"{BUILD_WHEELS_DIR}/",
    "/etc/ssl/",
    "/usr/local/share/ca-cert",
)


def _refuse_ca_in_layer(container: docker.models.containers.Container) -> None:
    """The bind-mounted bundle must not have been copied anywhere the commit would keep."""
    changes = container.diff() or []
    leaked = [change["Path"] for change in changes if change["Path"].startswith(_NOT_IN_A_LAYER)]
    if leaked:
        raise EnvironmentProblem(
            f"the gateway build wrote a CA bundle into its layer ({json.dumps(leaked)}); "
            "refusing to commit it"
        )
