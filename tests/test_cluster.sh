#!/bin/bash
# Integration test: daemon/cluster.c (through ft_cluster_probe) against a real two-node
# corosync cluster with a corosync-qnetd tie-breaker, built in namespaces by cluster.sh.
# Prints the failover time line (ms after the fault). Exit 0 pass, 77 skip (no namespaces
# and FT_REQUIRE_KVM unset), anything else fails.
#
# The probes run with -s: "settled no" marks a membership whose quorum votequorum has not
# decided yet (cluster_quorum_settled), "settled yes" the decision.
set -u
PROBE=${1:?usage: test_cluster.sh PATH_TO_ft_cluster_probe}
HERE=$(cd "$(dirname "$0")" && pwd)
export CLUSTER_NAME=${CLUSTER_NAME:-ftt}
export CLUSTER_DIR=${CLUSTER_DIR:-/tmp/ringft-cluster-$CLUSTER_NAME}
# The way ftd can make qnetd favour the primary's side of a cut (phase 3b). The file is in
# the node's private /run. An absolute path: a bare "test" fails under qdevice.
export CLUSTER_QDEVICE_HEURISTICS=${CLUSTER_QDEVICE_HEURISTICS-/usr/bin/test -e /run/ringft-primary}
. "$HERE/cluster.sh"
GROUP=ringft-test

fail() {
	echo "FAIL: $*" >&2
	local f
	for f in "${EV:-/nonexistent}"/*.out "${EV:-/nonexistent}"/*.err; do
		[ -s "$f" ] && { echo "---- $f" >&2; cat "$f" >&2; }
	done
	exit 1
}

if ! why=$(cluster_can_namespace 2>&1); then
	case $why in
	*"missing commands"*) echo "FAIL: $why" >&2 && exit 1 ;;
	esac
	[ "${FT_REQUIRE_KVM:-}" = 1 ] && echo "FAIL: FT_REQUIRE_KVM=1 but $why" >&2 && exit 1
	echo "skipped: $why"
	exit 77
fi
[ -x "$PROBE" ] || { echo "FAIL: $PROBE is not executable" >&2; exit 1; }

# One cluster of this name at a time (two build trees may run ctest together). What the
# test starts gets "9>&-": a daemon left by a killed run must not hold the lock for ever
# (the next run's cluster_up removes it).
exec 9>"/tmp/ringft-cluster-$CLUSTER_NAME.lock"
flock -w 150 9 || { echo "FAIL: another test_cluster holds the lock" >&2; exit 1; }

EV=$(mktemp -d)
# cluster_up chains this after cluster_down. CLUSTER_KEEP=1 keeps logs and probe output.
trap '[ -n "${CLUSTER_KEEP:-}" ] && echo "probe output kept in $EV" || rm -rf "$EV"' EXIT

now() {
	echo "$EPOCHREALTIME"
}

# ms T0 T1: milliseconds from T0 to T1 (EPOCHREALTIME values).
ms() {
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'
}

# rel T0 T1: "N ms after" or "N ms before" (T1 relative to T0).
rel() {
	local d
	d=$(ms "$1" "$2")
	if [ "$d" -lt 0 ]; then
		echo "$((-d)) ms before"
	else
		echo "$d ms after"
	fi
}

# start_probe HOST: a probe on HOST (-t: each line starts with its EPOCHREALTIME);
# its pid in PID_<HOST>.
start_probe() {
	cluster_spawn "$1" "$PROBE" -s -t "$GROUP" 9>&- >>"$EV/$1.out" 2>>"$EV/$1.err" ||
		fail "cannot start the probe on $1"
	printf -v "PID_$1" %s "$CLUSTER_SPAWNED"
}

# event_at HOST T0 REGEX: the time of the first line of HOST's probe at or after T0 that
# matches REGEX (extended, without the time stamp), or nothing.
event_at() {
	awk -v t0="$2" -v re="$3" '$1 >= t0 { t = $1; sub(/^[^ ]* /, ""); if ($0 ~ re) { print t; exit } }' \
		"$EV/$1.out"
}

# wait_event VAR HOST T0 REGEX SECONDS: like event_at, waiting for it, the time into VAR
# (in this shell: a failure must end the test, not a $(...) subshell).
wait_event() {
	local at deadline=$((SECONDS + $5))
	while :; do
		at=$(event_at "$2" "$3" "$4")
		[ -n "$at" ] && break
		[ $SECONDS -lt "$deadline" ] || fail "$2: no '$4' within $5 s"
		sleep 0.02
	done
	printf -v "$1" %s "$at"
}

# timeline T0 TIME WHAT...: the events sorted, in ms after T0, one per line.
timeline() {
	local t0=$1
	shift
	while [ $# -ge 2 ]; do
		echo "$(ms "$t0" "$1") $2"
		shift 2
	done | sort -n | awk '{ printf "    %6d ms  %s\n", $1, substr($0, index($0, " ") + 1) }'
}

# no_event HOST T0 REGEX: fails if HOST's probe printed REGEX at or after T0.
no_event() {
	local t
	t=$(event_at "$1" "$2" "$3")
	[ -z "$t" ] || fail "$1 printed '$3' $(ms "$2" "$t") ms after the start of this step"
}

probe_alive() {
	local pid=PID_$1
	kill -0 "${!pid}" 2>/dev/null || fail "the probe on $1 exited"
}

T=$(now)
cluster_up 9>&- || fail "cluster_up"
echo "cluster up in $(ms "$T" "$(now)") ms (token ${CLUSTER_TOKEN} ms, qdevice timeout" \
	"${CLUSTER_QDEVICE_TIMEOUT} ms, sync_timeout ${CLUSTER_QDEVICE_SYNC_TIMEOUT} ms)"
saved_pids=$(cat "$CLUSTER_DIR"/*/*.pid)

