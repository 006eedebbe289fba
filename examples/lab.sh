#!/usr/bin/env bash
# A two-host flannel lab in network namespaces, for the cross-host test
# (tests/it/crosshost.rs) and the demo (examples/demo.sh). Nothing here touches
# the host's own network: every link and rule lives in the lab's namespaces.
#
#   host A (LAB-a) 10.4.7.21 ----- node network ----- 10.4.7.22 host B (LAB-b)
#     | BRIDGE 172.7.21.1/24                      BRIDGE 172.7.22.1/24 |
#   pod A (LAB-pa) 172.7.21.2                     pod B (LAB-pb) 172.7.22.2
#     | 10.9.0.1
#   outside (LAB-out) 10.9.0.2, default route via host A
#
# Host-gw style routes send each pod subnet to the other host; EXTRA, if
# set (e.g. 10.96.0.10/12), is an extra address on host B, routed from A.
#
# Dual stack: with SUBNET6_A and SUBNET6_B (/64s, e.g. fd00:7:0:21::/64) every
# link gets IPv6 too: hosts fd00:4:7::21 and ::22, bridges ::1, pods ::2,
# host A fd00:9::1 and the outside host fd00:9::2.
#
# A containerd-style host A: with CNI_PATH (the CNI plugins' directory,
# e.g. /usr/lib/cni), host A's bridge and pod A are made by the real CNI
# `bridge` plugin, called as containerd calls it ("isGateway": true,
# "ipMasq": true, host-local IPAM over SUBNET_A: pod A gets .2, the next
# pod .3; the network config is /run/LAB-cni.conf). CNI_IPTABLES, if set, is a directory put first on the plugin's
# PATH (an `iptables` there picks the backend). `cni ADD|DEL NAME ID` adds
# or deletes a pod (namespace LAB-NAME) as kubelet does through the
# runtime.
#
# Usage (as root; settings come from the environment):
#   LAB=x BRIDGE=docker0 SUBNET_A=172.7.21.0/24 SUBNET_B=172.7.22.0/24 [EXTRA=ip/len] \
#     [SUBNET6_A=fd00:7:0:21::/64 SUBNET6_B=fd00:7:0:22::/64] lab.sh up
#   LAB=x lab.sh probe FROM_NS TO_NS TO_IP [VIA_IP]  # prints the source address TO_NS saw
#                                             # (VIA_IP: connect there, a service IP that DNATs to TO_IP;
#                                             # PROBE_WAIT: seconds to wait for the connection, 3)
#   LAB=x lab.sh http FROM_NS IP PORT         # prints the last line of an HTTP GET
#   LAB=x CNI_PATH=/usr/lib/cni lab.sh cni ADD|DEL NAME ID   # a CNI pod on host A
#   LAB=x lab.sh down
# Pod subnets must be /24s: the gateway is .1 and the pod is .2.
set -euo pipefail

: "${LAB:?set LAB to a short unique name}"
NODE_A=10.4.7.21 NODE_B=10.4.7.22 OUT_A=10.9.0.1 OUT_X=10.9.0.2
NODE6_A=fd00:4:7::21 NODE6_B=fd00:4:7::22 OUT6_A=fd00:9::1 OUT6_X=fd00:9::2
PORT=8080

# First three octets of a /24, e.g. 172.7.21.0/24 -> 172.7.21
base() {
  [[ $1 =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.0/24$ ]] || { echo "lab.sh: $1 is not a x.y.z.0/24 subnet" >&2; exit 1; }
  echo "${BASH_REMATCH[1]}"
}
# The prefix of an IPv6 /64 written NETWORK::/64, e.g. fd00:7:0:21::/64 -> fd00:7:0:21
base6() {
  [[ $1 =~ ^([0-9a-f:]+)::/64$ ]] || { echo "lab.sh: $1 is not a x:y:z:w::/64 subnet" >&2; exit 1; }
  echo "${BASH_REMATCH[1]}"
}
# A lab host by name (a, b, pa, pb, out), or any process's network
# namespace as pid:PID (a docker container's, say).
in_ns() {
  case $1 in
    pid:*) nsenter -t "${1#pid:}" -n "${@:2}" ;;
    *) ip netns exec "$LAB-$1" "${@:2}" ;;
  esac
}

