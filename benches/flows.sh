#!/usr/bin/env bash
# verify's read of the live flows at the scale of a busy node: a network
# namespace whose conntrack table holds 250,000 source-NATed UDP flows from
# the pod subnet (one pod sending from a fixed port to 250,000 addresses
# and ports of the cluster, docker's broad rule masquerading them; the
# kernel's UDP timeout there raised so that none expires during the runs),
# next to `conntrack -L -s POD_SUBNET > /dev/null` on the same table, in
# one run. Every flow is translated, so verify's judge sees each one; it
# keeps none but the first five. Peak memory is /usr/bin/time's maximum
# resident size of each.
# Root: the table lives in a namespace of its own.
# Run: sudo bash benches/flows.sh   (RUNS=N to change the loop count, FLOWS=N the size)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(scripts/release-build) # the binary the packages ship
runs=${RUNS:-5}
flows=${FLOWS:-250000}
ns=podsnat-bench-flows-$$
tmp=$(mktemp -d)
trap 'ip netns del "$ns" 2>/dev/null || true; rm -rf "$tmp"' EXIT
ip netns add "$ns"
in_ns() { ip netns exec "$ns" "$@"; }

# The pod's bridge and the node's link (veth pairs: this kernel may lack
# dummy devices); one static neighbour, so that no address needs ARP.
in_ns ip link set lo up
in_ns ip link add pods type veth peer name pods-peer
in_ns ip link add node type veth peer name node-peer
in_ns ip addr add 10.244.1.1/24 dev pods
in_ns ip addr add 10.244.1.2/24 dev pods
in_ns ip addr add 10.4.7.21/24 dev node
for l in pods pods-peer node node-peer; do in_ns ip link set "$l" up; done
in_ns ip neigh add 10.4.7.22 lladdr 02:00:00:00:00:01 dev node nud permanent
in_ns ip route add 10.244.0.0/16 via 10.4.7.22 dev node
in_ns sysctl -qw net.netfilter.nf_conntrack_udp_timeout=3600
in_ns iptables -t nat -A POSTROUTING -s 10.244.1.0/24 ! -o pods -j MASQUERADE
in_ns python3 - "$flows" <<'EOF'
import socket, sys
want = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.244.1.2", 5140))
n = 0
for a in range(2, 256):
    for b in range(256):
        for port in range(1001, 1129):
            if n == want:
                sys.exit(0)
            s.sendto(b"x", (f"10.244.{a}.{b}", port))
            n += 1
EOF
echo "conntrack table: $(in_ns conntrack -C) flows"

printf 'cluster_cidr = "10.244.0.0/16"\npod_subnet = "10.244.1.0/24"\nbridge = "pods"\nanchor = false\ndocker = false\n' > "$tmp/node.toml"
echo '{}' > "$tmp/daemon.json"
verify=(in_ns "$bin" verify --config "$tmp/node.toml" --docker-config "$tmp/daemon.json" --docker-unit /dev/null)
list=(in_ns conntrack -L -s 10.244.1.0/24)
{ "${verify[@]}" || true; } | tail -n 1 | cut -c 1-160

ms() { # wall time of one run in ms
  local start end
  start=$(date +%s%N)
  "$@" > /dev/null 2>&1 || true
  end=$(date +%s%N)
  echo $(((end - start) / 1000000))
}
for ((r = 1; r <= runs; r++)); do
  c=$(ms "${list[@]}")
  v=$(ms "${verify[@]}")
  echo "run $r: conntrack -L -s 10.244.1.0/24 > /dev/null: $c ms; podsnat verify: $v ms; $(awk -v v="$v" -v c="$c" 'BEGIN { printf "%.2f", v / c }')x"
done
peak() { /usr/bin/time -f '%M' "$@" 2>&1 > /dev/null | tail -n 1; }
echo "peak memory: conntrack -L $(peak "${list[@]}") KB; podsnat verify $(peak "${verify[@]}") KB"
