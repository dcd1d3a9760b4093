#!/bin/sh
# udhcpc's event script for the lab's phones: apply the lease, and write what the DHCP
# server said to $LAB_LEASE_OUT (one VAR=value per line) for the tests to read.
case "$1" in
  bound|renew)
    ip -4 addr flush dev "$interface"  # IPv4 only: SLAAC keeps its addresses
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}"
    env | grep -E '^(ip|mask|router|dns|lease|opt[0-9]+)=' > "$LAB_LEASE_OUT"
    ;;
esac
exit 0
