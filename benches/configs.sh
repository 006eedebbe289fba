# Sourced by the whole-process benches: the configs they render.

# ten_thousand_cidrs FILE: a config with 10,000 no_masquerade /32s two
# addresses apart, so none aggregate away.
ten_thousand_cidrs() {
  {
    echo 'cluster_cidr = "172.7.0.0/16"'
    echo 'pod_subnet = "172.7.21.0/24"'
    printf 'no_masquerade = ['
    for ((i = 0; i < 10000; i++)); do
      a=$((0x0a000000 + i * 2))
      printf '"%d.%d.%d.%d/32",' $((a >> 24 & 255)) $((a >> 16 & 255)) $((a >> 8 & 255)) $((a & 255))
    done
    echo ']'
  } > "$1"
}
