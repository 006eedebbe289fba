#!/usr/bin/env bash
# See the problem and the fix with your own eyes, in one command (as root):
#   sudo examples/demo.sh
# Builds a two-host flannel lab in network namespaces (examples/lab.sh), then
# for mode guard and mode classic: applies docker's broad rule, restores the
# table `podsnat write` made (as podsnat.service does at boot), and replays
# docker's restart. Prints what pod B saw each time, and cleans up.
# Set PODSNAT=/path/to/podsnat to skip the cargo build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [[ $(id -u) -ne 0 ]]; then
  echo "demo.sh needs root: it creates network namespaces and iptables rules inside them." >&2
  echo "Run: sudo $0" >&2
  exit 1
fi
for prog in ip iptables iptables-restore socat ss; do
  command -v "$prog" >/dev/null || { echo "demo.sh needs $prog (apt-get install iptables iproute2 socat)" >&2; exit 1; }
done
if [[ -z ${PODSNAT:-} ]]; then
  (cd "$here/.." && cargo build --release -q)
  PODSNAT=$here/../target/release/podsnat
fi

export BRIDGE=docker0 SUBNET_A=172.7.21.0/24 SUBNET_B=172.7.22.0/24
config=$here/flannel-docker.toml
work=$(mktemp -d)
export LAB=podsnat-demo-$$
cleanup() { bash "$here/lab.sh" down; rm -rf "$work"; }
trap cleanup EXIT

# A row of the table; a seen address that differs from the expected one is
# marked and makes the demo exit 1.
bad=0
row() {
  local mark=""
  [[ $3 == "${4%% *}" || $1 == mode ]] || { mark="  <-- MISMATCH"; bad=$((bad + 1)); }
  printf '%-8s %-44s %-13s %s%s\n' "$1" "$2" "$3" "$4" "$mark"
}
row mode step "source seen" "expected"
for mode in guard classic; do
  bash "$here/lab.sh" up
  ipt() { ip netns exec "$LAB-a" iptables -w 5 -t nat "$@"; }
  seen() { bash "$here/lab.sh" probe pa "$1" "$2"; }

  ipt -A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j MASQUERADE
  row "$mode" "1. docker's broad rule only" "$(seen pb 172.7.22.2)" "10.4.7.21 (host A: the problem)"

  rc=0
  ip netns exec "$LAB-a" "$PODSNAT" write --config "$config" --mode "$mode" --output "$work/iptables" > /dev/null || rc=$?
  [[ $rc -eq 2 ]] || { echo "podsnat write failed ($rc)" >&2; exit 1; }
  ip netns exec "$LAB-a" iptables-restore -w 5 -T nat "$work/iptables"
  row "$mode" "2. podsnat's table restored (as at boot)" "$(seen pb 172.7.22.2)" "172.7.21.2 (pod A)"
  row "$mode" "   egress to an outside machine" "$(seen out 10.9.0.2)" "10.9.0.1 (host A: still masqueraded)"

  ipt -C POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j MASQUERADE 2> /dev/null ||
    ipt -I POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j MASQUERADE
  if [[ $mode == guard ]]; then want="172.7.21.2 (pod A: guard survives)"; else want="10.4.7.21 (classic is undone)"; fi
  row "$mode" "3. docker restarts (-C, then -I if missing)" "$(seen pb 172.7.22.2)" "$want"

  bash "$here/lab.sh" down
  rm -f "$work/iptables"
done
((bad == 0)) || { echo "$bad step(s) did not show what was expected" >&2; exit 1; }
