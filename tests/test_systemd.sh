#!/bin/bash
# The service: the unit generated from systemd/ftd@.service.in (its paths set
# as cmake/install.cmake sets them, ExecStart pointing at the built ftd)
# passes `systemd-analyze verify`, and the example configuration passes
# `ftd --check-config`. tests/test_package.sh checks the installed unit.
# Exit 0 pass, 1 fail.
set -euo pipefail
FTD=$(realpath "${1:?usage: test_systemd.sh PATH_TO_FTD}")
SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC/tests/lib.sh"
UNIT_IN=$SRC/systemd/ftd@.service.in

command -v systemd-analyze >/dev/null || fail "systemd-analyze is not installed (scripts/deps.sh)"
mkdir -p "$TMP/units"
sed -e "s#@FT_BINDIR@#$(dirname "$FTD")#g" -e "s#@FT_DOCDIR@#$SRC#g" "$UNIT_IN" >"$TMP/units/ftd@.service"
! grep -n '@[A-Z_]*@' "$TMP/units/ftd@.service" ||
	fail "$UNIT_IN: a placeholder that cmake/install.cmake does not set (above)"
ln -s "ftd@.service" "$TMP/units/ftd@demo.service"
rc=0
# --man=no: the man pages the unit names are not installed here (test_package
# verifies the installed unit with them).
out=$(systemd-analyze verify --man=no "$TMP/units/ftd@demo.service" 2>&1) || rc=$?
if [ $rc -ne 0 ] || [ -n "$out" ]; then fail "systemd-analyze verify $UNIT_IN: exit $rc: $out"; fi
grep -q '^Type=notify$' "$UNIT_IN" || fail "$UNIT_IN: not Type=notify"
grep -q '^DeviceAllow=/dev/kvm rw$' "$UNIT_IN" || fail "$UNIT_IN: cannot reach /dev/kvm"
# shellcheck disable=SC2016 # $MAINPID is systemd's, not the shell's
grep -qxF 'ExecReload=/bin/kill -HUP $MAINPID' "$UNIT_IN" || fail "$UNIT_IN: no ExecReload (SIGHUP)"
grep -q '^ExecStart=@FT_BINDIR@/ftd .*--control /run/ftd/%i\.sock' "$UNIT_IN" ||
	fail "$UNIT_IN: ExecStart does not run @FT_BINDIR@/ftd with --control /run/ftd/%i.sock"
echo "ok: systemd-analyze verify ftd@.service"

# Its placeholders, and which of its [node NAME] sections this host is.
sed 's#NAME#demo#g' "$SRC/systemd/ftd-example.conf" >"$TMP/demo.conf"
node=$(sed -n 's/^[[:space:]]*\[node[[:space:]]\{1,\}\([^]]*\)\].*/\1/p' "$TMP/demo.conf" | head -1)
args=(--config "$TMP/demo.conf" --check-config)
[ -z "$node" ] || args+=(--node "$node")
out=$("$FTD" "${args[@]}" 2>&1) || fail "example configuration: ftd ${args[*]}: $out"
[ "$out" = "configuration ok" ] || fail "example configuration: ftd ${args[*]}: $out"
echo "ok: systemd/ftd-example.conf passes ftd --check-config"
echo "test_systemd: all passed"
