from harness.gateway.addon import FirewallAddon

addons = [FirewallAddon()]
