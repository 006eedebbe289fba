#!/usr/bin/env bash
# Builds target/package/podsnat_*.deb and podsnat-*.rpm. Needs cargo-deb and
# cargo-generate-rpm (`cargo install --locked cargo-deb cargo-generate-rpm`).
# Everything generated comes from the binary itself, so the man page and
# completions match its --help.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The static binary (see scripts/release-build); cargo deb and generate-rpm
# then take it from target/<host>/release/ for the asset target/release/podsnat.
bin=$(scripts/release-build)
host=$(rustc -vV | sed -n 's/^host: //p')
out=target/package
rm -rf "$out"
mkdir -p "$out"
"$bin" generate man | gzip -9n > "$out/podsnat.8.gz"
"$bin" generate completion bash > "$out/podsnat.bash"
"$bin" generate completion zsh > "$out/_podsnat"
"$bin" generate completion fish > "$out/podsnat.fish"
# The units with default ordering (the boot restore, the pin after every
# docker start and its timer), for each platform's rules file; not enabled:
# the admin enables them after writing a config.
unit() { "$bin" install-unit --root "$out/$1" --file "$2" --no-enable > /dev/null || [[ $? -eq 2 ]]; }
unit deb /etc/iptables/rules.v4
unit rpm /etc/sysconfig/iptables
cargo deb --no-build --quiet --target "$host" --output "$out/"
cargo generate-rpm --target "$host" --output "$out/"
ls "$out"/*.deb "$out"/*.rpm
