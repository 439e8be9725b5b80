#!/bin/bash
# Automatic failover on Corosync quorum (--cluster), in the two-node cluster with
# a qnetd tie-breaker that tests/cluster.sh builds in network namespaces: ftd
# runs inside node1 and node2 (each with its own /run), replicating over the
# namespace bridge with mutual TLS.
#
#  1. Process death: kill -9 the primary; the secondary promotes by itself (its
#     ftd left the CPG group) and the console stream goes on exactly once.
#  2. Isolating the active host (nothing in or out): it loses quorum and stops
#     its guest; the other side sees its node leave, waits --cluster-wait and
#     promotes. The stop comes before the promotion; after healing, the old
#     side stays stopped (its secondary is gone: it cannot know it may run).
#  3. Cutting only primary<->secondary, with the primary on node2 (which loses
#     the tie by node id): the qdevice heuristics (ftd's
#     /run/ftd/cluster-NAME.active marker) make the side running the guest
#     win, so it runs on and the secondary does not promote.
# In no run are two guests running at once, and the joined console stream has
# every iter exactly once.
# Usage: test_autofailover.sh PATH_TO_FTD PATH_TO_FTCTL
set -u
FTD=$(readlink -f "${1:?usage: test_autofailover.sh FTD FTCTL}")
FTCTL=${2:?usage: test_autofailover.sh FTD FTCTL}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
require_kvm
# Replication between the namespaces is not loopback: mutual TLS, one
# certificate per host, which each ftd there presents as client and server.
cluster_test fta "/usr/bin/test -e /run/ftd/cluster-t.active"
# tests/cluster.sh: token 1000 ms, quorum.device.sync_timeout 6000 ms.
WAIT=${FT_CLUSTER_WAIT:-7s}
MEM=64M
PORT=7410
declare -A PID

