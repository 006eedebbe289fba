#!/usr/bin/env bash
# `podsnat render` whole process, this tree against an older commit (by
# default 448cb2f, the last one before issues 12-18), run interleaved on the
# same machine in the same minutes: mean wall time per run (best of 5
# rounds) and peak RSS (least of 15 runs), for the example config and for
# 10,000 no_masquerade CIDRs. The old binary is built as it shipped then
# (`cargo build --release`, dynamic); this tree both as it ships now
# (scripts/release-build, static) and dynamic, so the link's share shows.
# Run: bash benches/render_paired.sh [COMMIT]   (RUNS=N runs per round)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-448cb2f}
runs=${RUNS:-300}
tmp=$(mktemp -d)
trap 'git worktree remove --force "$tmp/old" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT

new=$(scripts/release-build)
cargo build --release -q
git worktree add -q "$tmp/old" "$base"
(cd "$tmp/old" && CARGO_TARGET_DIR="$tmp/target" cargo build --release -q)
old="$tmp/target/release/podsnat" dyn="$PWD/target/release/podsnat"

# The example without the keys the old binary does not know.
grep -v '^anchor\|^masquerade_bit' examples/flannel-docker.toml > "$tmp/example.toml"
# shellcheck source=benches/configs.sh
source benches/configs.sh
ten_thousand_cidrs "$tmp/10k.toml"

per_run() { # mean wall time per run in microseconds
  local start end
  start=$(date +%s%N)
  for ((i = 0; i < runs; i++)); do "$@" > /dev/null; done
  end=$(date +%s%N)
  echo $(((end - start) / runs / 1000))
}
least_rss() { # KB
  local m=999999999 r
  for _ in $(seq 15); do
    r=$(/usr/bin/time -f %M "$@" 2>&1 > /dev/null)
    ((r < m)) && m=$r
  done
  echo "$m"
}

for cfg in example 10k; do
  bo=999999999 bn=999999999 bd=999999999
  for _ in 1 2 3 4 5; do
    o=$(per_run "$old" render --config "$tmp/$cfg.toml")
    n=$(per_run "$new" render --config "$tmp/$cfg.toml")
    d=$(per_run "$dyn" render --config "$tmp/$cfg.toml")
    ((o < bo)) && bo=$o
    ((n < bn)) && bn=$n
    ((d < bd)) && bd=$d
  done
  ro=$(least_rss "$old" render --config "$tmp/$cfg.toml")
  rn=$(least_rss "$new" render --config "$tmp/$cfg.toml")
  rd=$(least_rss "$dyn" render --config "$tmp/$cfg.toml")
  awk -v c="$cfg" -v base="$base" -v bo="$bo" -v ro="$ro" -v bn="$bn" -v rn="$rn" -v bd="$bd" -v rd="$rd" 'BEGIN {
    printf "%-8s %s %6d us %5.2f MB\n", c, base, bo, ro / 1024
    printf "%-8s this tree, static %6d us %5.2f MB   (time %.2fx, RSS %.2fx)\n", "", bn, rn / 1024, bn / bo, rn / ro
    printf "%-8s this tree, dynamic %5d us %5.2f MB   (time %.2fx, RSS %.2fx)\n", "", bd, rd / 1024, bd / bo, rd / ro }'
done
