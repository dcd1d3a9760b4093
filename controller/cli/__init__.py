"""The `wifikota` command: parses arguments, calls services, prints tables or JSON. May import
every layer of the controller, never the portal's internals.
"""
