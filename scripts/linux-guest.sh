#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Builds ringft's Linux test guest, "built, not stored": a small kernel from
# Debian's linux-source-6.1 (tinyconfig + tests/linux/*.config + the SYSCALL
# patch tests/linux/*.patch) and an uncompressed initramfs holding our static
# test init (tests/linux/init.c) and Debian's busybox-static.
#
#   scripts/linux-guest.sh            # build if needed; last lines: vmlinux=, initramfs=
#   scripts/linux-guest.sh --print    # only print the paths if cached, else exit 1
#   scripts/linux-guest.sh --force    # rebuild even if cached
#
# Cache: $FT_LINUX_CACHE (default /var/cache/ringft/linux)/<hash>/ with
# vmlinux (ELF with the PVH note), bzImage, initramfs.cpio, config, inputs,
# build.log. <hash> is the start of the sha256 over the inputs: the versions
# of linux-source-6.1, busybox-static and gcc, the fragment, the patch,
# init.c and this script. A build runs in <cache>/.build.* under a lock and
# is renamed into place when complete, so a killed build leaves no entry
# (its leftovers are removed by the next build). The unpacked source is
# deleted after the build: unpacking costs ~27 s of a ~3 min build.
#
# Missing Debian packages are installed with apt-get (as root). Progress and
# step timings go to stderr; stdout has only the two paths.
# Exit codes: 0 ok, 1 failure (or --print and not cached), 2 usage.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
self="$repo/scripts/linux-guest.sh"
cache=${FT_LINUX_CACHE:-/var/cache/ringft/linux}
tarball=/usr/src/linux-source-6.1.tar.xz
busybox=/bin/busybox
# Applets linked into /bin: the shell, the network services of the init and
# what one needs to look around in the guest.
applets=(sh ash cat echo ls mount umount ps dmesg ip ifconfig route nc httpd wget sleep uname)
PACKAGES=(linux-source-6.1 busybox-static flex bison bc libelf-dev cpio xz-utils gcc libc6-dev
	make patch)

log() { echo "linux-guest: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}
usage() {
	sed -n '3,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$self"
	exit "${1:-2}"
}

mode=build
force=0
while [ $# -gt 0 ]; do
	case "$1" in
	--print) mode=print ;;
	--force) force=1 ;;
	-h | --help) usage 0 ;;
	*)
		log "unknown argument: $1"
		usage 2
		;;
	esac
	shift
done

# Times one step: step NAME COMMAND...
step() {
	local name=$1 t0 t1
	shift
	t0=$(date +%s.%N)
	log "$name ..."
	"$@"
	t1=$(date +%s.%N)
	log "$name took $(printf '%.1f' "$(echo "$t1 - $t0" | bc)") s"
}

pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }

install_missing() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "run as root, or install: ${missing[*]}"
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
	log "installed: ${missing[*]}"
}

