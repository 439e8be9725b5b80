#!/bin/bash
# A stale replica is never promoted automatically (docs/failover.md, "The
# rules"), in the namespace cluster of tests/cluster.sh with --cluster:
#
#  1. Only the replication link between primary A (node1) and secondary B
#     (node2) is cut (nftables drops TCP on its port; corosync still passes).
#     A holds its output for --cluster-wait, then runs on unprotected: it
#     starts generation 2 and releases output only once the CPG group has it;
#     B learns its replica is stale.
#  2. A's ftd is killed: B does not promote by itself ("the replica is stale").
#  3. `ftctl failover` on B is refused without --force, accepted with it, and
#     logged as a rollback saying how far back it goes.
#  4. A primary started on node1 while B runs the guest (its --peer leads
#     nowhere) refuses to boot: B tells every ftd that joins the group.
# On today's main B promotes at once in 2 (its ftd left the group), and 4
# boots a second guest.
# Usage: test_stale.sh PATH_TO_FTD PATH_TO_FTCTL
set -u
FTD=$(readlink -f "${1:?usage: test_stale.sh FTD FTCTL}")
FTCTL=${2:?usage: test_stale.sh FTD FTCTL}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
require_kvm
cluster_test ftg
PORT=7411
WAIT=3s
declare -A PID

start() { # NAME HOST ROLE ARGS...
	local name=$1 host=$2 role=$3
	shift 3
	cluster_spawn "$host" "$FTD" "$role" --cluster g --cluster-wait $WAIT $(pki_args "$host") \
		--mem 64M --vcpus 2 --quiet --control "$TMP/$name.sock" --console "$TMP/con.$name" \
		--state-dir "$TMP/state.$name" "$@" 2>"$TMP/log.$name" 9>&-
	PID[$name]=$CLUSTER_SPAWNED
	PIDS+=("$CLUSTER_SPAWNED")
	wait_for "$TMP/log.$name" "listening on|primary: running" 20 ||
		fail "$name did not start: $(cat "$TMP/log.$name")"
}
ctl() { local n=$1; shift; "$FTCTL" --socket "$TMP/$n.sock" "$@"; }

# ---- 1. replication link cut ---------------------------------------------------------
start b node2 secondary --listen 10.77.0.2:$PORT
start a node1 primary --peer 10.77.0.2:$PORT --guest builtin:bank --interval 10ms
wait_for "$TMP/log.b" "Replica holds checkpoint" 20 || fail "a was never protected: $(tail -3 "$TMP/log.a")"
sleep 1
cluster_cut_tcp $PORT || fail "cannot cut the replication link"
wait_for "$TMP/log.a" "moves to generation 2" 20 || fail "a did not start generation 2: $(tail -5 "$TMP/log.a")"
wait_for "$TMP/log.a" "the group has generation 2: unprotected output may leave" 10 ||
	fail "a never released its output: $(tail -5 "$TMP/log.a")"
wait_for "$TMP/log.b" "The replica is stale: node [0-9]* ran the guest on without it" 5 ||
	fail "b does not know its replica is stale: $(tail -5 "$TMP/log.b")"
ctl b status --json | grep -q '"stale":true' || fail "b's status: $(ctl b status --json)"
ctl b status | grep -q "STALE: the primary moved on to generation 2" || fail "b's status: $(ctl b status)"
sleep 1
echo "ok: replication link cut: the primary moved to generation 2 and the secondary marked its replica stale"

# ---- 2. the primary dies: no automatic promotion ------------------------------------
kill -KILL "${PID[a]}"
wait "${PID[a]}" 2>/dev/null
wait_for "$TMP/log.b" "the primary's ftd on node .* left: the process ended|ftd on node [0-9]* \(pid [0-9]*\) left" 10 ||
	fail "b did not see a's ftd leave: $(tail -5 "$TMP/log.b")"
sleep 3
grep -q "Promoted" "$TMP/log.b" && fail "b promoted a stale replica by itself: $(grep Promoted "$TMP/log.b")"
grep -q "Automatic failover waits: the replica is stale (the primary moved on to generation 2)" "$TMP/log.b" ||
	fail "b does not say why it waits: $(tail -5 "$TMP/log.b")"
echo "ok: the primary's ftd died: the stale replica was not promoted automatically"

# ---- 3. manual promotion needs --force and is a logged rollback ---------------------
out=$(ctl b failover 2>&1) && fail "failover of a stale replica without --force: $out"
grep -q "the replica is stale: .* use --force" <<<"$out" || fail "refusal: $out"
out=$(ctl b failover --force 2>&1) || fail "failover --force: $out"
wait_for "$TMP/log.b" "Rollback: the primary ran on without it for at least [0-9.]* s \(generation 2 there, 1 generation ahead of this checkpoint [0-9]* of generation 1\)" 5 ||
	fail "no rollback line: $(tail -5 "$TMP/log.b")"
wait_for "$TMP/log.b" "moves to generation 3 \(from the replica.s 1\)" 5 || fail "promotion did not start generation 3: $(tail -3 "$TMP/log.b")"
echo "ok: failover of the stale replica refused without --force, done with it and logged as a rollback"

# ---- 4. a primary started while another node runs the guest -------------------------
# Its --peer leads nowhere (so no secondary can tell it): the cluster group does.
cluster_spawn node1 "$FTD" primary --cluster g --cluster-wait $WAIT $(pki_args node1) --mem 64M \
	--vcpus 2 --quiet --control "$TMP/f.sock" --console "$TMP/con.f" --state-dir "$TMP/state.f" \
	--peer 10.77.0.2:$((PORT + 50)) --guest builtin:bank 2>"$TMP/log.f" 9>&-
F=$CLUSTER_SPAWNED
PIDS+=("$F")
deadline=$((SECONDS + 20))
while kill -0 "$F" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
kill -0 "$F" 2>/dev/null && fail "a primary booted while node2 runs the guest: $(tail -3 "$TMP/log.f")"
wait "$F"
rc=$?
[ $rc = 1 ] || fail "the refused primary exited $rc"
grep -q "cluster: node 2 runs guest .* generation 3 .*: not booting a second copy here" "$TMP/log.f" ||
	fail "no refusal to boot: $(tail -3 "$TMP/log.f")"
grep -q "booting builtin:bank from nothing" "$TMP/log.f" && fail "the guest was booted"
[ -s "$TMP/con.f" ] && fail "the refused primary wrote console output"
echo "ok: a primary started while node2 runs the guest refused to boot it (the cluster group said so)"
kill -TERM "${PID[b]}"
wait "${PID[b]}" 2>/dev/null
cluster_heal
exit 0
