#!/usr/bin/env bash
# `podsnat verify` on a live nat table with 20,000 kube-proxy-style rules
# and podsnat's nftables anchor, next to what it reads: `iptables-save -t
# nat` alone; the programs verify runs, each into a pipe (iptables-save,
# `nft -j list chains`, `nft -j list table ip podsnat`); and `iptables-save
# -t nat | cat` plus `nft -j list ruleset`, the whole nftables ruleset, on
# both backends. Then the same for kube-proxy's iptables mode at cluster
# scale (5,000 ClusterIPs with 3 endpoints each: some 20,000 chains and
# 55,000 rules, as pkg/proxy/iptables/proxier.go writes them), where verify
# is compared with `iptables-save -t nat | cat` (RUNS_BIG runs, default 3).
# Root: the tables live in a namespace of their own.
# Run: sudo bash benches/verify.sh   (RUNS=N to change the loop count)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(scripts/release-build) # the binary the packages ship
runs=${RUNS:-20}
ns=podsnat-bench-$$
tmp=$(mktemp -d)
trap 'ip netns del "$ns" 2>/dev/null || true; rm -rf "$tmp"' EXIT
ip netns add "$ns"

"$bin" render --config examples/flannel-docker.toml > "$tmp/podsnat.rules"
"$bin" render --config examples/flannel-docker.toml --anchor > "$tmp/podsnat.nft"
ip netns exec "$ns" nft -f "$tmp/podsnat.nft"
{
  echo '*nat'
  echo ':KUBE-SERVICES - [0:0]'
  echo ':KUBE-POSTROUTING - [0:0]'
  echo ':KUBE-MARK-MASQ - [0:0]'
  echo '-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
  echo '-I POSTROUTING 1 -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'
  echo '-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000'
  echo '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN'
  echo '-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0'
  echo '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully'
  for ((i = 0; i < 19993; i++)); do
    printf -- '-A KUBE-SERVICES -d 10.96.%d.%d/32 -p tcp -m comment --comment "default/svc-%d:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ\n' $((i / 250)) $((i % 250 + 1)) "$i"
  done
  echo 'COMMIT'
} > "$tmp/kube.rules"

per_run() { # mean wall time per run in ms, of $runs runs
  local start end
  start=$(date +%s%N)
  for ((i = 0; i < runs; i++)); do "$@" > /dev/null; done
  end=$(date +%s%N)
  echo $(((end - start) / runs / 1000))
}

# kube-proxy at cluster scale: per service a KUBE-SVC chain with its
# masquerade rule and one jump per endpoint, per endpoint a KUBE-SEP chain.
{
  echo '*nat'
  echo ':KUBE-SERVICES - [0:0]'
  echo ':KUBE-POSTROUTING - [0:0]'
  echo ':KUBE-MARK-MASQ - [0:0]'
  for ((i = 0; i < 5000; i++)); do
    printf ':KUBE-SVC-%016X - [0:0]\n' "$i"
    for e in 0 1 2; do printf ':KUBE-SEP-%08X%08X - [0:0]\n' "$i" "$e"; done
  done
  echo '-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
  echo '-I POSTROUTING 1 -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'
  echo '-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000'
  echo '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN'
  echo '-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0'
  echo '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully'
  for ((i = 0; i < 5000; i++)); do
    svc=$(printf 'KUBE-SVC-%016X' "$i") vip="10.96.$((i / 250)).$((i % 250 + 1))"
    printf -- '-A KUBE-SERVICES -d %s/32 -p tcp -m comment --comment "ns/svc-%d:http cluster IP" -m tcp --dport 80 -j %s\n' "$vip" "$i" "$svc"
    printf -- '-A %s ! -s 172.7.0.0/16 -d %s/32 -p tcp -m comment --comment "ns/svc-%d:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ\n' "$svc" "$vip" "$i"
    for e in 0 1 2; do
      sep=$(printf 'KUBE-SEP-%08X%08X' "$i" "$e") n=$((i * 3 + e))
      ip="172.7.$((n / 250 % 256)).$((n % 250 + 1))"
      printf -- '-A %s -m comment --comment "ns/svc-%d:http -> %s:8080" -j %s\n' "$svc" "$i" "$ip" "$sep"
      printf -- '-A %s -s %s/32 -m comment --comment "ns/svc-%d:http" -j KUBE-MARK-MASQ\n' "$sep" "$ip" "$i"
      printf -- '-A %s -p tcp -m comment --comment "ns/svc-%d:http" -m tcp -j DNAT --to-destination %s:8080\n' "$sep" "$i" "$ip"
    done
  done
  echo 'COMMIT'
} > "$tmp/kube-big.rules"

