environment   = "prod"
build_subnets = ["10.30.1.0/24", "10.30.2.0/24"]
base_priority = 500
blocked_fqdns = ["telemetry.vendor.test", "ads.vendor.test"]
