# A classic Azure Firewall (rules on the firewall, no policy), in the provider documentation's
# older style: quoted interpolations and string ports.

variable "firewall_name" {
  default = "fw-classic"
}

variable "agent_subnet" {
  default = "10.40.0.0/24"
}

resource "azurerm_resource_group" "test" {
  name     = "rg-classic"
  location = "West Europe"
}

resource "azurerm_firewall" "test" {
  name                = "${var.firewall_name}"
  location            = "${azurerm_resource_group.test.location}"
  resource_group_name = "${azurerm_resource_group.test.name}"
  sku_name            = "AZFW_VNet"
  sku_tier            = "Standard"

  ip_configuration {
    name                 = "configuration"
    subnet_id            = "${azurerm_resource_group.test.id}/subnets/AzureFirewallSubnet"
    public_ip_address_id = "${azurerm_resource_group.test.id}/publicIPAddresses/pip"
  }
}

resource "azurerm_firewall_application_rule_collection" "registries" {
  name                = "registries"
  azure_firewall_name = "${azurerm_firewall.test.name}"
  resource_group_name = "${azurerm_resource_group.test.name}"
  priority            = 200
  action              = "Allow"

  rule {
    name = "npm"

    source_addresses = [
      "${var.agent_subnet}",
    ]

    target_fqdns = [
      "*.npm-registry.test",
    ]

    protocol {
      port = "443"
      type = "Https"
    }
  }

  rule {
    name             = "sql"
    source_addresses = ["${var.agent_subnet}"]
    target_fqdns     = ["db.build.test"]

    protocol {
      port = "1433"
      type = "Mssql"
    }
  }
}

resource "azurerm_firewall_application_rule_collection" "deny_social" {
  name                = "deny-social"
  azure_firewall_name = azurerm_firewall.test.name
  resource_group_name = azurerm_resource_group.test.name
  priority            = 100
  action              = "Deny"

  rule {
    name             = "social"
    source_addresses = ["*"]
    target_fqdns     = ["*.social.test"]

    protocol {
      port = "443"
      type = "Https"
    }
  }
}

resource "azurerm_firewall_network_rule_collection" "dns" {
  name                = "dns"
  azure_firewall_name = azurerm_firewall.test.name
  resource_group_name = azurerm_resource_group.test.name
  priority            = 100
  action              = "Allow"

  rule {
    name                  = "resolvers"
    source_addresses      = [var.agent_subnet]
    destination_ports     = ["53"]
    destination_addresses = ["198.51.100.53", "198.51.100.54"]
    protocols             = ["TCP", "UDP"]
  }
}

resource "azurerm_firewall_nat_rule_collection" "inbound" {
  name                = "inbound"
  azure_firewall_name = azurerm_firewall.test.name
  resource_group_name = azurerm_resource_group.test.name
  priority            = 100
  action              = "Dnat"

  rule {
    name                  = "web"
    source_addresses      = ["*"]
    destination_ports     = ["8080"]
    destination_addresses = ["198.51.100.80"]
    translated_port       = 80
    translated_address    = "10.40.1.10"
    protocols             = ["TCP"]
  }
}
