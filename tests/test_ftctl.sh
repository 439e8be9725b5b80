#!/bin/bash
# ftctl by instance name (issue 16, part 4) against real daemons: instances
# found as NAME.sock in a run directory (FTCTL_RUN_DIR stands for /run/ftd),
# status of all of them with a stale socket among them, list, a command
# refused without a NAME when several run and taken with exactly one,
# events --now (the state first, then the changes), --version and the
# versions in status. Exit 0 pass, 77 skip, 1 fail.
#
# Usage: test_ftctl.sh FTD FTCTL
set -u
FTD=${1:?usage: test_ftctl.sh FTD FTCTL}
FTCTL=${2:?usage: test_ftctl.sh FTD FTCTL}
. "$(dirname "$0")/lib.sh"
require_kvm

MEM=64M
PORT=$((27000 + RANDOM % 2000))
RUN=$TMP/run
mkdir -m 0700 "$RUN"
export FTCTL_RUN_DIR=$RUN

# expect RC PATTERN ARGS...: ftctl ARGS exits RC with PATTERN (extended regex) in its output.
expect() {
	local want=$1 pattern=$2 rc
	shift 2
	"$FTCTL" "$@" >"$TMP/out" 2>&1
	rc=$?
	[ $rc -eq "$want" ] || fail "ftctl $*: exit $rc, expected $want: $(cat "$TMP/out")"
	grep -Eq -- "$pattern" "$TMP/out" || fail "ftctl $*: no '$pattern' in: $(cat "$TMP/out")"
}

# json FILE PYTHON-EXPRESSION: the expression on the parsed JSON (as j) is true.
json() {
	python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
		"$1" "$2" || fail "JSON check '$2' on: $(cat "$1")"
}

# ---- 1. without daemons ------------------------------------------------------------
version=$("$FTD" --version | sed -n 's/^ftd (ringft) //p')
expect 0 "^ftctl \(ringft\) $version\$" --version
"$FTCTL" --help >"$TMP/help" || fail "ftctl --help exited $?"
for w in "status \[NAME...\]" "list" "events \[NAME\] \[--now\]" "start \[NAME\]" FTCTL_RUN_DIR; do
	grep -Eq -- "$w" "$TMP/help" || fail "ftctl --help lacks '$w'"
done
expect 3 "no ftd instance in $RUN" status
"$FTCTL" status --json >"$TMP/j" 2>/dev/null
[ $? -eq 3 ] && [ "$(cat "$TMP/j")" = "[]" ] || fail "status --json without instances: $(cat "$TMP/j")"
expect 3 "no ftd instance in $RUN" failover
expect 2 "is not an instance name" status ../etc
expect 2 "either --socket PATH or a NAME" --socket "$RUN/a.sock" status a
expect 2 "does not take --now" status --now
echo "ok: --version, --help, no instance (exit 3, [] with --json), bad names refused"

# ---- 2. two instances and a stale socket ---------------------------------------------
"$FTD" secondary --listen 127.0.0.1:$PORT --mem $MEM --vcpus 2 --control "$RUN/b.sock" \
	--console /dev/null 2>"$TMP/b.log" &
PIDS+=($!)
wait_for "$TMP/b.log" "listening on" 10 || fail "secondary did not start: $(cat "$TMP/b.log")"
"$FTD" primary --peer 127.0.0.1:$PORT --guest builtin:bank --mem $MEM --vcpus 2 --interval 10ms \
	--control "$RUN/a.sock" --console /dev/null 2>"$TMP/a.log" &
PRI=$!
PIDS+=("$PRI")
wait_for "$TMP/a.log" "Protected: secondary" 20 || fail "never protected: $(tail -3 "$TMP/a.log")"

expect 0 "^a: primary builtin:bank: protected, secondary 127.0.0.1:$PORT" status
grep -Eq "^b: secondary: replicating, primary 127.0.0.1:" "$TMP/out" ||
	fail "status lacks the secondary: $(cat "$TMP/out")"
[ "$(grep -Ec "^  ftd $version, protocol [0-9]+" "$TMP/out")" = 2 ] ||
	fail "status lacks the versions: $(cat "$TMP/out")"
