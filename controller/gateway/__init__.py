"""The gateway machine's kernel and daemons: nftables, tc, conntrack, the neighbour table,
namespaces, dnsmasq, nginx, AP health probes. Imports the config only.
"""
