#!/bin/bash
# Failover, protection again and again, switchover: the guest's console stream
# must come out exactly once across every hand-over.
#
#  1. Refusals: `ftctl failover` against a connected primary (without --force)
#     and during the initial sync (even with --force); `protect` and
#     `switchover` where they make no sense.
#  2. A chain of KILLS (default 20) failovers: node i runs builtin:bank and is
#     protected by node i+1 (the first by `ftd primary --peer`, the others by
#     `ftctl protect --peer` on a promoted secondary); node i is killed with
#     kill -9 at a random moment, node i+1 is promoted with `ftctl failover`.
#     Each node's console starts at a logged offset of the guest's output
#     stream; where two nodes' consoles overlap they must hold the same bytes,
#     and the joined stream must have every bank line ok and every vCPU's iters
#     consecutive from 0: no gap, no repeat.
#  3. `ftctl switchover` to one more node: nothing lost or repeated either, the
#     old node exits 0.
#  4. `ftctl events` on one node saw its story in order.
# Usage: test_failover.sh PATH_TO_FTD PATH_TO_FTCTL
set -u
FTD=${1:?usage: test_failover.sh FTD FTCTL}
FTCTL=${2:?usage: test_failover.sh FTD FTCTL}
. "$(dirname "$0")/lib.sh"
require_kvm

KILLS=${FT_FAILOVER_KILLS:-20}
BASE_PORT=$((18000 + RANDOM % 500))
MEM=64M

# node N ARGS...: starts `ftd secondary` node N (port, console, log, socket).
node() {
	local n=$1
	shift
	"$FTD" secondary --listen 127.0.0.1:$((BASE_PORT + n)) --mem $MEM --vcpus 2 --quiet \
		--control "$TMP/n$n.sock" --console "$TMP/con.$n" "$@" 2>"$TMP/log.$n" &
	NODE_PID[$n]=$!
	PIDS+=("$!")
	wait_for "$TMP/log.$n" "listening on" 10 || fail "node $n did not start: $(cat "$TMP/log.$n")"
}

ctl() { # N ARGS...: ftctl on node N
	local n=$1
	shift
	"$FTCTL" --socket "$TMP/n$n.sock" "$@"
}

# expect_refusal N MESSAGE ARGS...: ftctl on node N exits 1 saying MESSAGE.
expect_refusal() {
	local n=$1 msg=$2 out rc
	shift 2
	out=$(ctl "$n" "$@" 2>&1)
	rc=$?
	[ $rc -eq 1 ] && grep -q -- "$msg" <<<"$out" ||
		fail "ftctl $* on node $n: exit $rc, '$out' (expected 1, '$msg')"
}

# Where node N's console starts in the guest's output stream.
console_base() {
	sed -n 's/.*committed output from stream offset \([0-9]*\).*/\1/p' "$TMP/log.$1" | head -1
}

# ---- 1. refusals ----------------------------------------------------------------
# The primary is stopped before it can send a page: the secondary is stopped
# while the primary connects (the kernel completes the connection and queues
# its HELLO), then the primary, then the secondary goes on and answers a HELLO
# whose sender sends nothing more. (Only touched pages are read by a sync, so
# no guest size makes the sync reliably long enough to stop it inside.)
"$FTD" secondary --listen 127.0.0.1:$((BASE_PORT + 900)) --mem 4G --vcpus 2 --quiet \
	--timeout 30s --control "$TMP/s.sock" --console /dev/null 2>"$TMP/log.s" &
SPID=$!
PIDS+=("$SPID")
wait_for "$TMP/log.s" "listening on" 10 || fail "secondary did not start: $(cat "$TMP/log.s")"
kill -STOP "$SPID"
"$FTD" primary --peer 127.0.0.1:$((BASE_PORT + 900)) --guest builtin:bank --mem 4G --vcpus 2 \
	--quiet --timeout 30s --control "$TMP/p.sock" --console /dev/null 2>"$TMP/log.p" &
PPID_=$!
PIDS+=("$PPID_")
# The primary's own status says when its HELLO is out (connected, waiting for the answer).
for _ in $(seq 1 100); do
	"$FTCTL" --socket "$TMP/p.sock" status --json 2>/dev/null | grep -q '"state":"handshake"' && break
	sleep 0.1
