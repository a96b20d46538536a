"""The only package that imports mitmproxy: the firewall addon and its options."""

from harness.gateway.addon import FirewallAddon

__all__ = ["FirewallAddon"]
