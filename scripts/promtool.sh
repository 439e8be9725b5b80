#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Puts Prometheus's promtool (`promtool check metrics`, used by
# tests/test_metrics.sh) into a git-ignored directory, from Debian's
# prometheus package, without installing that package (which would start a
# Prometheus server):
#
#   scripts/promtool.sh        # into $RINGFT_PROMTOOL_DIR, default <repo>/.deps
#
# `apt-get download` fetches the .deb the machine's package lists name
# (checked against the signed Release file like any apt download) into a
# temporary directory; only usr/bin/promtool is taken out of it, with
# dpkg-deb. Idempotent: does nothing once <dir>/promtool runs. Needs no root,
# but package lists (apt-get update) that name prometheus.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${RINGFT_PROMTOOL_DIR:-$repo/.deps}

die() { echo "promtool.sh: $*" >&2; exit 1; }

if [ -x "$dir/promtool" ] && "$dir/promtool" --version >/dev/null 2>&1; then
	echo "promtool.sh: $dir/promtool already there"
	exit 0
fi
command -v apt-get >/dev/null || die "apt-get not found (a Debian machine is required)"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "promtool.sh: apt-get download prometheus"
(cd "$tmp" && apt-get -qq -o APT::Sandbox::User="$(id -un)" download prometheus) ||
	die "apt-get download prometheus failed (apt-get update first?)"
deb=
for f in "$tmp"/prometheus_*.deb; do
	[ -f "$f" ] && deb=$f
done
[ -n "$deb" ] || die "apt-get download left no prometheus .deb"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/bin/promtool ||
	die "no usr/bin/promtool in $(basename "$deb")"
mkdir -p "$dir"
mv "$tmp/usr/bin/promtool" "$dir/promtool.new"
mv "$dir/promtool.new" "$dir/promtool"
echo "promtool.sh: $("$dir/promtool" --version 2>&1 | head -n 1) in $dir/promtool"
