"""The gateway machine's kernel and daemons: nftables, tc, conntrack, the neighbour table,
namespaces, dnsmasq, nginx, AP health probes. Imports the config, the identifiers of
services.identity, and (AP health only) the day of services.rules and the store for its
samples and events.
"""
