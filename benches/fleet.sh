#!/usr/bin/env bash
# Fleet render of 5,000 nodes sharing one set of units, side by side with
# `tar -x` of the same tree, in one run: best of 3 each, `sync` before
# every run, so the disk starts each one clean. Then an unchanged render
# (nothing may be written) and `fleet check`. Whole process, release build.
# Run: bash benches/fleet.sh         (TMPDIR=/dev/shm for tmpfs)
# With STRACE=1 it also prints `strace -c -f` of one render and one tar -x.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(scripts/release-build) # the binary the packages ship
tmp=$(mktemp -d "${TMPDIR:-/tmp}/podsnat-fleet.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
nodes=5000
{
  echo 'cluster_cidr = "10.0.0.0/8"'
  echo 'no_masquerade = ["192.168.0.0/16"]'
  for ((i = 0; i < nodes; i++)); do
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
render() { "$bin" fleet render --inventory "$tmp/inventory.toml" --out-dir "$1"; }

render "$tmp/ref" > /dev/null || [[ $? -eq 2 ]]
files=$(find "$tmp/ref" -type f | wc -l)
units=$(find "$tmp/ref" -type f -name 'podsnat*' | wc -l)
tar -C "$tmp/ref" -cf "$tmp/tree.tar" .

best_tar=999999 best_render=999999
for round in 1 2 3; do
  rm -rf "$tmp/t" "$tmp/r"
  mkdir "$tmp/t"
  sync
  t=$(ms tar -C "$tmp/t" -xf "$tmp/tree.tar")
  sync
  r=$(ms render "$tmp/r")
  echo "round $round: tar -x ${t} ms, first fleet render ${r} ms"
  ((t < best_tar)) && best_tar=$t
  ((r < best_render)) && best_render=$r
done
cmp <(cd "$tmp/ref" && find . -type f -exec sha256sum {} + | sort) \
    <(cd "$tmp/r" && find . -type f -exec sha256sum {} + | sort) > /dev/null
again=$(ms render "$tmp/r")
out=$(render "$tmp/r" || true)
check=$(ms "$bin" fleet check --inventory "$tmp/inventory.toml" --out-dir "$tmp/r")
ratio=$(awk -v r="$best_render" -v t="$best_tar" 'BEGIN { printf "%.2f", (t > 0 ? r / t : 0) }')
echo "$nodes nodes, $files files ($units unit files): first render ${best_render} ms vs tar -x ${best_tar} ms (${ratio}x, best of 3)"
echo "unchanged render ${again} ms ($(grep -c '^changed' <<< "$out" || true) files written), fleet check ${check} ms"

if [[ ${STRACE:-} == 1 ]]; then
  rm -rf "$tmp/t" "$tmp/r"; mkdir "$tmp/t"; sync
  echo "--- strace -c tar -x"; strace -c -f tar -C "$tmp/t" -xf "$tmp/tree.tar" 2>&1 | head -15
  sync
  echo "--- strace -c fleet render"; strace -c -f "$bin" fleet render --inventory "$tmp/inventory.toml" --out-dir "$tmp/r" 2>&1 >/dev/null | head -15
fi