expect 0 "^a +primary +protected$" list
grep -Eq "^b +secondary +replicating$" "$TMP/out" || fail "list: $(cat "$TMP/out")"
"$FTCTL" list --json >"$TMP/j" || fail "list --json exited $?"
json "$TMP/j" '[(i["name"], i["role"], i["state"], i["running"]) for i in j] == [("a", "primary", "protected", True), ("b", "secondary", "replicating", True)]'
"$FTCTL" status --json >"$TMP/j" || fail "status --json exited $?"
json "$TMP/j" '[i["name"] for i in j] == ["a", "b"] and j[0]["role"] == "primary" and j[0]["ok"] and j[1]["role"] == "secondary"'
"$FTCTL" status b --json >"$TMP/j" || fail "status b --json exited $?"
json "$TMP/j" 'isinstance(j, dict) and j["role"] == "secondary" and j["ok"]'
"$FTCTL" status b a --json >"$TMP/j" || fail "status b a --json exited $?"
json "$TMP/j" '[i["name"] for i in j] == ["b", "a"]'
expect 0 "^primary builtin:bank: protected" --socket "$RUN/a.sock" status
echo "ok: status and list of two instances (human and JSON), by name, --socket"

# A socket no daemon listens on (an ftd killed with -9): "not running", the others answer.
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$RUN/c.sock"
touch "$RUN/d.sock" # not a socket: no instance
expect 3 "^c: not running$" status
grep -q "^a: primary" "$TMP/out" && grep -q "^b: secondary" "$TMP/out" ||
	fail "a stale socket kept the others from answering: $(cat "$TMP/out")"
grep -q "^d" "$TMP/out" && fail "a file that is no socket was taken for an instance"
expect 3 "^c +- +not running$" list
"$FTCTL" list --json >"$TMP/j"
json "$TMP/j" '[i["name"] for i in j] == ["a", "b", "c"] and j[2]["running"] is False and j[2]["state"] is None'
"$FTCTL" status --json >"$TMP/j"
json "$TMP/j" 'j[2] == {"name": "c", "ok": False, "running": False, "error": "Connection refused"}'
expect 3 "cannot reach ftd at $RUN/c.sock: Connection refused" status c
echo "ok: a stale socket is 'not running' (exit 3), the others still answer"

# ---- 3. one instance per command -------------------------------------------------
expect 2 "3 ftd instances in $RUN: a, b, c; name one \(ftctl metrics NAME\)" metrics
expect 0 "^ftd_checkpoints_total [1-9]" metrics a
expect 0 "^interval 5.000 ms$" set interval 5ms a
expect 0 '"role":"primary","state":"protected"' raw status a
expect 1 "the primary is still connected" failover b
expect 2 "unexpected argument 'b'" failover a b
echo "ok: without a NAME a command is refused when several instances run, and goes to the one named"

# ---- 4. events --now: the state, then what changes ------------------------------------
"$FTCTL" events b --now --json >"$TMP/ev.j" 2>&1 &
EVJ=$!
"$FTCTL" events b --now >"$TMP/ev.h" 2>&1 &
EVH=$!
PIDS+=("$EVJ" "$EVH")
wait_for "$TMP/ev.j" '"event":"state"' 5 || fail "events --now: no state event: $(cat "$TMP/ev.j")"
wait_for "$TMP/ev.h" ' state ' 5 || fail "events --now: no state line: $(cat "$TMP/ev.h")"
kill -TERM $PRI
wait $PRI
wait_for "$TMP/ev.j" '"event":"peer-lost"' 5 || fail "events --now: no peer-lost: $(cat "$TMP/ev.j")"
wait_for "$TMP/ev.h" ' peer-lost ' 5 || fail "events --now: no peer-lost line: $(cat "$TMP/ev.h")"
kill $EVJ $EVH 2>/dev/null
python3 - "$TMP/ev.j" <<'EOF' || fail "events --now --json: $(cat "$TMP/ev.j")"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
names = [e["event"] for e in ev]
assert names[:2] == ["subscribed", "state"], names
st = ev[1]["status"]
assert st["role"] == "secondary" and st["state"] == "replicating", st
assert "checkpoint" in st and "ok" not in st, st
assert names.index("peer-lost") > 1, names
assert all("time_ms" in e for e in ev), ev
EOF
grep -Eq "^[0-9:.]+ state role=secondary state=replicating peer=127.0.0.1:[0-9]+ checkpoint=[0-9]+" "$TMP/ev.h" ||
	fail "events --now: the state line: $(cat "$TMP/ev.h")"
expect 1 "unknown request 'events --later'" raw "events --later" b
echo "ok: events --now: subscribed, the state (status of the secondary), then peer-lost"

# ---- 5. exactly one instance: no NAME needed ----------------------------------------
rm -f "$RUN/c.sock" "$RUN/d.sock"
[ "$(ls "$RUN")" = b.sock ] || fail "left in $RUN: $(ls "$RUN")"
expect 0 '"role":"secondary","state":"waiting"' raw status
expect 0 "^b +secondary +waiting$" list
expect 0 "^b: secondary: waiting" status
echo "ok: with one instance, commands need no NAME"