done
kill -STOP "$PPID_"
kill -CONT "$SPID"
wait_for "$TMP/log.s" "connected \(guest" 10 || fail "the primary never connected: $(cat "$TMP/log.s")"
"$FTCTL" --socket "$TMP/s.sock" failover --force >"$TMP/out" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "the replica holds no" "$TMP/out" ||
	fail "failover during the sync: exit $rc, $(cat "$TMP/out")"
echo "ok: failover during the initial sync refused: $(cat "$TMP/out")"
kill -CONT "$PPID_"
wait_for "$TMP/log.s" "Replica holds checkpoint" 30 || fail "the 4 GiB guest was never protected"
"$FTCTL" --socket "$TMP/s.sock" failover >"$TMP/out" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "the primary is still connected: it may be alive" "$TMP/out" ||
	fail "failover against a live primary: exit $rc, $(cat "$TMP/out")"
echo "ok: failover against a connected primary refused: $(cat "$TMP/out")"
for req in "switchover" "protect --peer 127.0.0.1:1"; do
	"$FTCTL" --socket "$TMP/s.sock" $req >"$TMP/out" 2>&1
	rc=$?
	[ $rc -eq 1 ] && grep -q "this is the secondary" "$TMP/out" ||
		fail "$req on a secondary: exit $rc, $(cat "$TMP/out")"
done
"$FTCTL" --socket "$TMP/p.sock" protect --peer 127.0.0.1:2 >"$TMP/out" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "already protected with 127.0.0.1:$((BASE_PORT + 900))" "$TMP/out" ||
	fail "protect on a protected primary: exit $rc, $(cat "$TMP/out")"
echo "ok: switchover and protect refused on a secondary, protect on a protected primary"
kill -TERM "$PPID_" "$SPID"
wait "$PPID_" "$SPID"

# ---- 2. the chain of failovers -----------------------------------------------------
declare -a NODE_PID
# Node 1 fences (refusing until fence.ok exists) and reports role changes.
printf '#!/bin/sh\necho "$FTD_PEER $FTD_CHECKPOINT" >>%s/fence.log\n[ -e %s/fence.ok ]\n' \
	"$TMP" "$TMP" >"$TMP/fence.sh"
chmod +x "$TMP/fence.sh"
node 1 --fence-command "$TMP/fence.sh" \
	--notify-command 'echo "$FTD_EVENT ${FTD_ROLE:-}" >>'"$TMP/notify.1"
ctl 1 events >"$TMP/events.1" 2>&1 &
PIDS+=("$!")
wait_for "$TMP/events.1" subscribed 5 || fail "ftctl events: $(cat "$TMP/events.1")"
"$FTD" primary --peer 127.0.0.1:$((BASE_PORT + 1)) --guest builtin:bank --mem $MEM --vcpus 2 \
	--interval 10ms --quiet --control "$TMP/n0.sock" --console "$TMP/con.0" 2>"$TMP/log.0" &
NODE_PID[0]=$!
PIDS+=("$!")
mid_epoch=0
for ((i = 0; i < KILLS; i++)); do
	next=$((i + 1))
	if [ $i -gt 0 ]; then
		node $next
		ctl $i protect --peer 127.0.0.1:$((BASE_PORT + next)) >"$TMP/out" 2>&1 ||
			fail "protect on node $i: $(cat "$TMP/out")"
	fi
	wait_for "$TMP/log.$next" "Replica holds checkpoint" 20 ||
		fail "node $next never held a checkpoint: $(tail -3 "$TMP/log.$next")"
	sleep 0.$((2 + RANDOM % 8))$((RANDOM % 10))
	if [ $((i % 3)) -eq 1 ]; then
		# Stall the receiver so checkpoints pile up in the socket buffers: the
		# primary dies in the middle of sending one.
		kill -STOP "${NODE_PID[$next]}"
		sleep 0.15
		kill -KILL "${NODE_PID[$i]}"
		wait "${NODE_PID[$i]}" 2>/dev/null
		kill -CONT "${NODE_PID[$next]}"
	else
		kill -KILL "${NODE_PID[$i]}"
		wait "${NODE_PID[$i]}" 2>/dev/null
	fi
	wait_for "$TMP/log.$next" "Primary lost: waiting for an operator" 10 ||
		fail "node $next did not notice the loss: $(tail -3 "$TMP/log.$next")"
	grep -Eq "mid-epoch \(discarded\)|Lost the primary" "$TMP/log.$next" && mid_epoch=$((mid_epoch + 1))
	if [ $next -eq 1 ]; then
		expect_refusal 1 "the fence command failed (exit status 1)" failover
		touch "$TMP/fence.ok"
	fi
	ctl $next failover >"$TMP/out" 2>&1 || fail "failover to node $next: $(cat "$TMP/out")"
	grep -Eq "^promoted: the guest runs here from checkpoint [0-9]+$" "$TMP/out" ||
		fail "ftctl failover said: $(cat "$TMP/out")"
