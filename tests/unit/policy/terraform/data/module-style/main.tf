variable "app_subnet" {
  type = string
}

variable "groups" {
  description = "Rule collection groups by name; each becomes one module call's worth of rules"
  type = map(object({
    priority     = number
    allow_fqdns  = list(string)
    deny_fqdns   = optional(list(string), [])
    ssh_hosts    = optional(list(string), [])
  }))
}

resource "azurerm_resource_group" "hub" {
  name     = "rg-hub"
  location = "northeurope"
}

resource "azurerm_firewall_policy" "hub" {
  name                = "fw-hub-policy"
  resource_group_name = azurerm_resource_group.hub.name
  location            = azurerm_resource_group.hub.location
}

resource "azurerm_ip_group" "apps" {
  name                = "ipg-apps"
  resource_group_name = azurerm_resource_group.hub.name
  location            = azurerm_resource_group.hub.location
  cidrs               = [var.app_subnet]
}

module "app_rules" {
  source = "./modules/rule-collection-group"

  firewall_policy_id = azurerm_firewall_policy.hub.id
  name               = "AppRules"
  priority           = 500

  application_rule_collections = concat(
    [for name, group in var.groups : {
      name     = "deny-${name}"
      priority = group.priority
      action   = "Deny"
      rules = [{
        name              = "deny"
        source_ip_groups  = [azurerm_ip_group.apps.id]
        destination_fqdns = group.deny_fqdns
        protocols         = [{ type = "Https", port = 443 }]
      }]
    } if length(group.deny_fqdns) > 0],
    [for name, group in var.groups : {
      name     = "allow-${name}"
      priority = group.priority + 50
      action   = "Allow"
      rules = [for index, fqdn in group.allow_fqdns : {
        name              = "${name}-${index}"
        source_ip_groups  = [azurerm_ip_group.apps.id]
        destination_fqdns = [fqdn]
        protocols         = [{ type = "Https", port = 443 }, { type = "Http", port = 80 }]
      }]
    }],
  )

  network_rule_collections = [{
    name     = "ssh"
    priority = 100
    action   = "Allow"
    rules = [for host in distinct(flatten(values(var.groups)[*].ssh_hosts)) : {
      name              = replace(host, ".", "-")
      protocols         = ["TCP"]
      source_addresses  = [var.app_subnet]
      destination_fqdns = [host]
      destination_ports = ["22"]
    }]
  }]
}

output "group_id" {
  value = module.app_rules.id
}
