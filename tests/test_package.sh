#!/bin/bash
# The install rules and the Debian package (issue 16, part 6), on this machine:
# `cmake --install` into a temporary prefix puts every file in place with the
# unit naming that prefix's ftd; `cpack -G DEB` makes ringft_VERSION_ARCH.deb
# with its Depends from dpkg-shlibdeps and nothing in /etc; apt-get installs
# it (dependencies resolved by apt); the INSTALLED ftd and ftctl run, the
# installed example passes --check-config, the installed unit passes
# `systemd-analyze verify` (its man pages included), the man pages render and
# the bash completion completes; apt-get purge leaves nothing behind. Purged
# on any exit. Refuses to run over a ringft installed from elsewhere.
# Usage: test_package.sh BUILD_DIR [SANITIZE]  (SANITIZE 1: a sanitizer
# build, not packaged: skipped). Exit 0 pass, 77 skip, 1 fail.
set -euo pipefail
BUILD=$(realpath "${1:?usage: test_package.sh BUILD_DIR [SANITIZE]}")
SRC=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/lib.sh
. "$SRC/tests/lib.sh"

if [ "${2:-0}" = 1 ]; then
	echo "skipped: a sanitizer build is not packaged"
	exit 77
fi
if [ "$(id -u)" != 0 ]; then
	[ "${FT_REQUIRE_KVM:-}" = 1 ] && fail "FT_REQUIRE_KVM=1 but installing a package needs root"
	echo "skipped: installing a package needs root"
	exit 77
fi
for tool in cpack dpkg-deb dpkg-query dpkg-shlibdeps file apt-get systemd-analyze man flock python3; do
	command -v "$tool" >/dev/null || fail "$tool is not installed (scripts/deps.sh)"
done
[ -f "$BUILD/CPackConfig.cmake" ] || fail "$BUILD/CPackConfig.cmake: not a configured build directory"

# One package test at a time on this machine (other build directories' ctest).
exec 8>/tmp/ringft-package.lock
flock -w 90 8 || fail "another test_package holds /tmp/ringft-package.lock"

# Set while the package this test installed may be on the machine: a run
# killed before its purge (a ctest timeout) leaves it for the next to remove.
STAMP=/var/tmp/ringft-test-package.installed
INSTALLED=0
purge() {
	[ "$INSTALLED" = 1 ] || return 0
	if DEBIAN_FRONTEND=noninteractive apt-get purge -y ringft >"$TMP/purge.log" 2>&1; then
		rm -f "$STAMP"
	else
		echo "test_package: apt-get purge -y ringft failed: $(cat "$TMP/purge.log")" >&2
	fi
	INSTALLED=0
}
trap 'purge; cleanup' EXIT
trap 'exit 143' TERM INT

if [ -e "$STAMP" ] && ! dpkg-query -W ringft >/dev/null 2>&1; then
	rm -f "$STAMP" # killed before its install went through: nothing to purge
fi
if [ -e "$STAMP" ]; then
	echo "test_package: purging the ringft an interrupted test_package left ($STAMP)"
	INSTALLED=1
	purge
	[ ! -e "$STAMP" ] || fail "cannot purge the ringft an interrupted test_package left"
fi
status=$(dpkg-query -W -f='${Status}' ringft 2>/dev/null || true)
case $status in
"" | *not-installed) ;;
*) fail "a ringft package is already installed here ($status): remove it first (apt-get purge ringft)" ;;
esac
for f in /usr/bin/ftd /usr/bin/ftctl /usr/lib/systemd/system/ftd@.service; do
	[ ! -e "$f" ] || fail "$f exists (not from a package): it would be overwritten and removed"
done
start=$SECONDS

# cmake --install into a temporary prefix: every file, the unit names its ftd.
R=$TMP/root
cmake --install "$BUILD" --prefix "$R" >"$TMP/install.log" 2>&1 ||
	fail "cmake --install $BUILD --prefix $R: $(cat "$TMP/install.log")"
for f in bin/ftd bin/ftctl lib/systemd/system/ftd@.service \
	share/man/man8/ftd.8.gz share/man/man8/ftctl.8.gz share/man/man5/ftd.conf.5.gz \
	share/bash-completion/completions/ftd share/bash-completion/completions/ftctl \
	share/doc/ringft/README.md share/doc/ringft/ctl/README.md share/doc/ringft/docs/failover.md \
	share/doc/ringft/examples/ftd-example.conf lib/ocf/resource.d/ringft/ftd; do
	[ -s "$R/$f" ] || fail "cmake --install --prefix $R: no $R/$f"
done
for f in bin/ftd bin/ftctl lib/ocf/resource.d/ringft/ftd; do
	[ -x "$R/$f" ] || fail "cmake --install: $R/$f is not executable"
done
! find "$R" -path "$R/etc*" | grep -q . || fail "cmake --install: something under $R/etc (a live configuration?)"
grep -qx "ExecStart=$R/bin/ftd --config /etc/ftd/%i.conf --control /run/ftd/%i.sock" \
	"$R/lib/systemd/system/ftd@.service" ||
	fail "$R/lib/systemd/system/ftd@.service: ExecStart is not $R/bin/ftd: $(grep ^ExecStart "$R/lib/systemd/system/ftd@.service")"
