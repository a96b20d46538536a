# Loaded by Terraform (and the harness) for this folder without being named.
environment = "ci"

application_collections = {
  python = {
    priority = 200
    rules = [
      {
        name  = "index"
        fqdns = ["PyPI.Index.test", "files.pypi-cdn.test"]
      },
    ]
  }
  oryx = {
    priority = 300
    rules = [
      {
        name        = "sdk-cdn"
        fqdns       = ["oryx-cdn.microsoft.io"]
        description = "Oryx downloads SDKs from here"
      },
      {
        name      = "plain-http-mirror"
        fqdns     = ["mirror.build.test"]
        protocols = ["Http:80", "Https:8443"]
      },
    ]
  }
}