for b in nft legacy; do
  ip netns exec "$ns" "iptables-$b-restore" -w 5 -T nat "$tmp/podsnat.rules"
  ip netns exec "$ns" "iptables-$b-restore" -w 5 --noflush "$tmp/kube.rules"
  n=$(ip netns exec "$ns" "iptables-$b-save" -t nat | grep -c '^-A')
  best_s=999999999 best_r=999999999 best_f=999999999 best_v=999999999
  reads="iptables-$b-save -t nat | cat; nft -j list chains | cat; nft -j list table ip podsnat | cat"
  floor="iptables-$b-save -t nat | cat; nft -j list ruleset"
  for round in 1 2 3; do
    s=$(per_run ip netns exec "$ns" "iptables-$b-save" -t nat)
    r=$(per_run ip netns exec "$ns" bash -c "$reads")
    f=$(per_run ip netns exec "$ns" bash -c "$floor")
    v=$(per_run ip netns exec "$ns" "$bin" verify --config examples/flannel-docker.toml --iptables-save "iptables-$b-save")
    ((s < best_s)) && best_s=$s
    ((r < best_r)) && best_r=$r
    ((f < best_f)) && best_f=$f
    ((v < best_v)) && best_v=$v
  done
  ip netns exec "$ns" "$bin" verify --config examples/flannel-docker.toml --iptables-save "iptables-$b-save" > /dev/null
  awk -v b="$b" -v n="$n" -v s="$best_s" -v r="$best_r" -v f="$best_f" -v v="$best_v" -v runs="$runs" 'BEGIN {
    printf "%-7s %d rules (%d runs, best of 3 means)\n", b, n, runs
    printf "  iptables-save -t nat                        %7.1f ms\n", s / 1000
    printf "  verify'"'"'s reads into pipes                    %7.1f ms\n", r / 1000
    printf "  iptables-save | cat + nft -j list ruleset   %7.1f ms\n", f / 1000
    printf "  podsnat verify                              %7.1f ms   (%.2fx its reads, %.2fx the whole-ruleset floor)\n", v / 1000, v / r, v / f }'
  # Empty the table for the other backend.
  printf '*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n' |
    ip netns exec "$ns" "iptables-$b-restore" -w 5
done

# Cluster scale: verify against what it must read at least.
runs=${RUNS_BIG:-3}
for b in nft legacy; do
  ip netns exec "$ns" "iptables-$b-restore" -w 5 -T nat "$tmp/podsnat.rules"
  ip netns exec "$ns" "iptables-$b-restore" -w 5 --noflush "$tmp/kube-big.rules"
  n=$(ip netns exec "$ns" "iptables-$b-save" -t nat | grep -c '^-A')
  c=$(ip netns exec "$ns" "iptables-$b-save" -t nat | grep -c '^:')
  best_c=999999999 best_v=999999999
  for round in 1 2 3; do
    s=$(per_run ip netns exec "$ns" bash -c "iptables-$b-save -t nat | cat")
    v=$(per_run ip netns exec "$ns" "$bin" verify --config examples/flannel-docker.toml --iptables-save "iptables-$b-save")
    ((s < best_c)) && best_c=$s
    ((v < best_v)) && best_v=$v
  done
  ip netns exec "$ns" "$bin" verify --config examples/flannel-docker.toml --iptables-save "iptables-$b-save" > /dev/null
  awk -v b="$b" -v n="$n" -v c="$c" -v s="$best_c" -v v="$best_v" -v runs="$runs" 'BEGIN {
    printf "%-7s kube-proxy 5,000 services: %d chains, %d rules (%d runs, best of 3 means)\n", b, c, n, runs
    printf "  iptables-save -t nat | cat                  %7.1f ms\n", s / 1000
    printf "  podsnat verify                              %7.1f ms   (%.2fx)\n", v / 1000, v / s }'
  printf '*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n' |
    ip netns exec "$ns" "iptables-$b-restore" -w 5
done