! grep -n '@[A-Z_]*@' "$R/lib/systemd/system/ftd@.service" ||
	fail "$R/lib/systemd/system/ftd@.service: a placeholder is left (above)"
echo "ok: cmake --install --prefix puts every file in place, the unit runs $R/bin/ftd"

# The package: name, version, Depends from dpkg-shlibdeps, nothing in /etc.
version=$("$R/bin/ftd" --version | sed -n 's/^ftd (ringft) //p')
[ -n "$version" ] || fail "$R/bin/ftd --version: $("$R/bin/ftd" --version)"
mkdir -p "$TMP/pkg"
chmod 755 "$TMP" "$TMP/pkg" # apt reads the file as _apt
(cd "$TMP/pkg" && cpack -G DEB -B "$TMP/pkg" --config "$BUILD/CPackConfig.cmake") >"$TMP/cpack.log" 2>&1 ||
	fail "cpack -G DEB --config $BUILD/CPackConfig.cmake: $(cat "$TMP/cpack.log")"
arch=$(dpkg --print-architecture)
DEB=$TMP/pkg/ringft_${version}_$arch.deb
[ -f "$DEB" ] || fail "cpack made no $DEB: $(ls "$TMP/pkg")"
[ "$(dpkg-deb -f "$DEB" Package)" = ringft ] || fail "$DEB: Package is $(dpkg-deb -f "$DEB" Package)"
[ "$(dpkg-deb -f "$DEB" Version)" = "$version" ] || fail "$DEB: Version $(dpkg-deb -f "$DEB" Version), ftd says $version"
depends=$(dpkg-deb -f "$DEB" Depends)
names=$(sed -e 's/ *([^)]*)//g' -e 's/, */\n/g' <<<"$depends")
for lib in libc6 liburing2 libjson-c5 libssl3 libsystemd0; do
	grep -qx "$lib" <<<"$names" || fail "$DEB: Depends lacks $lib: $depends"
done
[[ $depends != *libasan* ]] || fail "$DEB: a sanitizer build: $depends"
contents=$(dpkg-deb -c "$DEB")
! grep -q ' \./etc/' <<<"$contents" || fail "$DEB: installs into /etc: $(grep ' \./etc/' <<<"$contents")"
grep -q ' \./usr/bin/ftd$' <<<"$contents" || fail "$DEB: no /usr/bin/ftd"
echo "ok: $(basename "$DEB") ($(stat -c %s "$DEB") bytes), Depends: $depends"

# Installed by apt, dependencies resolved.
INSTALLED=1
echo "$DEB" >"$STAMP"
DEBIAN_FRONTEND=noninteractive apt-get install -y "$DEB" >"$TMP/apt.log" 2>&1 ||
	fail "apt-get install -y $DEB: $(tail -20 "$TMP/apt.log")"
[ "$(dpkg-query -W -f='${Status} ${Version}' ringft)" = "install ok installed $version" ] ||
	fail "dpkg-query ringft: $(dpkg-query -W -f='${Status} ${Version}' ringft)"
echo "ok: apt-get install -y ./$(basename "$DEB")"

out=$(/usr/bin/ftd --version) || fail "/usr/bin/ftd --version: exit $?: $out"
[ "$out" = "ftd (ringft) $version" ] || fail "/usr/bin/ftd --version: $out"
out=$(/usr/bin/ftctl --version) || fail "/usr/bin/ftctl --version: exit $?: $out"
[ "$out" = "ftctl (ringft) $version" ] || fail "/usr/bin/ftctl --version: $out"
echo "ok: /usr/bin/ftd --version and /usr/bin/ftctl --version say $version"

EXAMPLE=/usr/share/doc/ringft/examples/ftd-example.conf
[ -s "$EXAMPLE" ] || fail "$EXAMPLE is not installed"
# Its placeholders, and which of its [node NAME] sections this host is.
sed 's#NAME#demo#g' "$EXAMPLE" >"$TMP/demo.conf"
node=$(sed -n 's/^[[:space:]]*\[node[[:space:]]\{1,\}\([^]]*\)\].*/\1/p' "$TMP/demo.conf" | head -1)
args=(--config "$TMP/demo.conf" --check-config)
[ -z "$node" ] || args+=(--node "$node")
out=$(/usr/bin/ftd "${args[@]}" 2>&1) || fail "/usr/bin/ftd ${args[*]} ($EXAMPLE): $out"
[ "$out" = "configuration ok" ] || fail "/usr/bin/ftd ${args[*]} ($EXAMPLE): $out"
echo "ok: the installed example passes /usr/bin/ftd --check-config"

