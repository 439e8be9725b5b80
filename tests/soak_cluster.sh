#!/bin/bash
# Random-kill soak with automatic failover (issue 10): tests/soak_failover.sh's
# story in the namespace cluster of tests/cluster.sh (two nodes and qnetd),
# each host's ftd with --cluster and one configuration file that never changes
# (node1: role = primary, peer node2; node2: role = secondary). Every cycle:
#   1. the active host's ftd is killed with kill -9 at a random moment (a third
#      of the time with its secondary stopped, so an epoch is in flight);
#   2. the secondary promotes by itself (its primary's ftd left the CPG group);
#   3. the dead host's ftd starts again with its unchanged configuration. If
#      that says primary, it must not boot its guest (another node runs it),
#      exit 1 and show nothing; then it starts as a secondary. The active
#      host protects it again with `ftctl protect`.
# At the end the consoles of every incarnation must join into one bank stream
# with every iter exactly once, and every promotion must have happened by itself.
# Usage: soak_cluster.sh FTD FTCTL [CYCLES] (default FT_SOAK_CYCLES or 200)
set -u
FTD=$(readlink -f "${1:?usage: soak_cluster.sh FTD FTCTL [CYCLES]}")
FTCTL=${2:?usage: soak_cluster.sh FTD FTCTL [CYCLES]}
CYCLES=${3:-${FT_SOAK_CYCLES:-200}}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
require_kvm
cluster_test fts "/usr/bin/test -e /run/ftd/cluster-s.active"
PORT=7410
declare -A PID ADDR LOG HOSTOF
ADDR[node1]=10.77.0.1 ADDR[node2]=10.77.0.2
INC=0

write_conf() { # HOST ROLE FILE
	local h=$1 other
	[ "$h" = node1 ] && other=node2 || other=node1
	{
		echo "role = $2"
		echo "guest = builtin:bank"
		echo "mem = 64M"
		echo "vcpus = 2"
		echo "interval = 10ms"
		echo "quiet = true"
		echo "cluster = s"
		echo "cluster-wait = 7s"
		echo "state-dir = $TMP/state.$h"
		echo "control = $TMP/$h.sock"
		echo "tls-cert = $C/$h.pem"
		echo "tls-key = $C/$h.key"
		echo "tls-ca = $C/ca.pem"
		if [ "$2" = primary ]; then
			echo "peer = ${ADDR[$other]}:$PORT"
		else
			echo "listen = ${ADDR[$h]}:$PORT"
		fi
	} >"$3"
}

start() { # HOST CONF: one incarnation; sets LAST
	local h=$1
	INC=$((INC + 1))
	cluster_spawn "$h" "$FTD" --config "$2" --console "$TMP/con.$INC" 2>"$TMP/log.$INC" 9>&-
	PID[$h]=$CLUSTER_SPAWNED
	PIDS+=("$CLUSTER_SPAWNED")
	LOG[$h]=$INC
	LAST=$INC
}

write_conf node1 primary "$TMP/node1.conf"
write_conf node2 secondary "$TMP/node2.conf"
write_conf node1 secondary "$TMP/node1.sec.conf"
write_conf node2 secondary "$TMP/node2.sec.conf"

start node2 "$TMP/node2.conf"
wait_for "$TMP/log.$LAST" "listening on" 20 || fail "node2 did not start: $(cat "$TMP/log.$LAST")"
start node1 "$TMP/node1.conf"
FIRST=$LAST
active=node1 standby=node2
refused=0 mid=0
for ((c = 1; c <= CYCLES; c++)); do
	wait_for "$TMP/log.${LOG[$standby]}" "Replica holds checkpoint" 30 ||
		fail "cycle $c: $standby never held a checkpoint: $(tail -3 "$TMP/log.${LOG[$standby]}")"
	sleep 0.$((1 + RANDOM % 6))$((RANDOM % 10))
	kill_active "${PID[$active]}" "${PID[$standby]}" && mid=$((mid + 1))
	wait_for "$TMP/log.${LOG[$standby]}" "Promoted \(cluster" 20 ||
		fail "cycle $c: $standby did not promote by itself: $(tail -5 "$TMP/log.${LOG[$standby]}")"
	dead=$active
	active=$standby
	standby=$dead
	if [ "$dead" = node1 ]; then
		# Its unchanged configuration says primary: it must not boot a guest.
		start node1 "$TMP/node1.conf"
		for _ in $(seq 1 150); do
			kill -0 "${PID[node1]}" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "${PID[node1]}" 2>/dev/null &&
			fail "cycle $c: the restarted primary on node1 runs: $(tail -3 "$TMP/log.$LAST")"
		[ ! -s "$TMP/con.$LAST" ] ||
			fail "cycle $c: the restarted primary released output: $(head -c 200 "$TMP/con.$LAST")"
		refused=$((refused + 1))
		start node1 "$TMP/node1.sec.conf"
	else
		start node2 "$TMP/node2.conf"
	fi
	wait_for "$TMP/log.$LAST" "listening on" 20 || fail "cycle $c: $dead did not listen: $(cat "$TMP/log.$LAST")"
	"$FTCTL" --socket "$TMP/$active.sock" protect --peer "${ADDR[$dead]}:$PORT" >"$TMP/out" 2>&1 ||
		fail "cycle $c: protect by $active: $(cat "$TMP/out")"
	((c % 20 == 0)) && echo "soak: $c cycles" >&2
done
sleep 0.5
kill -TERM "${PID[$active]}" "${PID[$standby]}"
sleep 2

join_incarnations "$FIRST" "$INC" "$TMP/stream" || fail "the consoles do not join into one stream"
check_bank "$TMP/stream" 2 || fail "the bank stream across $CYCLES automatic failovers is broken"
echo "ok: $CYCLES automatic failovers after kill -9 ($mid with the secondary stopped), $refused" \
	"restarted old primaries did not boot; one bank stream of $(grep -c '^bank ' "$TMP/stream")" \
	"lines, every iter exactly once"