# 1. Both quorate; each probe sees the other join.
T=$(now)
start_probe node1
start_probe node2
wait_event ignored node1 "$T" '^quorate yes$' 10
wait_event ignored node2 "$T" '^quorate yes$' 10
wait_event ignored node1 "$T" "^joined 2 $PID_node2\$" 10
wait_event ignored node2 "$T" "^joined 1 $PID_node1\$" 10
[ "$(cluster_quorate node1)/$(cluster_quorate node2)" = yes/yes ] || fail "not both quorate"
echo "ok: both quorate, both probes see each other ($(ms "$T" "$(now)") ms)"
# votes HOST WANT: cluster_votes() through the probe (another group: no join seen above).
votes() {
	local got
	got=$(cluster_run "$1" "$PROBE" --votes ringft-test-votes 2>&1)
	[ "$got" = "$2" ] || fail "$1: '$got', expected '$2'"
}
votes node1 "votes 3/3 quorum 2 qdevice yes vote yes"
votes node2 "votes 3/3 quorum 2 qdevice yes vote yes"

# 2. A dead ftd: CPG reports PROCDOWN at once, the node stays a member and quorate.
T=$(now)
{
	kill -KILL "$PID_node1"
	wait "$PID_node1"
} 2>/dev/null # no "Killed" notice
wait_event t node2 "$T" "^left 1 $PID_node1 process\$" 5
d=$(ms "$T" "$t")
[ "$d" -le 1000 ] || fail "left process took $d ms"
no_event node2 "$T" '^(quorate|settled) no$'
echo "ok: kill -9 probe on node1: node2 sees 'left 1 process' after $d ms, stays quorate"
T=$(now)
start_probe node1
wait_event ignored node2 "$T" "^joined 1 $PID_node1\$" 10
wait_event ignored node1 "$T" "^joined 2 $PID_node2\$" 10