# The resource agent where Pacemaker looks, its meta-data if resource-agents
# (ocf-shellfuncs) is installed.
AGENT=/usr/lib/ocf/resource.d/ringft/ftd
[ -x "$AGENT" ] || fail "$AGENT is not installed"
if [ -r /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs ]; then
	out=$(OCF_ROOT=/usr/lib/ocf "$AGENT" meta-data 2>&1) || fail "$AGENT meta-data: $out"
	grep -q '<resource-agent name="ftd"' <<<"$out" || fail "$AGENT meta-data: $(head -5 <<<"$out")"
	echo "ok: $AGENT meta-data"
fi

# The installed unit as systemd would load instance demo, its man pages too.
UNIT=/usr/lib/systemd/system/ftd@.service
[ -s "$UNIT" ] || fail "$UNIT is not installed"
grep -qx 'ExecStart=/usr/bin/ftd --config /etc/ftd/%i.conf --control /run/ftd/%i.sock' "$UNIT" ||
	fail "$UNIT: $(grep ^ExecStart= "$UNIT")"
grep -qx 'ExecStartPre=/usr/bin/ftd --config /etc/ftd/%i.conf --check-config' "$UNIT" ||
	fail "$UNIT: $(grep ^ExecStartPre= "$UNIT")"
mkdir -p "$TMP/units"
ln -s "$UNIT" "$TMP/units/ftd@demo.service"
rc=0
out=$(systemd-analyze verify "$TMP/units/ftd@demo.service" 2>&1) || rc=$?
if [ $rc -ne 0 ] || [ -n "$out" ]; then fail "systemd-analyze verify ftd@demo.service ($UNIT): exit $rc: $out"; fi
echo "ok: systemd-analyze verify ftd@demo.service (installed unit, /usr/bin/ftd, man pages)"

for page in 8:ftd 8:ftctl 5:ftd.conf; do
	sec=${page%%:*} name=${page#*:}
	path=$(man -w "$sec" "$name" 2>&1) || fail "man -w $sec $name: $path"
	[ "$path" = "/usr/share/man/man$sec/$name.$sec.gz" ] || fail "man -w $sec $name: $path"
	err=$(MANWIDTH=80 man --warnings -E UTF-8 "$sec" "$name" 2>&1 >"$TMP/man.txt") ||
		fail "man $sec $name: $err"
	[ -z "$err" ] || fail "man $sec $name: groff warns: $err"
	for heading in NAME "SEE ALSO"; do
		grep -qx "$heading" "$TMP/man.txt" ||
			fail "man $sec $name: no $heading section: $(head -5 "$TMP/man.txt")"
	done
done
echo "ok: man ftd, ftctl, ftd.conf render without warnings"

# Bash completion: the installed files complete the installed commands.
CDIR=/usr/share/bash-completion/completions
mkdir -p "$TMP/run"
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$TMP/run/vm7.sock"
# shellcheck disable=SC2016 # expanded by the inner bash
out=$(FTCTL_RUN_DIR=$TMP/run PATH=/usr/bin:/bin bash -c '
	set -eu
	. "$1/ftd"
	. "$1/ftctl"
	c() { # c FUNCTION WORDS...: COMPREPLY for the last word, on one line
		local f=$1
		shift
		COMP_WORDS=("$@")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMPREPLY=()
		"$f" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
		echo "${COMPREPLY[*]:-}"
	}
	c _ftd ftd pri
	c _ftd ftd primary --ti
	c _ftd ftd --tracking ""
	c _ftctl ftctl sw
	c _ftctl ftctl status ""
	c _ftctl ftctl failover --f
	c _ftctl ftctl set interval 5ms ""
	complete -p ftd ftctl
' bash "$CDIR" 2>&1) || fail "bash completion in $CDIR: $out"
expected="primary
--timeout
ring bitmap
switchover
vm7
--force
vm7
complete -F _ftd ftd
complete -F _ftctl ftctl"
[ "$out" = "$expected" ] || fail "bash completion in $CDIR: got
$out
expected
$expected"
echo "ok: bash completion of ftd and ftctl (subcommands, options, values, instance names)"

# Purged: nothing is left.
DEBIAN_FRONTEND=noninteractive apt-get purge -y ringft >"$TMP/purge.log" 2>&1 ||
	fail "apt-get purge -y ringft: $(tail -20 "$TMP/purge.log")"
INSTALLED=0
rm -f "$STAMP"
left=$(ls /usr/bin/ftd /usr/bin/ftctl "$UNIT" "$AGENT" "$CDIR/ftd" "$CDIR/ftctl" /usr/share/man/man8/ftd.8.gz \
	/usr/share/man/man5/ftd.conf.5.gz /usr/share/doc/ringft 2>/dev/null || true)
[ -z "$left" ] || fail "apt-get purge ringft left: $left"
status=$(dpkg-query -W -f='${Status}' ringft 2>/dev/null || true)
[ -z "$status" ] || [[ $status == *not-installed ]] || fail "after apt-get purge, dpkg-query ringft: $status"
echo "ok: apt-get purge -y ringft leaves nothing in /usr/bin or /usr/share"
echo "test_package: all passed in $((SECONDS - start)) s"
