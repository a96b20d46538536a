locals {
  name_prefix = "fw-${var.environment}"
  tags = merge({ workload = "build" }, { environment = lower(var.environment) })

  # Every rule of every collection, flattened, so each gets a stable address.
  application_rules = flatten([
    for collection_name, collection in var.application_collections : [
      for rule in collection.rules : {
        collection = collection_name
        name       = rule.name
      }
    ]
  ])

  kudu_hosts = distinct(concat(
    ["*.scm.azurewebsites.net"],
    [for host in keys(var.application_collections) : format("%s.scm.azurewebsites.net", lower(host))],
  ))
}

resource "azurerm_resource_group" "network" {
  name     = "rg-${local.name_prefix}"
  location = var.location
}

resource "azurerm_firewall_policy" "build" {
  name                = "${local.name_prefix}-policy"
  resource_group_name = azurerm_resource_group.network.name
  location            = azurerm_resource_group.network.location
  sku                 = "Standard"
  tags                = local.tags

  dns {
    proxy_enabled = true
  }
}

resource "azurerm_ip_group" "build_agents" {
  name                = "${local.name_prefix}-agents"
  resource_group_name = azurerm_resource_group.network.name
  location            = var.location
  cidrs               = var.build_subnets
}

resource "azurerm_ip_group" "time_servers" {
  name                = "${local.name_prefix}-ntp"
  resource_group_name = azurerm_resource_group.network.name
  location            = var.location
  cidrs               = var.ntp_servers
}

resource "azurerm_firewall_policy_rule_collection_group" "platform" {
  name               = "Platform"
  firewall_policy_id = azurerm_firewall_policy.build.id
  priority           = var.base_priority - 100

  network_rule_collection {
    name     = "time"
    priority = 100
    action   = "Allow"

    rule {
      name                  = "ntp"
      protocols             = ["UDP"]
      source_ip_groups      = [azurerm_ip_group.build_agents.id]
      destination_ip_groups = [azurerm_ip_group.time_servers.id]
      destination_ports     = ["123"]
    }
  }

  nat_rule_collection {
    name     = "inbound-ssh"
    priority = 200
    action   = "Dnat"

    rule {
      name                = "jump-host"
      protocols           = ["TCP"]
      source_addresses    = ["203.0.113.0/24"]
      destination_address = "198.51.100.10"
      destination_ports   = ["22"]
      translated_address  = "10.20.9.4"
      translated_port     = "22"
    }
  }
}

resource "azurerm_firewall_policy_rule_collection_group" "build" {
  name               = "Build-${var.environment}"
  firewall_policy_id = azurerm_firewall_policy.build.id
  priority           = var.base_priority

  dynamic "application_rule_collection" {
    for_each = length(var.blocked_fqdns) > 0 ? { blocked = var.blocked_fqdns } : {}
    iterator = denied
    content {
      name     = "deny-${denied.key}"
      priority = 100
      action   = "Deny"

      rule {
        name              = "blocked"
        source_addresses  = ["*"]
        destination_fqdns = tolist(denied.value)

        protocols {
          type = "Http"
          port = 80
        }
        protocols {
          type = "Https"
          port = 443
        }
      }
    }
  }

  dynamic "application_rule_collection" {
    for_each = var.application_collections
    content {
      name     = application_rule_collection.key
      priority = application_rule_collection.value.priority
      action   = application_rule_collection.value.action

      dynamic "rule" {
        for_each = application_rule_collection.value.rules
        content {
          name              = rule.value.name
          description       = rule.value.description
          source_ip_groups  = [azurerm_ip_group.build_agents.id]
          destination_fqdns = [for fqdn in rule.value.fqdns : lower(fqdn)]

          dynamic "protocols" {
            for_each = rule.value.protocols
            content {
              type = split(":", protocols.value)[0]
              port = tonumber(split(":", protocols.value)[1])
            }
          }
        }
      }
    }
  }

  application_rule_collection {
    name     = "kudu"
    priority = 900
    action   = "Allow"

    rule {
      name              = "scm"
      source_addresses  = var.build_subnets
      destination_fqdns = local.kudu_hosts

      protocols {
        type = "Https"
        port = 443
      }
    }
  }
}

output "policy_id" {
  value = azurerm_firewall_policy.build.id
}