shopt -s nullglob
fragments=("$repo"/tests/linux/*.config)
patches=("$repo"/tests/linux/*.patch)
shopt -u nullglob
[ ${#fragments[@]} -gt 0 ] || die "no config fragment in tests/linux/"
[ -r "$repo/tests/linux/init.c" ] || die "tests/linux/init.c missing"

# What the cache key covers, one line each; stored in the entry as `inputs`.
inputs() {
	local f
	echo "linux-source-6.1 $(pkg_version linux-source-6.1)"
	echo "busybox-static $(pkg_version busybox-static)"
	echo "gcc $(gcc -dumpfullversion 2>/dev/null || true)"
	for f in "${fragments[@]}" "${patches[@]}" "$repo/tests/linux/init.c" "$self"; do
		echo "$(sha256sum <"$f" | cut -d' ' -f1) ${f#"$repo"/}"
	done
}

print_paths() {
	echo "vmlinux=$1/vmlinux"
	echo "initramfs=$1/initramfs.cpio"
}

cached() { [ -f "$1/vmlinux" ] && [ -f "$1/initramfs.cpio" ]; }

if [ "$mode" = print ]; then
	entry="$cache/$(inputs | sha256sum | cut -c1-16)"
	cached "$entry" || exit 1
	print_paths "$entry"
	exit 0
fi

install_missing
key=$(inputs | sha256sum | cut -c1-16)
entry="$cache/$key"
if [ "$force" -eq 0 ] && cached "$entry"; then
	print_paths "$entry"
	exit 0
fi

mkdir -p "$cache"
# One build at a time per cache; a concurrent caller waits and then finds
# the entry. Build directories left while nobody holds the lock are from
# killed builds.
exec 9>"$cache/.lock"
flock 9
if [ "$force" -eq 0 ] && cached "$entry"; then
	print_paths "$entry"
	exit 0
fi
rm -rf "$cache"/.build.*
tmp=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
out="$tmp/out"
src="$tmp/src"
blog="$out/build.log"
mkdir -p "$out" "$src"
inputs >"$out/inputs"
log "building $entry (log: $blog while building)"

# Runs make in the source tree, output to the build log; on failure shows
# its tail.
kmake() {
	if ! nice -n 10 make -C "$src" -j2 "$@" >>"$blog" 2>&1; then
		tail -n 40 "$blog" >&2
		die "make $* failed (log above)"
	fi
}

unpack() {
	tar -xJf "$tarball" -C "$src" --strip-components=1
}

apply_patches() {
	local p
	for p in "${patches[@]}"; do
		patch -d "$src" -p1 --forward --batch <"$p" >>"$blog" 2>&1 ||
			die "patch ${p#"$repo"/} does not apply to linux-source $(pkg_version linux-source-6.1)"
		log "applied ${p#"$repo"/}"
	done
}

# Fails naming each option of the fragments that Kconfig did not keep as
# asked (a missing dependency, a `select`, a renamed symbol).
verify_config() {
	local line opt want have bad=0 f
	for f in "${fragments[@]}"; do
		while IFS= read -r line; do
			case "$line" in
			CONFIG_*=*)
				opt=${line%%=*}
				want=${line#*=}
				;;
			"# CONFIG_"*" is not set")
				opt=${line#\# }
				opt=${opt%% *}
				want=n
				;;
			*) continue ;;
			esac
			have=$(sed -n "s/^$opt=//p" "$src/.config")
			[ -n "$have" ] || have=n
			if [ "$have" != "$want" ]; then
				log "config: $opt is $have, ${f#"$repo"/} asks $want"
				bad=1
			fi
		done <"$f"
	done
	[ "$bad" -eq 0 ] || die "Kconfig did not keep the fragment (see above)"
}

configure() {
	kmake tinyconfig
	(cd "$src" && scripts/kconfig/merge_config.sh -m .config "${fragments[@]}") >>"$blog" 2>&1 ||
		die "merge_config.sh failed"
	kmake olddefconfig
	verify_config
	cp "$src/.config" "$out/config"
}

build_kernel() {
	kmake vmlinux
	cp "$src/vmlinux" "$out/vmlinux"
}

build_bzimage() {
	kmake bzImage
	cp "$src/arch/x86/boot/bzImage" "$out/bzImage"
}

# The initramfs is packed by the kernel's own usr/gen_init_cpio from a list,
# so the device node needs no root and the archive is the same on every run.
build_initramfs() {
	local list="$tmp/initramfs.list" a
	[ -x "$busybox" ] || die "$busybox missing (busybox-static)"
	gcc -static -s -O2 -Wall -Wextra -Werror -o "$tmp/init" "$repo/tests/linux/init.c" >>"$blog" 2>&1 ||
		die "init.c does not build (see $blog)"
	printf 'ringft Linux test guest\n' >"$tmp/index.html"
	touch -d @0 "$tmp/init" "$tmp/index.html" # mtimes go into the archive
	[ -x "$src/usr/gen_init_cpio" ] || kmake usr/gen_init_cpio
	{
		echo "dir /dev 0755 0 0"
		echo "nod /dev/console 0600 0 0 c 5 1"
		echo "dir /proc 0555 0 0"
		echo "dir /sys 0555 0 0"
		echo "dir /tmp 1777 0 0"
		echo "dir /bin 0755 0 0"
		echo "dir /www 0755 0 0"
		echo "file /init $tmp/init 0755 0 0"
		echo "file /bin/busybox $busybox 0755 0 0"
		for a in "${applets[@]}"; do
			echo "slink /bin/$a busybox 0777 0 0"
		done
		echo "file /www/index.html $tmp/index.html 0644 0 0"
	} >"$list"
	"$src/usr/gen_init_cpio" -t 0 "$list" >"$out/initramfs.cpio" 2>>"$blog" ||
		die "gen_init_cpio failed"
}

t_start=$(date +%s)
step "unpack $(basename "$tarball")" unpack
step "patch" apply_patches
step "configure" configure
step "build vmlinux (make -j2)" build_kernel
step "build bzImage" build_bzimage
step "initramfs" build_initramfs
step "remove unpacked source" rm -rf "$src"

if [ -e "$entry" ]; then # --force: replace the old entry
	mv -T "$entry" "$tmp/old"
fi
mv -T "$out" "$entry"
log "built in $(($(date +%s) - t_start)) s: $entry"
print_paths "$entry"