# cut_and_heal WINNER LOSER WHY: cut node1<->node2 only. Both still reach qnetd, which
# gives its vote to one side; then heal.
cut_and_heal() {
	local w=$1 l=$2 wid lid
	wid=$(_cluster_nodeid "$w")
	lid=$(_cluster_nodeid "$l")
	local wpid=PID_$w lpid=PID_$l
	T=$(now) # before the action: a quick merge can beat nft's return
	cluster_cut || fail "cluster_cut"
	wait_event tw "$w" "$T" "^left $lid ${!lpid} node\$" 20
	wait_event tl "$l" "$T" "^left $wid ${!wpid} node\$" 20
	wait_event sw "$w" "$T" '^settled yes$' 20
	wait_event ignored "$l" "$T" '^settled yes$' 20
	wait_event tq "$l" "$T" '^quorate no$' 5
	no_event "$w" "$T" '^quorate no$'
	[ "$(cluster_quorate "$w")/$(cluster_quorate "$l")" = yes/no ] ||
		fail "after the cut: $w $(cluster_quorate "$w"), $l $(cluster_quorate "$l")"
	echo "ok: cut node1<->node2, $3: $w wins. $w and $l see each other leave after" \
		"$(ms "$T" "$tw") and $(ms "$T" "$tl") ms; $l loses quorum after $(ms "$T" "$tq") ms;" \
		"$w's quorum settles after $(ms "$T" "$sw") ms"

	T=$(now)
	cluster_heal || fail "cluster_heal"
	wait_event tq "$l" "$T" '^quorate yes$' 30
	wait_event ignored "$w" "$T" "^joined $lid ${!lpid}\$" 30
	wait_event ignored "$l" "$T" "^joined $wid ${!wpid}\$" 30
	wait_event ignored "$w" "$T" '^settled yes$' 30
	no_event "$w" "$T" '^quorate no$'
	echo "ok: heal: $l quorate again after $(ms "$T" "$tq") ms, probes rejoined after" \
		"$(ms "$T" "$(now)") ms"
}

# 3. ffsplit on a 1:1 split: the side whose heuristics pass, then the side that was quorate
# before ("keep active partition": both were), then the lowest node id.
cut_and_heal node1 node2 "heuristics fail on both, tie_breaker lowest"
# 3b. The primary's node says so through the heuristics: its side wins.
cluster_run node2 touch /run/ringft-primary || fail "touch on node2"
cut_and_heal node2 node1 "heuristics pass on node2 only"
cluster_run node2 rm /run/ringft-primary || fail "rm on node2"

# 4. Isolate node1 (from node2 and qnetd). node2 sees node1 leave once totem gives up
# (token + consensus) while its quorum is still the old membership's ("settled no"); it
# is decided when qnetd, having lost node1, gives node2 the vote. node1 loses quorum when
# its qdevice gives up on qnetd (up to 2 heartbeats of 0.8 * qdevice timeout), at the
# latest sync_timeout after its own membership change.
T=$(now)
cluster_isolate node1 || fail "cluster_isolate"
wait_event tl node2 "$T" "^left 1 $PID_node1 node\$" 30
wait_event ts node2 "$T" '^settled yes$' 30
wait_event tq node1 "$T" '^quorate no$' 30
wait_event ignored node1 "$T" '^settled yes$' 30
no_event node2 "$T" '^quorate no$'
[ "$(cluster_quorate node1)/$(cluster_quorate node2)" = no/yes ] ||
	fail "after isolating node1: node1 $(cluster_quorate node1), node2 $(cluster_quorate node2)"
votes node1 "votes 1/3 quorum 2 qdevice yes vote no"
votes node2 "votes 2/3 quorum 2 qdevice yes vote yes"
# The contract of cluster_quorum_settled(): false when the peer's node-level leave arrives.
awk -v t0="$T" '$1 >= t0 { sub(/^[^ ]* /, ""); print }' "$EV/node2.out" |
	grep -B1 -m1 '^left 1 .* node$' | head -1 | grep -q '^settled no$' ||
	fail "node2 saw node1 leave with its quorum already settled"
