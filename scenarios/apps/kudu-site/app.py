# The app `az webapp deploy` uploads in the Kudu scenarios; its content does not matter to the
# firewall, only that Kudu unpacks it and then calls its own SCM site.
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"deployed through a simulated Kudu\n"]
