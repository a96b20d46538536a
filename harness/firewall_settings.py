"""The firewall's run settings, named once: every loader, the CLI's choices, the gateway's
options and the Decider take their vocabulary from here."""

from __future__ import annotations

__all__ = ["DNS_MODES", "HTTPS_DENY_STYLES", "MODES", "DnsMode", "HttpsDeny", "Mode"]

from typing import Literal, get_args

# enforce: decisions are carried out; audit: everything is allowed and what enforce would have
# done is recorded beside it.
Mode = Literal["enforce", "audit"]
# How a denied HTTPS connection ends: close (Azure's EOF after the ClientHello), a fatal TLS
# alert, or drop (held silent, so clients hit their own timeouts).
HttpsDeny = Literal["close", "alert", "drop"]
# How the firewall's DNS answers (harness.gateway.sinkhole): azure, as Azure DNS and the
# firewall's DNS proxy do (a name with no answer here gets a sinkhole address, so the build
# connects and the firewall decides it by name), or resolve (real answers only).
DnsMode = Literal["azure", "resolve"]

MODES: tuple[str, ...] = get_args(Mode)
HTTPS_DENY_STYLES: tuple[str, ...] = get_args(HttpsDeny)
DNS_MODES: tuple[str, ...] = get_args(DnsMode)
