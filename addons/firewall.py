from harness.gateway.addon import Firewall

addons = [Firewall()]
