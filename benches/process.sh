#!/usr/bin/env bash
# Whole-process cost of `podsnat render` next to `cat` of its own output,
# plus peak RSS, for the example config and for 10,000 no_masquerade CIDRs.
# Run: bash benches/process.sh   (RUNS=N to change the loop count)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(scripts/release-build) # the binary the packages ship
runs=${RUNS:-2000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# shellcheck source=benches/configs.sh
source benches/configs.sh
ten_thousand_cidrs "$tmp/10k.toml"

# Mean wall time per run, in microseconds, of a loop of $runs runs.
per_run() {
  local start end
  start=$(date +%s%N)
  for ((i = 0; i < runs; i++)); do "$@" > /dev/null; done
  end=$(date +%s%N)
  echo $(((end - start) / runs / 1000))
}

report() {
  local name=$1 config=$2 best_p=999999999 best_c=999999999 p c
  "$bin" render --config "$config" > "$tmp/out.rules"
  for round in 1 2 3; do # interleaved, best of three against machine noise
    p=$(per_run "$bin" render --config "$config")
    c=$(per_run cat "$tmp/out.rules")
    ((p < best_p)) && best_p=$p
    ((c < best_c)) && best_c=$c
  done
  rss=$(/usr/bin/time -f %M "$bin" render --config "$config" 2>&1 > /dev/null)
  awk -v n="$name" -v p="$best_p" -v c="$best_c" -v r="$rss" -v runs="$runs" 'BEGIN {
    printf "%-22s podsnat render %6d us   cat %6d us   ratio %.2f   peak RSS %.1f MB   (%d runs)\n", n, p, c, p / c, r / 1024, runs }'
}

report "example" examples/flannel-docker.toml
runs=$((runs / 10 > 0 ? runs / 10 : 1))
report "10000 no_masquerade" "$tmp/10k.toml"