echo "ok: isolate node1: node1 loses quorum $(rel "$tl" "$tq") node2 sees it leave," \
	"$(rel "$ts" "$tq") node2's quorum settles; ms after the cut:"
timeline "$T" "$tl" "node2 sees node1 leave (node), quorum not settled" \
	"$ts" "node2 quorum settled: quorate" "$tq" "node1 loses quorum"
echo "    (bound: sync_timeout + token = $((CLUSTER_QDEVICE_SYNC_TIMEOUT + CLUSTER_TOKEN)) ms" \
	"after node2 saw it leave, see daemon/cluster.h)"

T=$(now)
cluster_heal || fail "cluster_heal"
wait_event tq node1 "$T" '^quorate yes$' 30
wait_event ignored node2 "$T" "^joined 1 $PID_node1\$" 30
wait_event ignored node2 "$T" '^settled yes$' 30
echo "ok: heal: node1 quorate again after $(ms "$T" "$tq") ms"
probe_alive node1
probe_alive node2

# 5. corosync stops on node2. Its CPG says goodbye for its clients first: node1 sees
# node2's probe leave as a process (not a node) before that probe has seen corosync go
# (it then reports quorum lost and exits 1). node1 keeps quorum with qnetd's vote.
T=$(now)
kill -TERM "$(cluster_pid node2 corosync)"
wait_event tl node1 "$T" "^left 2 $PID_node2 (process|node)\$" 10
wait "$PID_node2" 2>/dev/null
rc=$?
[ $rc = 1 ] || fail "the probe on node2 exited $rc when corosync stopped, expected 1"
grep -q 'lost corosync' "$EV/node2.err" || fail "the probe on node2 did not say why it exited"
wait_event tn node2 "$T" '^quorate no$' 2
wait_event tu node1 "$T" '^settled no$' 10
wait_event ts node1 "$tu" '^settled yes$' 10
no_event node1 "$T" '^quorate no$'
cluster_run node2 "$PROBE" "$GROUP" >"$EV/unreach.out" 2>&1
rc=$?
if [ $rc != 1 ] || ! grep -q 'cannot reach corosync' "$EV/unreach.out"; then
	fail "probe without corosync: exit $rc, $(cat "$EV/unreach.out")"
fi
echo "ok: corosync stopped on node2: its probe exits 1, node1 stays quorate, a new probe" \
	"cannot reach corosync (exit 1); ms after the stop:"
how=$(awk -v t="$tl" '$1 == t { print $NF; exit }' "$EV/node1.out")
timeline "$T" "$tl" "node1 sees node2's probe leave ($how)" \
	"$tn" "node2's probe sees corosync gone" "$ts" "node1 quorum settled without node2"

# 6. Teardown leaves nothing behind. Only our corosyncs count (another cluster may run at
# the same time): those in our network namespaces, which outlive a delete while used.
our_netns=$(for ns in $(ip netns list | grep -oE "^$CLUSTER_NAME-[a-z0-9]+"); do
	stat -L -c 'net:[%i]' "/run/netns/$ns"
done)
[ "$(echo "$our_netns" | wc -w)" = 4 ] || fail "expected 4 namespaces: $our_netns"
T=$(now)
cluster_down || fail "cluster_down"
for pid in $saved_pids $PID_node1 $PID_node2; do
	_cluster_pid_alive "$pid" && fail "process $pid survived cluster_down"
done
left=$(ip netns list | grep -E "^$CLUSTER_NAME-" || true)
[ -z "$left" ] || fail "namespaces left: $left"
for pid in $(pgrep corosync); do
	_cluster_pid_alive "$pid" || continue # a zombie for init to reap is gone
	net=$(readlink "/proc/$pid/ns/net") || continue
	echo "$our_netns" | grep -qxF "$net" && fail "left: $(ps -o pid=,args= -p "$pid")"
done
echo "ok: teardown in $(ms "$T" "$(now)") ms, no namespace or corosync process left"
echo "1 passed, 0 failed"