done
last=$KILLS
expect_refusal $last "this node runs the guest" failover
expect_refusal $last "the guest is not protected" switchover
ctl $last status >"$TMP/out" || fail "status of the promoted node"
grep -q "active here since a ftctl failover from checkpoint" "$TMP/out" ||
	fail "status of a promoted node: $(cat "$TMP/out")"
echo "ok: $KILLS failovers after kill -9 ($mid_epoch of them with an epoch in flight or the connection reset)"

# ---- 3. switchover ------------------------------------------------------------------
sw=$((KILLS + 1))
[ -n "${NODE_PID[$sw]:-}" ] || node $sw
ctl $last protect --peer 127.0.0.1:$((BASE_PORT + sw)) >"$TMP/out" 2>&1 ||
	fail "protect for the switchover: $(cat "$TMP/out")"
wait_for "$TMP/log.$sw" "Replica holds checkpoint" 20 || fail "node $sw never protected"
sleep 0.5
ctl $last switchover >"$TMP/out" 2>&1 || fail "switchover: $(cat "$TMP/out")"
grep -Eq "^switched over: 127.0.0.1:$((BASE_PORT + sw)) runs the guest from checkpoint [0-9]+$" \
	"$TMP/out" || fail "switchover said: $(cat "$TMP/out")"
wait "${NODE_PID[$last]}"
rc=$?
[ $rc -eq 0 ] || fail "the node that switched over exited $rc"
grep -q "Promoted (switchover from" "$TMP/log.$sw" || fail "node $sw: $(tail -3 "$TMP/log.$sw")"
sleep 1
kill -TERM "${NODE_PID[$sw]}"
wait "${NODE_PID[$sw]}" || fail "node $sw exited $?"
echo "ok: switchover: $(cat "$TMP/out")"

# ---- the stream -------------------------------------------------------------------
args=("$TMP/con.0:0")
for ((n = 1; n <= sw; n++)); do
	b=$(console_base $n)
	[ -n "$b" ] || fail "node $n logged no console offset"
	args+=("$TMP/con.$n:$b")
done
stream_join "$TMP/stream" "${args[@]}" || fail "the consoles do not join into one stream"
check_bank "$TMP/stream" 2 || fail "the bank stream across $KILLS failovers and a switchover is broken"
echo "ok: one bank stream across $KILLS failovers and a switchover: $(grep -c '^bank ' "$TMP/stream") lines, every iter exactly once"

# ---- fence and notify hooks -------------------------------------------------------
[ "$(sort -u "$TMP/fence.log" | wc -l)" = 1 ] && [ "$(wc -l <"$TMP/fence.log")" = 2 ] &&
	grep -Eq "^127.0.0.1:[0-9]+ [0-9]+$" "$TMP/fence.log" ||
	fail "fence command calls: $(cat "$TMP/fence.log")"
# Each call is its own process: they may finish in any order.
want="failover|fence-failed|fenced|role primary|role secondary"
got=$(grep -E "^(role|fence|failover)" "$TMP/notify.1" | head -5 | sed 's/ *$//' | sort | paste -sd'|')
[ "$got" = "$want" ] || fail "notify command calls: '$got', expected '$want'"
echo "ok: fence command refused a promotion (exit 1), then allowed it; notify command: $want"

# ---- 4. events -----------------------------------------------------------------------
# First occurrences: as a secondary, then promoted and protecting node 2.
want="subscribed peer-connected replicating peer-lost fence-failed fenced failover role protect sync-started protected"
got=$(awk '{print $2}' "$TMP/events.1" | grep -v sync-progress | awk '!seen[$0]++' | head -11 | xargs)
[ "$got" = "$want" ] || fail "events of node 1: '$got', expected '$want': $(cat "$TMP/events.1")"
echo "ok: ftctl events: $want"
exit 0