# start NAME HOST ROLE ARGS...: ftd on HOST (node1 or node2); NAME names its files.
start() {
	local name=$1 host=$2 role=$3
	shift 3
	cluster_spawn "$host" "$FTD" "$role" --cluster t --cluster-wait "$WAIT" $(pki_args "$host") --mem $MEM \
		--vcpus 2 --quiet --control "$TMP/$name.sock" --console "$TMP/con.$name" "$@" \
		2>"$TMP/log.$name" 9>&-
	PID[$name]=$CLUSTER_SPAWNED
	PIDS+=("$CLUSTER_SPAWNED")
	wait_for "$TMP/log.$name" "listening on|primary: running" 20 ||
		fail "$name did not start: $(cat "$TMP/log.$name")"
	"$FTCTL" --socket "$TMP/$name.sock" events --json >"$TMP/ev.$name" 2>&1 9>&- &
	PIDS+=("$!")
}
addr() { [ "$1" = node1 ] && echo 10.77.0.1 || echo 10.77.0.2; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
base() { sed -n 's/.*committed output from stream offset \([0-9]*\).*/\1/p' "$TMP/log.$1" | head -1; }
status_json() { "$FTCTL" --socket "$TMP/$1.sock" status --json 2>/dev/null; }

# ---- 1. process death --------------------------------------------------------------
start b node2 secondary --listen "$(addr node2):$PORT"
start a node1 primary --peer "$(addr node2):$PORT" --guest builtin:bank --interval 10ms
wait_for "$TMP/log.b" "Replica holds checkpoint" 20 || fail "a was never protected: $(tail -3 "$TMP/log.a")"
sleep 1.$((RANDOM % 10))
t_kill=$(now_ms)
kill -KILL "${PID[a]}"
wait_for "$TMP/log.b" "Promoted \(cluster: the primary's ftd ended\)" 10 ||
	fail "b did not promote after a's ftd died: $(tail -5 "$TMP/log.b")"
sleep 0.5
t_fail=$(event_ms "$TMP/ev.b" failover)
[ -n "$t_fail" ] || fail "b's events have no failover: $(cat "$TMP/ev.b")"
echo "ok: primary's ftd killed: the secondary ran the guest $((t_fail - t_kill)) ms later, by itself"

# ---- 2. isolating the active host ----------------------------------------------------
start c node1 secondary --listen "$(addr node1):$PORT"
"$FTCTL" --socket "$TMP/b.sock" protect --peer "$(addr node1):$PORT" >"$TMP/out" 2>&1 ||
	fail "protect: $(cat "$TMP/out")"
wait_for "$TMP/log.c" "Replica holds checkpoint" 20 || fail "c was never protected"
sleep 1
t_cut=$(now_ms)
cluster_isolate node2 || fail "cannot isolate node2"
wait_for "$TMP/log.c" "Promoted \(cluster: the primary's node left\)" 30 ||
	fail "c did not promote: $(tail -5 "$TMP/log.c")"
t_frozen=$(event_ms "$TMP/ev.b" frozen)
t_promoted=$(event_ms "$TMP/ev.c" failover)
[ -n "$t_frozen" ] || fail "b never stopped its guest: $(tail -5 "$TMP/log.b")"
[ "$t_frozen" -lt "$t_promoted" ] ||
	fail "c promoted at +$((t_promoted - t_cut)) ms, before b stopped its guest at +$((t_frozen - t_cut)) ms"
echo "ok: node2 isolated: its guest stopped at +$((t_frozen - t_cut)) ms, node1 ran it at +$((t_promoted - t_cut)) ms (--cluster-wait $WAIT)"
cluster_heal
cluster_wait_quorate node2 yes 30 9>&- || fail "node2 did not regain quorum"
sleep 2
# b must answer (an emulated CPU shared by three nodes can keep it a while).
deadline=$((SECONDS + $(time_limit 10)))
until st=$(status_json b) && [ -n "$st" ]; do
	kill -0 "${PID[b]}" 2>/dev/null || fail "b's ftd ended after the heal: $(tail -5 "$TMP/log.b")"
	[ $SECONDS -lt $deadline ] || fail "b does not answer after the heal: $(tail -5 "$TMP/log.b")"
	sleep 0.5
done
grep -q '"frozen":true' <<<"$st" || fail "b resumed its guest after the heal: $st"
grep -q '"quorum":"yes"' <<<"$st" || fail "b's status: $st"
echo "ok: after healing, node2's guest stays stopped (its secondary promoted meanwhile)"
kill -TERM "${PID[b]}"
wait "${PID[b]}" 2>/dev/null

# ---- the stream so far ------------------------------------------------------------
kill -TERM "${PID[c]}"
wait "${PID[c]}" 2>/dev/null
stream_join "$TMP/stream" "$TMP/con.a:0" "$TMP/con.b:$(base b)" "$TMP/con.c:$(base c)" ||
	fail "the consoles of a, b and c do not join"
check_bank "$TMP/stream" 2 || fail "the bank stream across both failovers is broken"
echo "ok: one bank stream across a process death and a host isolation: $(grep -c '^bank ' "$TMP/stream") lines, every iter once"

# ---- 3. cutting only primary<->secondary ------------------------------------------------
start e node1 secondary --listen "$(addr node1):$((PORT + 1))"
start d node2 primary --peer "$(addr node1):$((PORT + 1))" --guest builtin:bank --interval 10ms
wait_for "$TMP/log.e" "Replica holds checkpoint" 20 || fail "d was never protected"
sleep 1
cluster_cut || fail "cannot cut node1<->node2"
# Longer than the worst case of either side: the membership change, then --cluster-wait.
sleep 12
q1=$(cluster_quorate node1 9>&-) q2=$(cluster_quorate node2 9>&-)
[ "$q1" = no ] && [ "$q2" = yes ] ||
	fail "after the cut node1 (secondary) is quorate: $q1, node2 (primary): $q2"
status_json d | grep -q '"frozen":false' || fail "d stopped its guest: $(status_json d)"
grep -q "Promoted" "$TMP/log.e" && fail "e promoted although node2 kept quorum"
grep -q "Automatic failover waits: this node is not quorate" "$TMP/log.e" ||
	fail "e does not say why it waits: $(tail -3 "$TMP/log.e")"
echo "ok: primary<->secondary cut: the side running the guest won the tie (qdevice heuristics), the guest runs on, the secondary waits"
cluster_heal
exit 0
