#!/bin/bash
# The service: systemd/ftd@.service passes `systemd-analyze verify` (with its
# ExecStart pointing at the built ftd), and the example configuration passes
# `ftd --check-config`. Exit 0 pass, 1 fail.
set -u
FTD=${1:?usage: test_systemd.sh PATH_TO_FTD}
SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC/tests/lib.sh"

command -v systemd-analyze >/dev/null || fail "systemd-analyze is not installed (scripts/deps.sh)"
mkdir -p "$TMP/units"
sed "s#/usr/local/bin/ftd#$FTD#g" "$SRC/systemd/ftd@.service" >"$TMP/units/ftd@.service"
ln -s "ftd@.service" "$TMP/units/ftd@demo.service"
out=$(systemd-analyze verify "$TMP/units/ftd@demo.service" 2>&1)
rc=$?
[ $rc -eq 0 ] && [ -z "$out" ] || fail "systemd-analyze verify: exit $rc: $out"
grep -q '^Type=notify$' "$SRC/systemd/ftd@.service" || fail "the unit is not Type=notify"
grep -q '^DeviceAllow=/dev/kvm rw$' "$SRC/systemd/ftd@.service" || fail "the unit cannot reach /dev/kvm"
echo "ok: systemd-analyze verify ftd@.service"

sed 's#NAME#demo#g' "$SRC/systemd/ftd-example.conf" >"$TMP/demo.conf"
out=$("$FTD" --config "$TMP/demo.conf" --check-config 2>&1) || fail "example configuration: $out"
[ "$out" = "configuration ok" ] || fail "example configuration: $out"
echo "ok: systemd/ftd-example.conf passes ftd --check-config"
echo "test_systemd: all passed"
