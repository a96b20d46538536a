# A build subnet's egress policy, written the way teams keep theirs: the rules in variables,
# the blocks generated with dynamic, the values per environment in tfvars files.

variable "environment" {
  type        = string
  description = "Short environment name, used in resource names"
  default     = "dev"
}

variable "location" {
  type    = string
  default = "westeurope"
}

variable "build_subnets" {
  type        = list(string)
  description = "Address prefixes of the App Service integration subnets"
  default     = ["10.20.1.0/24"]
}

variable "base_priority" {
  type    = number
  default = 300
}

variable "application_collections" {
  description = "Application rule collections by name"
  type = map(object({
    priority = number
    action   = optional(string, "Allow")
    rules = list(object({
      name        = string
      fqdns       = list(string)
      protocols   = optional(list(string), ["Https:443"])
      description = optional(string)
    }))
  }))
  default = {}
}

variable "blocked_fqdns" {
  type    = set(string)
  default = []
}

variable "ntp_servers" {
  type    = list(string)
  default = ["192.0.2.123"]
}
