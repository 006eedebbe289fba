#!/usr/bin/env bash
# See the problem and the fix with your own eyes, in one command (as root):
#   sudo examples/demo.sh
# Builds a two-host flannel lab in network namespaces (examples/lab.sh), then,
# in mode guard (MODES="guard classic" for both):
#   1. docker's first start adds its broad rule: pod B sees host A.
#   2. a reboot with the default install: podsnat.service restores the table
#      `podsnat write` made and podsnat-anchor.service loads its nftables
#      anchor, before docker.
#   3. docker starts again and puts its rule on top of POSTROUTING: the
#      anchor, at a priority before iptables' nat table, has decided first.
# Then the second act, a node with `anchor = false` (no nftables):
#   4. a reboot restores the table alone;
#   5. docker's start puts its rule on top and undoes it;
#   6. `podsnat pin` (as podsnat-pin.service does after every docker start)
#      puts podsnat's rules back.
# Prints what pod B saw each time, and cleans up.
# docker is the real dockerd where it is installed (Debian's docker.io),
# otherwise the stand-in tests/docker-standin.sh, which a test compares with
# the real dockerd; the first line says which. DOCKER=standin forces the
# stand-in.
# Set PODSNAT=/path/to/podsnat to skip the cargo build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [[ $(id -u) -ne 0 ]]; then
  echo "demo.sh needs root: it creates network namespaces and iptables rules inside them." >&2
  echo "Run: sudo $0" >&2
  exit 1
fi
for prog in ip iptables iptables-restore iptables-save nft socat ss; do
  command -v "$prog" >/dev/null || { echo "demo.sh needs $prog (apt-get install iptables nftables iproute2 socat)" >&2; exit 1; }
done
if [[ -z ${PODSNAT:-} ]]; then
  (cd "$here/.." && cargo build --release -q)
  PODSNAT=$here/../target/release/podsnat
fi

export BRIDGE=docker0 SUBNET_A=172.7.21.0/24 SUBNET_B=172.7.22.0/24
config=$here/flannel-docker.toml
work=$(mktemp -d)
export LAB=podsnat-demo-$$
standin=$here/../tests/docker-standin.sh
real_docker=false
if [[ ${DOCKER:-} != standin && -x /usr/sbin/dockerd && -x /usr/bin/docker ]] && command -v nsenter >/dev/null; then
  real_docker=true
fi

# The real dockerd on host A, with its own state under $work.
dockerd_start() {
  nsenter --net="/run/netns/$LAB-a" /usr/sbin/dockerd --data-root "$work/docker/data" \
    --exec-root "$work/docker/exec" --pidfile "$work/docker/pid" -H "unix://$work/docker/sock" \
    --storage-driver vfs --bridge docker0 --fixed-cidr 172.7.21.128/25 >> "$work/docker/log" 2>&1 &
  for _ in $(seq 600); do
    /usr/bin/docker -H "unix://$work/docker/sock" info >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "dockerd did not start; its log:" >&2
  tail -20 "$work/docker/log" >&2
  exit 1
}
dockerd_stop() {
  [[ -e $work/docker/pid ]] || return 0
  kill "$(cat "$work/docker/pid")"
  for _ in $(seq 600); do [[ -e $work/docker/pid ]] || return 0; sleep 0.1; done
}
# docker's start on a node: the first ever (no stored state) or a later one.
docker_start() {
  if $real_docker; then
    dockerd_start
  elif [[ $1 == first ]]; then
    # The first start ever finds no rule with -C and appends it.
    ip netns exec "$LAB-a" iptables -w 5 -t nat -A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j MASQUERADE
  else
    ip netns exec "$LAB-a" sh "$standin" start iptables 172.7.21.0/24 docker0 172.7.21.128
  fi
}

cleanup() {
  dockerd_stop 2>/dev/null || true
  pkill -f "$work/docker/exec" 2>/dev/null || true
  grep -o " $work/[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  bash "$here/lab.sh" down
  rm -rf "$work"
}
trap cleanup EXIT

