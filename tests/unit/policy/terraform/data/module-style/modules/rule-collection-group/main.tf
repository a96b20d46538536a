resource "azurerm_firewall_policy_rule_collection_group" "this" {
  name               = var.name
  priority           = var.priority
  firewall_policy_id = var.firewall_policy_id

  dynamic "network_rule_collection" {
    for_each = var.network_rule_collections == null ? [] : var.network_rule_collections
    content {
      name     = network_rule_collection.value.name
      priority = network_rule_collection.value.priority
      action   = network_rule_collection.value.action

      dynamic "rule" {
        for_each = network_rule_collection.value.rules
        content {
          name                  = rule.value.name
          protocols             = rule.value.protocols
          source_addresses      = rule.value.source_addresses
          source_ip_groups      = rule.value.source_ip_groups
          destination_addresses = rule.value.destination_addresses
          destination_fqdns     = rule.value.destination_fqdns
          destination_ports     = rule.value.destination_ports
        }
      }
    }
  }

  dynamic "application_rule_collection" {
    for_each = var.application_rule_collections == null ? [] : var.application_rule_collections
    content {
      name     = application_rule_collection.value.name
      priority = application_rule_collection.value.priority
      action   = application_rule_collection.value.action

      dynamic "rule" {
        for_each = application_rule_collection.value.rules
        content {
          name              = rule.value.name
          description       = rule.value.description
          source_addresses  = rule.value.source_addresses
          source_ip_groups  = rule.value.source_ip_groups
          destination_fqdns = rule.value.destination_fqdns
          terminate_tls     = rule.value.terminate_tls

          dynamic "protocols" {
            for_each = rule.value.protocols == null ? [] : rule.value.protocols
            content {
              type = protocols.value.type
              port = protocols.value.port
            }
          }
        }
      }
    }
  }
}
