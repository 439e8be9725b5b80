#!/bin/bash
# Random-kill soak (issue 10): two hosts, A and B, each with one configuration
# file that never changes (A: role = primary, peer B; B: role = secondary) and
# its own --state-dir. Every cycle:
#   1. the active host is killed with kill -9 at a random moment (a third of the
#      time with its secondary stopped, so an epoch is in flight);
#   2. the standby is promoted with `ftctl failover`;
#   3. the dead host is started again with its unchanged configuration. If that
#      says primary, it must be refused by the promoted host and exit 1 with
#      nothing on its console (never two copies, nothing released); then, like
#      an operator, it is started as a secondary. Either way the active host
#      protects it again with `ftctl protect`.
# At the end the consoles of every incarnation, joined by their logged stream
# offsets, must be one bank stream with every iter exactly once, and every
# promotion must have succeeded the first time.
# Usage: soak_failover.sh FTD FTCTL [CYCLES] (default FT_SOAK_CYCLES or 200)
set -u
FTD=${1:?usage: soak_failover.sh FTD FTCTL [CYCLES]}
FTCTL=${2:?usage: soak_failover.sh FTD FTCTL [CYCLES]}
CYCLES=${3:-${FT_SOAK_CYCLES:-200}}
. "$(dirname "$0")/lib.sh"
require_kvm

BASE_PORT=$((19000 + RANDOM % 500))
PORT_A=$BASE_PORT PORT_B=$((BASE_PORT + 1))
MEM=64M
declare -A PID CONF PORT
PORT[A]=$PORT_A PORT[B]=$PORT_B
INC=0 # incarnations so far: con.K, log.K
declare -a INC_HOST

write_conf() { # HOST ROLE
	local h=$1 other
	[ "$h" = A ] && other=B || other=A
	{
		echo "role = $2"
		echo "guest = builtin:bank"
		echo "mem = $MEM"
		echo "vcpus = 2"
		echo "interval = 10ms"
		echo "quiet = true"
		echo "state-dir = $TMP/state.$h"
		echo "control = $TMP/$h.sock"
		if [ "$2" = primary ]; then
			echo "peer = 127.0.0.1:${PORT[$other]}"
		else
			echo "listen = 127.0.0.1:${PORT[$h]}"
		fi
	} >"$TMP/$h.conf"
}

# start HOST [CONF]: one incarnation, console and log of its own. Sets LAST.
start() {
	local h=$1 conf=${2:-$TMP/$1.conf}
	INC=$((INC + 1))
	INC_HOST[$INC]=$h
	"$FTD" --config "$conf" --console "$TMP/con.$INC" 2>"$TMP/log.$INC" &
	PID[$h]=$!
	PIDS+=("$!")
	LAST=$INC
}

ctl() { # HOST ARGS...
	local h=$1
	shift
	"$FTCTL" --socket "$TMP/$h.sock" "$@"
}

write_conf A primary
write_conf B secondary
# The operator's fallback for a refused primary: the same host as a secondary.
for h in A B; do
	sed -e 's/^role = .*/role = secondary/' -e '/^peer = /d' "$TMP/$h.conf" >"$TMP/$h.sec.conf"
	echo "listen = 127.0.0.1:${PORT[$h]}" >>"$TMP/$h.sec.conf"
done

start B
INC_B=$LAST
wait_for "$TMP/log.$INC_B" "listening on" 10 || fail "B did not start: $(cat "$TMP/log.$INC_B")"
start A
LOG_OF_A=$LAST
declare -A LOG
LOG[A]=$LOG_OF_A LOG[B]=$INC_B
active=A standby=B
refused=0 restarted_secondary=0 mid=0
for ((c = 1; c <= CYCLES; c++)); do
	wait_for "$TMP/log.${LOG[$standby]}" "Replica holds checkpoint" 30 ||
		fail "cycle $c: $standby never held a checkpoint: $(tail -3 "$TMP/log.${LOG[$standby]}")"
	sleep 0.$((1 + RANDOM % 6))$((RANDOM % 10))
	kill_active "${PID[$active]}" "${PID[$standby]}" && mid=$((mid + 1))
	wait "${PID[$active]}" 2>/dev/null
	wait_for "$TMP/log.${LOG[$standby]}" "Primary lost" 10 ||
		fail "cycle $c: $standby did not notice: $(tail -3 "$TMP/log.${LOG[$standby]}")"
	ctl "$standby" failover >"$TMP/out" 2>&1 ||
		fail "cycle $c: failover to $standby refused: $(cat "$TMP/out")"
	dead=$active
	active=$standby
	standby=$dead
	# The dead host comes back with its unchanged configuration.
	start "$dead"
	LOG[$dead]=$LAST
	if grep -q "^role = primary" "$TMP/$dead.conf"; then
		wait "${PID[$dead]}"
		rc=$?
		[ $rc -eq 1 ] || fail "cycle $c: restarted primary $dead exited $rc: $(tail -3 "$TMP/log.$LAST")"
		[ ! -s "$TMP/con.$LAST" ] ||
			fail "cycle $c: refused primary $dead released output: $(head -c 200 "$TMP/con.$LAST")"
		refused=$((refused + 1))
		start "$dead" "$TMP/$dead.sec.conf"
		LOG[$dead]=$LAST
	else
		restarted_secondary=$((restarted_secondary + 1))
	fi
	wait_for "$TMP/log.$LAST" "listening on" 10 || fail "cycle $c: $dead did not listen: $(cat "$TMP/log.$LAST")"
	ctl "$active" protect --peer "127.0.0.1:${PORT[$dead]}" >"$TMP/out" 2>&1 ||
		fail "cycle $c: protect by $active: $(cat "$TMP/out")"
	((c % 20 == 0)) && echo "soak: $c cycles" >&2
done
sleep 0.5
kill -TERM "${PID[$active]}" "${PID[$standby]}"
wait "${PID[$active]}" "${PID[$standby]}"

join_incarnations "$LOG_OF_A" "$INC" "$TMP/stream" || fail "the consoles do not join into one stream"
check_bank "$TMP/stream" 2 || fail "the bank stream across $CYCLES failovers is broken"
echo "ok: $CYCLES kill -9 failovers ($mid with the secondary stopped), $refused restarted old" \
	"primaries refused and restarted as secondaries, $restarted_secondary secondaries restarted;" \
	"one bank stream of $(grep -c '^bank ' "$TMP/stream") lines, every iter exactly once"