up() {
  : "${BRIDGE:?}" "${SUBNET_A:?}" "${SUBNET_B:?}"
  local a b
  a=$(base "$SUBNET_A") b=$(base "$SUBNET_B")
  for ns in a b pa pb out; do ip netns add "$LAB-$ns"; in_ns "$ns" ip link set lo up; done
  # Links are created straight inside the namespaces, so their names never
  # meet the host's interfaces.
  ip link add eth0 netns "$LAB-a" type veth peer name eth0 netns "$LAB-b"
  ip link add eth1 netns "$LAB-a" type veth peer name eth0 netns "$LAB-out"
  [[ -n ${CNI_PATH:-} ]] || ip link add veth-pod netns "$LAB-a" type veth peer name eth0 netns "$LAB-pa"
  ip link add veth-pod netns "$LAB-b" type veth peer name eth0 netns "$LAB-pb"
  local host pod net node peer_net peer_node
  for host in a b; do
    if [[ $host == a ]]; then pod=pa net=$a node=$NODE_A peer_net=$SUBNET_B peer_node=$NODE_B
    else pod=pb net=$b node=$NODE_B peer_net=$SUBNET_A peer_node=$NODE_A; fi
    in_ns $host sysctl -qw net.ipv4.ip_forward=1
    in_ns $host ip addr add "$node/24" dev eth0
    in_ns $host ip link set eth0 up
    if [[ $host == a && -n ${CNI_PATH:-} ]]; then
      in_ns $host ip route add "$peer_net" via "$peer_node"   # flannel host-gw
      cni ADD pa a1
      continue
    fi
    in_ns $host ip link add "$BRIDGE" type bridge
    # A fixed MAC, as docker gives the bridge it creates: otherwise the
    # bridge takes its ports' lowest MAC, which changes when docker
    # recreates a container's veth, and the pod's ARP entry for the
    # gateway goes stale for seconds.
    in_ns $host ip link set "$BRIDGE" address "02:00:00:00:00:0$([[ $host == a ]] && echo 1 || echo 2)"
    in_ns $host ip addr add "$net.1/24" dev "$BRIDGE"
    in_ns $host ip link set "$BRIDGE" up
    in_ns $host ip link set veth-pod master "$BRIDGE" up
    in_ns $host ip route add "$peer_net" via "$peer_node"   # flannel host-gw
    in_ns $pod ip addr add "$net.2/24" dev eth0
    in_ns $pod ip link set eth0 up
    in_ns $pod ip route add default via "$net.1"
  done
  in_ns a ip addr add "$OUT_A/24" dev eth1
  in_ns a ip link set eth1 up
  in_ns out ip addr add "$OUT_X/24" dev eth0
  in_ns out ip link set eth0 up
  in_ns out ip route add default via "$OUT_A"
  if [[ -n ${SUBNET6_A:-} ]]; then up6; fi
  if [[ -n ${EXTRA:-} ]]; then
    in_ns b ip addr add "$EXTRA" dev lo
    in_ns a ip route add "${EXTRA%/*}/32" via "$NODE_B"
  fi
}

# The IPv6 half of a dual-stack lab. `nodad`: an address is usable at once,
# not after duplicate address detection's second or so.
up6() {
  : "${SUBNET6_B:?}"
  local a b host pod net node peer_net peer_node
  a=$(base6 "$SUBNET6_A") b=$(base6 "$SUBNET6_B")
  for host in a b; do
    if [[ $host == a ]]; then pod=pa net=$a node=$NODE6_A peer_net=$SUBNET6_B peer_node=$NODE6_B
    else pod=pb net=$b node=$NODE6_B peer_net=$SUBNET6_A peer_node=$NODE6_A; fi
    in_ns $host sysctl -qw net.ipv6.conf.all.forwarding=1
    in_ns $host ip addr add "$node/64" dev eth0 nodad
    in_ns $host ip addr add "$net::1/64" dev "$BRIDGE" nodad
    in_ns $host ip route add "$peer_net" via "$peer_node"
    in_ns $pod ip addr add "$net::2/64" dev eth0 nodad
    in_ns $pod ip route add default via "$net::1"
  done
  in_ns a ip addr add "$OUT6_A/64" dev eth1 nodad
  in_ns out ip addr add "$OUT6_X/64" dev eth0 nodad
  in_ns out ip route add default via "$OUT6_A"
}