if $real_docker; then
  echo "docker: the real dockerd ($(/usr/sbin/dockerd --version))"
else
  echo "docker: the stand-in tests/docker-standin.sh (no dockerd installed; apt-get install docker.io for the real one)"
fi

# A row of the table; a seen address that differs from the expected one is
# marked and makes the demo exit 1.
bad=0
row() {
  local mark=""
  [[ $3 == "${4%% *}" || $1 == mode ]] || { mark="  <-- MISMATCH"; bad=$((bad + 1)); }
  printf '%-8s %-44s %-13s %s%s\n' "$1" "$2" "$3" "$4" "$mark"
}
# A reboot of host A: docker stops; the nat table and nftables are empty.
reboot() {
  if $real_docker; then dockerd_stop; fi
  ip netns exec "$LAB-a" iptables -w 5 -t nat -F
  ip netns exec "$LAB-a" iptables -w 5 -t nat -X
  ip netns exec "$LAB-a" nft flush ruleset
}
# `podsnat write` of the example config in this mode into FILE (it
# changes files only; the unit or the demo restores them).
write() {
  local rc=0 file=$1
  shift
  ip netns exec "$LAB-a" "$PODSNAT" write --config "$config" --mode "$mode" --output "$file" "$@" > /dev/null || rc=$?
  [[ $rc -eq 2 ]] || { echo "podsnat write failed ($rc)" >&2; exit 1; }
}
row mode step "source seen" "expected"
for mode in ${MODES:-guard}; do
  bash "$here/lab.sh" up
  mkdir -p "$work/docker"
  seen() { bash "$here/lab.sh" probe pa "$1" "$2"; }

  docker_start first
  row "$mode" "1. docker's first start: its broad rule" "$(seen pb 172.7.22.2)" "10.4.7.21 (host A: the problem)"

  # The default install. A reboot: docker stops, the nat table is empty,
  # podsnat.service restores the table and podsnat-anchor.service loads the
  # anchor.
  reboot
  write "$work/iptables" --anchor-file "$work/podsnat.nft"
  ip netns exec "$LAB-a" iptables-restore -w 5 -T nat "$work/iptables"
  ip netns exec "$LAB-a" nft -f "$work/podsnat.nft"
  row "$mode" "2. boot: podsnat's table and its anchor" "$(seen pb 172.7.22.2)" "172.7.21.2 (pod A)"
  row "$mode" "   egress to an outside machine" "$(seen out 10.9.0.2)" "10.9.0.1 (host A: still masqueraded)"

  docker_start again
  row "$mode" "3. docker starts: its rule goes on top" "$(seen pb 172.7.22.2)" "172.7.21.2 (pod A: the anchor decided first)"

  # The second act: anchor = false, so the pin keeps the table in force.
  reboot
  write "$work/iptables" --no-anchor
  ip netns exec "$LAB-a" iptables-restore -w 5 -T nat "$work/iptables"
  row "$mode" "4. anchor = false: boot, the table alone" "$(seen pb 172.7.22.2)" "172.7.21.2 (pod A)"

  docker_start again
  row "$mode" "5. docker starts: its rule goes on top" "$(seen pb 172.7.22.2)" "10.4.7.21 (host A: undone)"

  rc=0
  ip netns exec "$LAB-a" "$PODSNAT" pin --file "$work/iptables" > /dev/null || rc=$?
  [[ $rc -eq 2 ]] || { echo "podsnat pin failed ($rc)" >&2; exit 1; }
  row "$mode" "6. podsnat pin (podsnat-pin.service)" "$(seen pb 172.7.22.2)" "172.7.21.2 (pod A again)"

  $real_docker && dockerd_stop
  pkill -f "$work/docker/exec" 2>/dev/null || true
  grep -o " $work/docker[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work/docker" "$work/iptables" "$work/podsnat.nft"
  bash "$here/lab.sh" down
done
((bad == 0)) || { echo "$bad step(s) did not show what was expected" >&2; exit 1; }
