"""The one place that labels Docker resources, so `gc` and the tests can find every leftover."""

from __future__ import annotations

__all__ = [
    "HASH_LABEL",
    "LABEL",
    "ROLE_LABEL",
    "RUN_LABEL",
    "create_network",
    "labels",
    "new_run_id",
    "safe_name",
    "selector",
]

import re
import secrets
import time

LABEL = "egress-harness"
RUN_LABEL = "egress-harness.run"
ROLE_LABEL = "egress-harness.role"
HASH_LABEL = "egress-harness.hash"

_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]+")


def labels(run_id: str, role: str = "") -> dict[str, str]:
    """Labels for a container, network or volume that belongs to one run."""
    result = {LABEL: "1", RUN_LABEL: run_id}
    if role:
        result[ROLE_LABEL] = role
    return result


def selector(run_id: str | None = None) -> dict[str, list[str]]:
    """A docker `filters` value selecting everything labelled (for one run, when given)."""
    wanted = [f"{LABEL}=1"]
    if run_id is not None:
        wanted.append(f"{RUN_LABEL}={run_id}")
    return {"label": wanted}


def new_run_id(hint: str = "") -> str:
    """A run id that is also safe inside container names: `<UTC time>-<hint>-<random>`."""
    hint = _UNSAFE.sub("-", hint).strip("-.")[:48]
    # A run folder's name already starts with its time; don't say it twice.
    stamp = (
        "" if re.match(r"^\d{8}T\d{6}", hint) else time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    )
    parts = [stamp, hint, secrets.token_hex(3)]
    return "-".join(part for part in parts if part)


def safe_name(text: str) -> str:
    """`text` reduced to what Docker accepts in a container or network name."""
    return _UNSAFE.sub("-", text).strip("-.") or "run"


def create_network(
    engine, run_id: str, role: str, ipv6_subnet: str | None = None, internal: bool = False
):
    """A labelled user-defined bridge network the gateway joins (fixture upstreams, the
    scenario's client); `internal`: Docker gives it no route out."""
    from docker.types import IPAMConfig, IPAMPool

    options: dict = {"internal": True} if internal else {}
    if ipv6_subnet:
        options |= {
            "enable_ipv6": True,
            "ipam": IPAMConfig(pool_configs=[IPAMPool(subnet=ipv6_subnet)]),
        }
    return engine.networks.create(
        f"egress-{safe_name(run_id)}-{role}",
        driver="bridge",
        labels=labels(run_id, role),
        **options,
    )
