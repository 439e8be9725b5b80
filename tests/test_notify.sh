#!/bin/bash
# sd_notify: what ftd tells systemd (Type=notify) on a test NOTIFY_SOCKET.
#   primary:   READY=1 once its guest runs, STATUS= lines, WATCHDOG=1 every
#              second, STOPPING=1 on SIGTERM;
#   secondary: READY=1 once it listens, with STATUS= saying that it waits for
#              a primary (`systemctl start` must not block until a primary
#              comes), WATCHDOG=1, STOPPING=1; and
#              WATCHDOG=1 still while a slow fence command runs (issue 10:
#              the unit's WatchdogSec is shorter than --fence-timeout).
# Usage: test_notify.sh PATH_TO_FTD PATH_TO_NOTIFY_SINK PATH_TO_FTCTL
set -u
FTD=${1:?usage: test_notify.sh FTD NOTIFY_SINK FTCTL}
SINK=${2:?usage: test_notify.sh FTD NOTIFY_SINK FTCTL}
FTCTL=${3:?usage: test_notify.sh FTD NOTIFY_SINK FTCTL}
. "$(dirname "$0")/lib.sh"
require_kvm
PORT=$((18600 + RANDOM % 200))

for side in p s; do
	"$SINK" "$TMP/$side.notify" >"$TMP/$side.msgs" &
	PIDS+=("$!")
done
wait_for_sock() { local i; for i in $(seq 50); do [ -S "$1" ] && return; sleep 0.1; done; fail "no $1"; }
wait_for_sock "$TMP/p.notify"
wait_for_sock "$TMP/s.notify"

NOTIFY_SOCKET=$TMP/s.notify "$FTD" secondary --listen 127.0.0.1:$PORT --mem 64M --quiet --console /dev/null \
	--control "$TMP/s.sock" 2>"$TMP/s.log" &
SEC=$!
PIDS+=("$SEC")
wait_for "$TMP/s.msgs" "^READY=1|STATUS=secondary: listening on 127.0.0.1:$PORT, waiting for a primary$" 10 ||
	fail "the secondary was not ready once listening: $(cat "$TMP/s.msgs")"
sleep 1.5
grep -q "WATCHDOG=1" "$TMP/s.msgs" || fail "no WATCHDOG=1 from the secondary: $(cat "$TMP/s.msgs")"

NOTIFY_SOCKET=$TMP/p.notify "$FTD" primary --peer 127.0.0.1:$PORT --mem 64M --quiet \
	--control "$TMP/p.sock" --console /dev/null 2>"$TMP/p.log" &
PRI=$!
PIDS+=("$PRI")
wait_for "$TMP/p.msgs" "^READY=1\|STATUS=primary: running builtin:bank, connecting to 127.0.0.1:$PORT$" 10 ||
	fail "primary READY: $(cat "$TMP/p.msgs")"
wait_for "$TMP/s.log" "Replica holds checkpoint" 10 || fail "the secondary never held a checkpoint"
wait_for "$TMP/p.msgs" "^WATCHDOG=1\|STATUS=primary: protected, epoch [0-9]+, [0-9]+ acknowledged$" 10 ||
	fail "primary WATCHDOG/STATUS: $(cat "$TMP/p.msgs")"
kill -TERM "$PRI" "$SEC"
wait "$PRI" "$SEC" || fail "a daemon exited $?"
for side in p s; do
	grep -q "^STOPPING=1$" "$TMP/$side.msgs" || fail "no STOPPING=1 from $side: $(cat "$TMP/$side.msgs")"
done
# A fence command of 4 s runs on the secondary's owner thread: the watchdog
# must still hear from it every second meanwhile.
"$SINK" "$TMP/f.notify" >"$TMP/f.msgs" &
PIDS+=("$!")
wait_for_sock "$TMP/f.notify"
NOTIFY_SOCKET=$TMP/f.notify "$FTD" secondary --listen 127.0.0.1:$((PORT + 1)) --mem 64M --quiet \
	--console /dev/null --control "$TMP/f.sock" --fence-command "touch $TMP/fencing; sleep 4" \
	2>"$TMP/f.log" &
SEC=$!
PIDS+=("$SEC")
wait_for "$TMP/f.log" "listening on" 10 || fail "fence: secondary did not start"
"$FTD" primary --peer 127.0.0.1:$((PORT + 1)) --mem 64M --quiet --control "$TMP/p2.sock" \
	--console /dev/null 2>"$TMP/p2.log" &
PRI=$!
PIDS+=("$PRI")
wait_for "$TMP/f.log" "Replica holds checkpoint" 20 || fail "fence: never protected"
kill -KILL "$PRI"
wait "$PRI" 2>/dev/null
wait_for "$TMP/f.log" "primary gone" 10 || fail "fence: the secondary did not see the primary go"
"$FTCTL" --socket "$TMP/f.sock" failover >"$TMP/f.out" 2>&1 &
FO=$!
for i in $(seq 50); do [ -e "$TMP/fencing" ] && break; sleep 0.1; done
[ -e "$TMP/fencing" ] || fail "fence: the fence command did not start: $(tail -3 "$TMP/f.log")"
sleep 0.5
w0=$(grep -c "WATCHDOG=1" "$TMP/f.msgs")
sleep 2.5
w1=$(grep -c "WATCHDOG=1" "$TMP/f.msgs")
[ $((w1 - w0)) -ge 2 ] || fail "fence: $((w1 - w0)) WATCHDOG=1 in 2.5 s while the fence command ran"
wait "$FO" || fail "fence: failover: $(cat "$TMP/f.out")"
kill -TERM "$SEC"
wait "$SEC"
echo "ok: WATCHDOG=1 every second while a 4 s fence command runs ($((w1 - w0)) in 2.5 s)"
# Under journald (JOURNAL_STREAM set) every line carries its syslog priority.
JOURNAL_STREAM=8:9 "$FTD" secondary --listen 0.0.0.0:$PORT --mem 64M 2>"$TMP/j.log"
grep -q "^<3>Refusing to replicate in the clear" "$TMP/j.log" || fail "journald priority: $(cat "$TMP/j.log")"
JOURNAL_STREAM=8:9 "$FTD" run --mem 64M --duration 1s --quiet --console /dev/null 2>"$TMP/j.log" ||
	fail "ftd run: $(cat "$TMP/j.log")"
grep -q "^<6>summary:" "$TMP/j.log" && ! grep -qv "^<[0-7]>" "$TMP/j.log" ||
	fail "journald priorities: $(cat "$TMP/j.log")"
echo "ok: sd_notify: primary READY=1 when running, secondary READY=1 once listening, STATUS, WATCHDOG=1, STOPPING=1; under journald every line has its syslog priority"
