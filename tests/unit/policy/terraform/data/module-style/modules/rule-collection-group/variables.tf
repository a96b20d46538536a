# A reusable module in the style of the registry's firewall policy modules: every collection
# is an object list variable with optional attributes, rendered with nested dynamic blocks.

variable "firewall_policy_id" {
  type     = string
  nullable = false
}

variable "name" {
  type = string
}

variable "priority" {
  type = number
}

variable "application_rule_collections" {
  type = list(object({
    name     = string
    priority = number
    action   = string
    rules = list(object({
      name              = string
      description       = optional(string)
      source_addresses  = optional(list(string), [])
      source_ip_groups  = optional(list(string), [])
      destination_fqdns = optional(list(string), [])
      terminate_tls     = optional(bool)
      protocols = optional(list(object({
        type = string
        port = number
      })))
    }))
  }))
  default = null
}

variable "network_rule_collections" {
  type = list(object({
    name     = string
    priority = number
    action   = string
    rules = list(object({
      name                  = string
      protocols             = list(string)
      destination_ports     = list(string)
      source_addresses      = optional(list(string), [])
      source_ip_groups      = optional(list(string), [])
      destination_addresses = optional(list(string), [])
      destination_fqdns     = optional(list(string), [])
    }))
  }))
  default = null
}