# A real TCP connection from FROM to TO_IP:8080, where a socat listener in
# TO replies with the peer address it saw. Bounded by timeouts throughout.
probe() {
  local from=$1 to=$2 ip=$3 listener seen tcp=TCP addr=$3 via=${4:-$3}
  # An IPv6 address: socat's TCP6, with the address in brackets.
  if [[ $ip == *:* ]]; then tcp=TCP6 addr="[$ip]" via="[$via]"; fi
  # Started without in_ns's subshell, so that $! is the listener itself
  # (ip netns exec and nsenter exec it) and the kill below ends it: a
  # listener left behind would answer the next probe, and hold the
  # caller's output open until its timeout.
  local listen=(timeout 10 socat -T 5 "$tcp-LISTEN:$PORT,bind=$addr,reuseaddr" SYSTEM:'echo $SOCAT_PEERADDR')
  case $to in
    pid:*) nsenter -t "${to#pid:}" -n "${listen[@]}" & ;;
    *) ip netns exec "$LAB-$to" "${listen[@]}" & ;;
  esac
  listener=$!
  for _ in $(seq 100); do
    in_ns "$to" ss -Hltn "sport = :$PORT" | grep -q . && break
    sleep 0.02
  done
  seen=$(in_ns "$from" timeout 5 socat -T 3 - "$tcp:$via:$PORT,connect-timeout=${PROBE_WAIT:-3}" < /dev/null || true)
  kill "$listener" 2>/dev/null || true
  wait "$listener" 2>/dev/null || true
  echo "${seen:-none}"
}

# An HTTP GET from FROM to IP:PORT; prints the body's last line, or "none".
http() {
  local body
  local tcp=TCP addr=$2
  if [[ $2 == *:* ]]; then tcp=TCP6 addr="[$2]"; fi
  body=$(printf 'GET / HTTP/1.0\r\n\r\n' | in_ns "$1" timeout 5 socat -T 3 - "$tcp:$addr:$3,connect-timeout=3" 2>/dev/null | tail -n 1 || true)
  echo "${body:-none}"
}

# The CNI bridge plugin on host A: ADD sets up pod NAME (its namespace
# made first), DEL tears it down, as the runtime calls it for kubelet.
cni() {
  local cmd=$1 name=$2 id=$3
  if [[ $cmd == ADD && ! -e /run/netns/$LAB-$name ]]; then
    ip netns add "$LAB-$name"
    in_ns "$name" ip link set lo up
  fi
  # The network config, kept as a runtime keeps it (podsnat's cni_config
  # reads it), then handed to the plugin on stdin.
  printf '{"cniVersion":"0.4.0","name":"cbr0","type":"bridge","bridge":"%s","isGateway":true,"ipMasq":true,"ipam":{"type":"host-local","subnet":"%s","routes":[{"dst":"0.0.0.0/0"}],"dataDir":"/run/%s-cni"}}' \
    "$BRIDGE" "$SUBNET_A" "$LAB" > "/run/$LAB-cni.conf"
  in_ns a env PATH="${CNI_IPTABLES:+$CNI_IPTABLES:}$PATH" CNI_COMMAND="$cmd" CNI_CONTAINERID="$id" \
      CNI_NETNS="/run/netns/$LAB-$name" CNI_IFNAME=eth0 CNI_PATH="$CNI_PATH" "$CNI_PATH/bridge" < "/run/$LAB-cni.conf" > /dev/null
  if [[ $cmd == DEL ]]; then ip netns del "$LAB-$name"; fi
}

down() {
  # Every namespace of the lab, the CNI's pods among them.
  for ns in $(ip netns list | awk '{print $1}' | grep "^$LAB-" || true); do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "/run/$LAB-cni" "/run/$LAB-cni.conf"
}

case "${1:-}" in
  up) up ;;
  probe) probe "${@:2}" ;;
  http) http "$2" "$3" "$4" ;;
  cni) cni "$2" "$3" "$4" ;;
  down) down ;;
  *) sed -n '2,36p' "$0" >&2; exit 1 ;;
esac
