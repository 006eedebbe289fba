#!/usr/bin/env bash
# The anchor's cost per new connection: pod A on host A opens TCP
# connections to pod B on host B (examples/lab.sh), through host A's NAT,
# as fast as one client can, with and without podsnat's anchor, in
# alternating rounds of one run. Every connection is new, so each one's
# first packet walks the nat chains at postrouting: the anchor's rules,
# then iptables' nat table (docker's broad rule and podsnat's exclusion).
# Root: everything lives in the lab's namespaces.
# Run: sudo bash benches/anchor.sh   (CONNS=N per round, ROUNDS=N)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(scripts/release-build) # the binary the packages ship
conns=${CONNS:-3000}
rounds=${ROUNDS:-5}
export LAB=psbench$$ BRIDGE=docker0 SUBNET_A=172.7.21.0/24 SUBNET_B=172.7.22.0/24
tmp=$(mktemp -d)
trap 'bash examples/lab.sh down; kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
bash examples/lab.sh up
"$bin" render --config examples/flannel-docker.toml > "$tmp/podsnat.rules"
"$bin" render --config examples/flannel-docker.toml --anchor > "$tmp/podsnat.nft"
ip netns exec "$LAB-a" iptables-restore -w 5 -T nat "$tmp/podsnat.rules"

# Pod B accepts and closes; pod A connects CONNS times and prints the rate.
cat > "$tmp/server.py" <<'PY'
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("172.7.22.2", 9000)); s.listen(4096)
while True:
    c, _ = s.accept(); c.close()
PY
cat > "$tmp/client.py" <<'PY'
import socket, struct, sys, time
n = int(sys.argv[1]); t = time.perf_counter()
for _ in range(n):
    c = socket.socket()
    # RST on close: no TIME_WAIT, so source ports never run out.
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.connect(("172.7.22.2", 9000)); c.close()
print(f"{n / (time.perf_counter() - t):.0f}")
PY
ip netns exec "$LAB-pb" python3 "$tmp/server.py" &
sleep 0.5
ip netns exec "$LAB-pa" python3 "$tmp/client.py" 200 > /dev/null # warm up
with=() without=()
for ((r = 0; r < rounds; r++)); do
  ip netns exec "$LAB-a" nft -f "$tmp/podsnat.nft"
  with+=("$(ip netns exec "$LAB-pa" python3 "$tmp/client.py" "$conns")")
  ip netns exec "$LAB-a" nft delete table ip podsnat
  without+=("$(ip netns exec "$LAB-pa" python3 "$tmp/client.py" "$conns")")
done
best() { printf '%s\n' "$@" | sort -n | tail -n 1; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
echo "connections per second, pod A -> pod B through host A's NAT ($rounds rounds of $conns, alternating)"
echo "  with the anchor:    best $(best "${with[@]}")  median $(median "${with[@]}")   (${with[*]})"
echo "  without the anchor: best $(best "${without[@]}")  median $(median "${without[@]}")   (${without[*]})"
