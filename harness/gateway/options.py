"""The addon's options, parsed once by pure functions so a bad value stops mitmdump at start."""

from __future__ import annotations

__all__ = ["GatewayConfig", "parse_options"]

from dataclasses import dataclass
from pathlib import Path

from harness.firewall_settings import DNS_MODES, HTTPS_DENY_STYLES, MODES
from harness.policy.model import Policy


@dataclass(frozen=True)
class GatewayConfig:
    policy: Policy
    mode: str
    https_deny: str
    record_dir: Path | None
    run_id: str
    drop_seconds: float
    dns: str = "azure"
    dns_seconds: float = 3.0


def parse_options(
    policy_path: str, mode: str, https_deny: str, record_dir: str, run_id: str,
    drop_seconds: float, dns: str = "azure", dns_seconds: float = 3.0,
) -> GatewayConfig:  # fmt: skip
    """Raises ValueError (with the fix) for a bad value; the addon turns it into OptionsError."""
    from harness.errors import HarnessError
    from harness.policy.load import load_policy

    if mode not in MODES:
        raise ValueError(f"egress_mode must be one of {', '.join(MODES)}, not {mode!r}")
    if https_deny not in HTTPS_DENY_STYLES:
        raise ValueError(
            f"egress_https_deny must be one of {', '.join(HTTPS_DENY_STYLES)}, not {https_deny!r}"
        )
    if dns not in DNS_MODES:
        raise ValueError(f"egress_dns must be one of {', '.join(DNS_MODES)}, not {dns!r}")
    if dns_seconds <= 0:
        raise ValueError(f"egress_dns_ms must be positive, not {dns_seconds * 1000:g}")
    if drop_seconds <= 0:
        raise ValueError(f"egress_drop_seconds must be positive, not {drop_seconds}")
    if policy_path:
        try:
            policy = load_policy(policy_path)
        except HarnessError as error:
            raise ValueError(str(error)) from None
    else:
        policy = Policy("deny-all")
    return GatewayConfig(
        policy=policy,
        mode=mode,
        https_deny=https_deny,
        record_dir=Path(record_dir) if record_dir else None,
        run_id=run_id,
        drop_seconds=float(drop_seconds),
        dns=dns,
        dns_seconds=float(dns_seconds),
    )
