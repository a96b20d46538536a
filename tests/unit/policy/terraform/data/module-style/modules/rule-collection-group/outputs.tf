output "id" {
  value = azurerm_firewall_policy_rule_collection_group.this.id
}
