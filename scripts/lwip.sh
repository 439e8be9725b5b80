#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Fetches lwIP (the embedded TCP/IP stack of builtin:kv) from Debian's source
# package and unpacks it into a git-ignored directory:
#
#   scripts/lwip.sh            # into $RINGFT_LWIP_DIR, default <repo>/.deps/lwip
#
# A private apt configuration (its own sources.list with deb-src entries derived
# from the machine's Debian sources, its own lists and cache under
# <dir>/.apt) keeps the system's apt state untouched. `apt-get source
# --download-only` checks the signed Release file and the .dsc checksums;
# dpkg-source -x (package dpkg-dev) unpacks. Nothing is fetched from anywhere
# else. Idempotent: when <dir>/src already holds the version the private package
# lists name (the stamp <dir>/VERSION), it does nothing and needs no network;
# RINGFT_LWIP_REFRESH=1 refreshes the lists first (apt-get update) and fetches a
# newer version if there is one. Needs no root.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${RINGFT_LWIP_DIR:-$repo/.deps/lwip}
sources=${RINGFT_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}

die() { echo "lwip.sh: $*" >&2; exit 1; }

command -v apt-get >/dev/null || die "apt-get not found (a Debian machine is required)"
command -v dpkg-source >/dev/null || die "dpkg-source not found: apt-get install dpkg-dev"
[ -r "$sources" ] || die "cannot read $sources (the machine's Debian sources)"

apt="$dir/.apt"
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources.list.d" "$apt/dl"

# deb822 sources: the same stanzas with Types: deb-src (URIs, Suites, Components
# and Signed-By kept as they are).
sed -e 's/^Types:.*/Types: deb-src/' "$sources" >"$apt/sources.list.d/debian-src.sources"
: >"$apt/sources.list"

set -- -o Dir::Etc::SourceList="$apt/sources.list" \
	-o Dir::Etc::SourceParts="$apt/sources.list.d" \
	-o Dir::State::Lists="$apt/lists" \
	-o Dir::Cache="$apt/cache" \
	-o Dir::State::Status=/var/lib/dpkg/status \
	-o Debug::NoLocking=1 \
	-o APT::Sandbox::User="$(id -un)"

src_version() {
	apt-cache "$@" showsrc lwip 2>/dev/null | sed -n 's/^Version: //p' | sort -V | tail -n 1
}

version=
if [ -z "${RINGFT_LWIP_REFRESH:-}" ] && ls "$apt/lists/"*Sources* >/dev/null 2>&1; then
	version=$(src_version "$@")
fi
if [ -z "$version" ]; then
	echo "lwip.sh: apt-get update (private lists in $apt)"
	apt-get "$@" -qq update || die "apt-get update failed"
	version=$(src_version "$@")
fi
[ -n "$version" ] || die "no source package lwip in $sources"

if [ -f "$dir/VERSION" ] && [ "$(cat "$dir/VERSION")" = "$version" ] &&
	[ -f "$dir/src/src/core/tcp.c" ]; then
	echo "lwip.sh: lwip $version already in $dir/src"
	exit 0
fi

echo "lwip.sh: fetching lwip $version"
rm -rf "$apt/dl" && mkdir -p "$apt/dl"
(cd "$apt/dl" && apt-get "$@" -qq source --download-only "lwip=$version") ||
	die "apt-get source lwip failed"
dsc=
for f in "$apt/dl"/lwip_*.dsc; do
	[ -f "$f" ] && dsc=$f
done
[ -n "$dsc" ] || die "apt-get source left no lwip .dsc in $apt/dl"
rm -rf "$dir/src.new" "$dir/src"
dpkg-source -x "$dsc" "$dir/src.new" >/dev/null 2>&1 || die "dpkg-source -x failed"
# apt-get source verified the .dsc (signed Sources index) and every file's checksum.
mv "$dir/src.new" "$dir/src"
echo "$version" >"$dir/VERSION"
echo "lwip.sh: lwip $version unpacked into $dir/src"
