#!/usr/bin/env bash
# Fleet render of 5,000 nodes: first render (10,000 files written), a second
# render (nothing changed) and `fleet check`. Whole process, release build.
# Run: bash benches/fleet.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=$PWD/target/release/podsnat
tmp=$(mktemp -d "${TMPDIR:-/tmp}/podsnat-fleet.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
{
  echo 'cluster_cidr = "10.0.0.0/8"'
  echo 'no_masquerade = ["192.168.0.0/16"]'
  for ((i = 0; i < 5000; i++)); do
    printf '[[nodes]]\nname = "node-%04d"\npod_subnet = "10.%d.%d.0/24"\n' "$i" $((i / 256)) $((i % 256))
  done
} > "$tmp/inventory.toml"

ms() { # wall time of one run of "$@", in ms; exit 2 ("changed") is fine
  local start end
  start=$(date +%s%N)
  "$@" > /dev/null || [[ $? -eq 2 ]]
  end=$(date +%s%N)
  echo $(((end - start) / 1000000))
}
first=$(ms "$bin" fleet render --inventory "$tmp/inventory.toml" --out-dir "$tmp/out")
again=$(ms "$bin" fleet render --inventory "$tmp/inventory.toml" --out-dir "$tmp/out")
check=$(ms "$bin" fleet check --inventory "$tmp/inventory.toml" --out-dir "$tmp/out")
echo "5000 nodes: first fleet render ${first} ms (10,000 files), unchanged render ${again} ms, fleet check ${check} ms"
