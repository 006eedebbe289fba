#!/bin/sh
# A stand-in for dockerd's start on a node with a stored bridge network, for
# the boot test (where no dockerd can run). It does what the real dockerd
# (Debian docker.io 20.10, default --userland-proxy) does to the nat table,
# as measured, and tests/it/docker.rs compares the table it leaves with the
# one the real dockerd leaves, so the two cannot drift apart:
#   1. its DOCKER chain and the jumps to it are removed and made again;
#   2. the stored network is deleted, and with it the broad MASQUERADE rule
#      (the first copy, which may be podsnat's);
#   3. the network is created again: `-C` fails, so the rule is inserted on
#      top of POSTROUTING;
#   4. a restart-policy container comes back with its port map.
# Stopping dockerd stops the container, which removes its port map and
# nothing else. With IP_MASQ=false in the environment it acts as dockerd
# --ip-masq=false ("ip-masq": false), which leaves the broad rule (and
# the bridge's RETURN in DOCKER) alone.
# With ip6tables (dockerd --ipv6 --ip6tables) it does the same to the IPv6
# nat table, where docker's OUTPUT rule skips ::1/128 instead.
# Usage: [IP_MASQ=false] docker-standin.sh start|stop IPTABLES SUBNET BRIDGE CONTAINER_IP
set -eu
ACTION=$1 IPT=$2 SUBNET=$3 BRIDGE=$4 IP=$5
case "${IPT##*/}" in
  ip6tables*) LOOPBACK=::1/128 HOST=128 TO="[$IP]:80" ;;
  *) LOOPBACK=127.0.0.0/8 HOST=32 TO="$IP:80" ;;
esac
ipt() { "$IPT" -w 5 -t nat "$@"; }
quiet() { ipt "$@" 2>/dev/null || true; }
hairpin() { ipt "$1" POSTROUTING -s "$IP/$HOST" -d "$IP/$HOST" -p tcp -m tcp --dport 80 -j MASQUERADE; }
port_map() { ipt "$1" DOCKER ! -i "$BRIDGE" -p tcp -m tcp --dport 8080 -j DNAT --to-destination "$TO"; }

if [ "$ACTION" = stop ]; then
  hairpin -D
  port_map -D
  exit 0
fi

quiet -D PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
quiet -D OUTPUT -m addrtype --dst-type LOCAL ! -d "$LOOPBACK" -j DOCKER
quiet -D OUTPUT -m addrtype --dst-type LOCAL -j DOCKER
quiet -F DOCKER
quiet -X DOCKER
ipt -N DOCKER
ipt -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
ipt -A OUTPUT -m addrtype --dst-type LOCAL ! -d "$LOOPBACK" -j DOCKER

if [ "${IP_MASQ:-true}" != false ]; then
  set -- POSTROUTING -s "$SUBNET" ! -o "$BRIDGE" -j MASQUERADE
  if ipt -C "$@" 2>/dev/null; then ipt -D "$@"; fi
  ipt -C "$@" 2>/dev/null || ipt -I "$@"
  # Measured: without ip-masq docker adds no RETURN for its bridge either.
  ipt -I DOCKER -i "$BRIDGE" -j RETURN
fi

hairpin -A
port_map -A
