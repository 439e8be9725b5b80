#!/bin/bash
# Fails if a folder includes a header of a folder above it or beside it. The
# layers, bottom up (README.md, "Layout"): lib, and guest (the test guests, for
# vmm and daemon); vmm and proto, each on lib only (proto carries machine state
# as opaque blobs); primary and secondary on vmm, proto and lib, not on each
# other; daemon on all of these; ctl on proto and lib at most. tests/ and bench/
# may use everything.
# Only #include "FOLDER/..." lines naming a ringft folder count: system
# headers, the generated "guest_sizes.h" and lwIP's own headers (lwip/, netif/,
# arch/: the kv guest is built against Debian's lwIP source) are not ours.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A may=(
	[lib]="lib"
	[guest]="guest"
	[vmm]="vmm lib guest"
	[proto]="proto lib"
	[primary]="primary vmm proto lib"
	[secondary]="secondary vmm proto lib"
	[daemon]="daemon primary secondary vmm proto lib guest"
	[ctl]="ctl proto lib"
)

bad=0
for dir in "${!may[@]}"; do
	[ -d "$dir" ] || continue
	while IFS=: read -r file line target; do
		folder=${target%%/*}
		[ -n "${may[$folder]+x}" ] || continue
		if [[ " ${may[$dir]} " != *" $folder "* ]]; then
			echo "$file:$line: includes $target, but $dir/ may include only: ${may[$dir]}"
			bad=1
		fi
	done < <(find "$dir" -name '*.[ch]' -print0 |
		xargs -0 -r grep -HnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[a-z_]+/' |
		sed -E 's/^([^:]+):([0-9]+):.*#[[:space:]]*include[[:space:]]*"([^"]+)".*/\1:\2:\3/')
done
if [ "$bad" -ne 0 ]; then
	echo "layers: a folder reaches above itself (see README.md, Layout)" >&2
	exit 1
fi
echo "layers: ok"
