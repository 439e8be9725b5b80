#!/bin/bash
# Issue 13: a protected builtin:kv guest serves real clients through its
# virtio-net NIC on a TAP device, in the namespaces of tests/netns.sh (a
# switch, a client, hosts A and B with the guest's TAP bridged to the switch,
# a replication link A<->B). One case per run, each on a fresh topology with
# fresh ftd processes:
#
#  redis      `ftd run` (unprotected), then `ftd primary` + `ftd secondary`
#             (protected): redis-cli, every command and its errors in Redis's
#             wording, a big value, 50 connections at once, redis-benchmark
#             (no errors), iperf (a throughput figure).
#  failover   FT_NET_ROUNDS (default 10) rounds, each a fresh pair: the
#             kv_jepsen.py checker writes from the client, the primary is
#             killed with kill -9 at a random moment (a third of the time with
#             the secondary stopped around it), `ftctl failover` on B; the
#             guest's MAC must move to B's switch port at once (its announce),
#             and the checker must find every acknowledged write, no reset, no
#             retracted reply.
#  tapbusy    a promoted guest whose TAP another process holds runs on without
#             its network (it must not stop), then attaches and announces once
#             the TAP is free; the checker finds nothing lost, no reset.
#  failover-cluster
#             the same with --cluster (automatic, Corosync in the namespaces
#             of tests/cluster.sh, whose node1 and node2 are hosts A and B):
#             FT_NET_CLUSTER_ROUNDS rounds (default 5).
#  stall      a secondary that stops acknowledging: (1) SIGSTOP shorter than
#             --timeout: a SET sent during the stall gets no reply until
#             SIGCONT, held frames show in `ftctl status`, and 16 connections
#             asking for 12.5 MiB of GET replies fill the hold to
#             --net-hold-max and no further (backpressure, net.backpressured);
#             (2) the replication link cut and healed: the same; (3) SIGSTOP
#             longer than --timeout: the primary drops the secondary, runs
#             unprotected and the reply comes then. The checker runs through
#             all of it: nothing lost.
#  verify     --verify under client traffic: 0 mismatches; with
#             --debug-no-device-dirty (the device does not mark the pages it
#             writes) the primary's --verify must find mismatches.
#  selfcheck  the checker fires on the real system: a rollback (the primary
#             drops its silent secondary, runs on, dies; the old replica is
#             promoted anyway) must make kv_jepsen.py fail.
#
# Usage: test_net.sh FTD FTCTL CASE   (needs root: namespaces, TAP devices)
# Skipped (77) without /dev/kvm, namespaces, TAP devices, redis-tools, iperf or
# python3-redis, unless FT_REQUIRE_KVM=1 (then each is a failure). With
# /dev/kvm, an ftd without --net fails (the feature is missing, not the host).
# FT_NET_STANDIN=1 (redis case only): redis-server and an iperf server inside
# host A, on the guest's address and MAC, stand in for ftd: checks the
# topology and the clients without the guest. KEEP_TMP=1 keeps the logs.
# shellcheck source-path=SCRIPTDIR
set -u
FTD=$(readlink -f "${1:?usage: test_net.sh FTD FTCTL CASE}")
FTCTL=$(readlink -f "${2:?usage: test_net.sh FTD FTCTL CASE}")
CASE=${3:?usage: test_net.sh FTD FTCTL redis|failover|failover-cluster|stall|verify|selfcheck|tapbusy}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/netns.sh"
. "$HERE/kv_lib.sh"
trap 'cleanup; net_down' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

STANDIN=${FT_NET_STANDIN:-}
ROUNDS=${FT_NET_ROUNDS:-10}
CLUSTER_ROUNDS=${FT_NET_CLUSTER_ROUNDS:-5}
HOLD_MAX=${FT_NET_HOLD_MAX:-64K}
case $HOLD_MAX in
*K) HOLD_MAX_BYTES=$((${HOLD_MAX%K} * 1024)) ;;
*M) HOLD_MAX_BYTES=$((${HOLD_MAX%M} * 1024 * 1024)) ;;
*) HOLD_MAX_BYTES=$HOLD_MAX ;;
esac

case $CASE in
redis | failover | failover-cluster | stall | verify | selfcheck | tapbusy) ;;
*) echo "usage: test_net.sh FTD FTCTL redis|failover|failover-cluster|stall|verify|selfcheck|tapbusy" >&2 && exit 2 ;;
esac

# ---- prerequisites ---------------------------------------------------------------------
if [ -n "$STANDIN" ]; then
	[ "$CASE" = redis ] || fail "FT_NET_STANDIN=1 is for the redis case only"
else
	require_kvm
fi
why=$(net_can 2>&1) || skip_or_fail "$why"
missing=()
for c in redis-cli redis-benchmark iperf timeout; do
	command -v "$c" >/dev/null || missing+=("$c")
done
[ -x "$PY" ] && "$PY" -c 'import redis' 2>/dev/null || missing+=("$PY with python3-redis")
[ ${#missing[@]} = 0 ] ||
	skip_or_fail "missing: ${missing[*]} (apt-get install redis-tools iperf python3-redis)"
if [ -z "$STANDIN" ]; then
	"$FTD" --help >"$TMP/help" 2>&1 || fail "ftd --help exited $?"
	for opt in "--net tap=" --guest-ip --guest-gateway --net-hold-max builtin:kv; do
		grep -qF -- "$opt" "$TMP/help" ||
			fail "ftd --help lacks '$opt': this ftd has no replicated NIC (issue 13)"
	done
fi

# ---- redis ------------------------------------------------------------------------------
kv_commands() { # the whole command list against the guest that runs now
	local big
	expect PONG PING
	expect hello ECHO hello
	expect OK FLUSHALL
	expect OK SET k1 v1
	expect v1 GET k1
	expect "" SET k1 v2 NX
	expect v1 GET k1
	expect OK SET k1 v3 XX
	expect v3 GET k1
	expect "" SET k2 x XX
	expect 0 EXISTS k2
	expect OK SET k2 x NX
	expect OK SET k3 v EX 100
	expect OK SET k4 v PX 100000
	expect v GET k4
	expect 2 EXISTS k1 k2 k404
	expect 1 DEL k2 k404
	expect 0 EXISTS k2
	expect "" GET k2
	expect 1 INCR ctr
	expect 42 INCRBY ctr 41
	expect 41 DECR ctr
	expect -1 INCRBY neg -1
	expect OK MSET a 1 b 2 c 3
	expect "$(printf '1\n2\n\n3')" MGET a b zz c
	expect 8 DBSIZE
	big=$(head -c 12000 /dev/urandom | base64 -w0)
	net_exec client timeout 20 redis-cli -h "$GUEST_IP" -x SET big <<<"$big" >"$TMP/out" 2>&1
	[ "$(cat "$TMP/out")" = OK ] || fail "SET of a 16 KiB value: $(cat "$TMP/out")"
	[ "$(cli GET big)" = "$big" ] || fail "GET of a 16 KiB value differs"
	expect OK FLUSHALL
	expect 0 DBSIZE
	cli INFO >"$TMP/info" 2>&1 || fail "INFO: $(cat "$TMP/info")"
	grep -qE '^[a-z_]+:' "$TMP/info" || fail "INFO has no field: $(head -5 "$TMP/info")"
	cli CONFIG GET save >"$TMP/out" 2>&1 || fail "CONFIG GET save: $(cat "$TMP/out")"
	grep -q '^ERR' "$TMP/out" && fail "CONFIG GET save: $(cat "$TMP/out")"
	expect_err "ERR unknown command" FROBNICATE a b
	expect_err "ERR wrong number of arguments for 'get' command" GET
	expect_err "ERR wrong number of arguments for 'get' command" GET a b
	expect OK SET notnum abc
	expect_err "ERR value is not an integer or out of range" INCR notnum
	expect_err "ERR value is not an integer or out of range" INCRBY ctr x
	expect OK QUIT
	echo "ok: redis-cli: every command, NX/XX, EX/PX, a 16 KiB value, the errors in Redis's wording ($1)"

	jepsen conns --clients 50 >"$TMP/out" 2>&1 || fail "50 connections: $(cat "$TMP/out")"
	echo "$(cat "$TMP/out") ($1)"

	net_exec client timeout 120 redis-benchmark -h "$GUEST_IP" -q -n 2000 -c 50 -t set,get \
		>"$TMP/bench" 2>&1 || fail "redis-benchmark exited $?: $(tr '\r' '\n' <"$TMP/bench" | tail -5)"
	tr '\r' '\n' <"$TMP/bench" | grep -E '^(SET|GET): [0-9.]+ requests per second' >"$TMP/bench.ok"
	if [ "$(wc -l <"$TMP/bench.ok")" != 2 ] || grep -qiE 'error|err ' "$TMP/bench"; then
		fail "redis-benchmark: $(tr '\r' '\n' <"$TMP/bench" | grep -v '^ *$' | tail -5)"
	fi
	echo "ok: redis-benchmark -n 2000 -c 50 ($1): $(paste -sd';' "$TMP/bench.ok")"

	net_exec client timeout 60 iperf -c "$GUEST_IP" -t 3 >"$TMP/iperf" 2>&1 ||
		fail "iperf exited $?: $(cat "$TMP/iperf")"
	grep -qE '[0-9.]+ [KMG]?bits/sec' "$TMP/iperf" || fail "iperf has no throughput: $(cat "$TMP/iperf")"
	echo "ok: iperf -t 3 ($1): $(grep -oE '[0-9.]+ [KMG]?bits/sec' "$TMP/iperf" | tail -1)"
}

case_redis() {
	# shellcheck disable=SC2034 # lib.sh's pki_* read it
	C=$TMP/pki
	pki_ca ca
	pki_cert hosta ca
	pki_cert hostb ca
	net_up || fail "cannot build the topology"
	if [ -n "$STANDIN" ]; then
		net_standin_up a "$MAC" || fail "stand-in"
		ip netns exec "$(net_ns a)" redis-server --bind "$GUEST_IP" --port 6379 --save "" \
			--appendonly no --protected-mode no >"$TMP/log.redis" 2>&1 &
		PIDS+=("$!")
		ip netns exec "$(net_ns a)" iperf -s -B "$GUEST_IP" >"$TMP/log.iperf" 2>&1 &
		PIDS+=("$!")
		wait_service 10
		[ "$(net_mac_host "$MAC")" = a ] || fail "the switch learned $MAC on '$(net_mac_host "$MAC")', not a"
		kv_commands "stand-in: redis-server in host A"
		return
	fi
	# shellcheck disable=SC2046 # option lists
	ftd_start r a run $(guest_args)
	wait_service 30
	kv_commands "ftd run, unprotected"
	stop r
	net_up || fail "cannot build the topology again"
	start_pair
	[ "$(net_mac_host "$MAC")" = a ] || fail "the switch learned $MAC on '$(net_mac_host "$MAC")', not a"
	kv_commands "protected, interval $INTERVAL"
	ctl a status >"$TMP/out" 2>&1 || fail "ftctl status: $(cat "$TMP/out")"
	grep -q protected "$TMP/out" || fail "the primary is not protected after the clients: $(cat "$TMP/out")"
	grep -Eq "^  net $MAC on TAP $NET_TAP: [0-9]+ frames held \([0-9]+ bytes\); rx [1-9][0-9]* frames \([0-9]+ dropped\), tx [1-9][0-9]* frames$" "$TMP/out" ||
		fail "ftctl status does not show the NIC: $(cat "$TMP/out")"

	# --output-interval: with a whole second between periodic checkpoints, each
	# reply gets a checkpoint of its own right after it instead of waiting for
	# the next tick (20 round trips on one connection, each waiting for its
	# reply: about 20 s without, well under 5 s with).
	stop a
	stop b
	net_up || fail "cannot build the topology again"
	local saved=$INTERVAL t0 t1 i
	INTERVAL=1s
	PRIMARY_EXTRA=(--output-interval 1ms)
	start_pair
	INTERVAL=$saved
	PRIMARY_EXTRA=()
	[ "$(cli PING)" = PONG ] || fail "--output-interval: the first PING got no PONG"
	t0=$(now_ms)
	i=$(cli -r 20 PING | grep -c '^PONG$')
	t1=$(now_ms)
	[ "$i" = 20 ] || fail "--output-interval: $i of 20 PINGs got a PONG"
	[ $((t1 - t0)) -lt 5000 ] ||
		fail "--output-interval 1ms: 20 PINGs took $((t1 - t0)) ms at --interval 1s: replies waited for the interval"
	echo "ok: --output-interval 1ms at --interval 1s: 20 PINGs in $((t1 - t0)) ms"
}

# ---- failover ---------------------------------------------------------------------------
case_failover() {
	local r
	# shellcheck disable=SC2034 # lib.sh's pki_* read it
	C=$TMP/pki
	pki_ca ca
	pki_cert hosta ca
	pki_cert hostb ca
	for ((r = 1; r <= ROUNDS; r++)); do
		net_up || fail "cannot build the topology"
		failover_round "$r" ""
	done
	echo "ok: $ROUNDS failovers after kill -9 under the checker: nothing lost, no reset, no retracted reply"
}

case_failover_cluster() {
	local r
	# The namespace cluster of tests/cluster.sh (lib.sh's cluster_test: the lock,
	# cluster_up, certificates node1 and node2); its node1 and node2 are A and B.
	cluster_test ftnet "/usr/bin/test -e /run/ftd/cluster-t.active"
	pki_cert hosta ca
	pki_cert hostb ca
	CLUSTER_MODE=1
	# shellcheck disable=SC2034 # read by netns.sh
	NET_NS_A=$(_cluster_ns node1)
	# shellcheck disable=SC2034
	NET_NS_B=$(_cluster_ns node2)
	for ((r = 1; r <= CLUSTER_ROUNDS; r++)); do
		net_up || fail "cannot build the topology in the cluster's namespaces"
		failover_round "$r" auto
	done
	echo "ok: $CLUSTER_ROUNDS automatic failovers (--cluster) after kill -9 under the checker: nothing lost, no reset, no retracted reply"
}

# ---- stall ------------------------------------------------------------------------------
# stall_round NAME HOW SECONDS TIMEOUT: a pair with --timeout TIMEOUT, the
# checker and a probe running; the secondary stops acknowledging for SECONDS
# (HOW: stop = SIGSTOP, cut = the replication link cut); the probe's SET is
# sent during it.
stall_round() {
	local name=$1 how=$2 secs=$3 timeout=$4 t0 t_reply held_f held_b held_b2 b bp rc
	net_up || fail "cannot build the topology"
	start_pair --timeout "$timeout" --net-hold-max "$HOLD_MAX"
	rm -f "$TMP/stop" "$TMP/trigger"
	jepsen --clients 4 --stop-file "$TMP/stop" >"$TMP/jep.$name" 2>&1 &
	local jpid=$!
	PIDS+=("$jpid")
	# The checker counts the keys before its run and after: the probe and the
	# flood start after it and delete their keys before it ends.
	wait_for "$TMP/jep.$name" "kv_jepsen: started" 60 || fail "$name: checker: $(cat "$TMP/jep.$name")"
	jepsen probe --trigger "$TMP/trigger" >"$TMP/probe.$name" 2>&1 &
	local ppid=$!
	PIDS+=("$ppid")
	# Backpressure: connections that will ask for far more than the hold bound.
	jepsen flood --trigger "$TMP/trigger" --clients 16 --size 16384 --count 50 \
		>"$TMP/flood.$name" 2>&1 &
	local fpid=$!
	PIDS+=("$fpid")
	wait_for "$TMP/probe.$name" "^connected" 20 || fail "$name: probe: $(cat "$TMP/probe.$name")"
	wait_for "$TMP/flood.$name" "^connected" 20 || fail "$name: flood: $(cat "$TMP/flood.$name")"
	sleep 1
	t0=$(now_ms)
	if [ "$how" = stop ]; then
		kill -STOP "${PID[b]}"
	else
		net_repl_cut || fail "$name: cannot cut the replication link"
	fi
	# What was acknowledged before may still leave; then nothing may.
	sleep 0.3
	touch "$TMP/trigger"
	if [ "$secs" -lt "${timeout%s}" ]; then
		sleep $((secs - 1))
		grep -q '^reply' "$TMP/probe.$name" &&
			fail "$name: a reply left the primary while its secondary was not acknowledging: $(cat "$TMP/probe.$name")"
		grep -q '^flood ok' "$TMP/flood.$name" &&
			fail "$name: the flood's replies left the primary during the stall: $(cat "$TMP/flood.$name")"
		held_f=$(held_net a frames)
		held_b=$(held_net a bytes)
		if [ -z "$held_f" ] || [ -z "$held_b" ]; then
			fail "$name: ftctl status shows no held frames and bytes of the NIC: $(held_fields a | xargs)"
		fi
		[ "$held_f" -gt 0 ] || fail "$name: nothing held during the stall ($(held_fields a | xargs))"
		sleep 0.5
		held_b2=$(held_net a bytes)
		# A bound is a bound: never past it (records count whole); and the flood
		# asked for 12.5 MiB, so the hold must have reached it.
		for b in "$held_b" "$held_b2"; do
			[ "$b" -le "$HOLD_MAX_BYTES" ] ||
				fail "$name: $b bytes held, over --net-hold-max $HOLD_MAX: no backpressure"
		done
		[ "$held_b2" -ge $((HOLD_MAX_BYTES - 4096)) ] ||
			fail "$name: only $held_b2 bytes held while the flood waits: the bound $HOLD_MAX was never" \
				"reached, backpressure is untested (the guest's TCP may hold back by itself: a lower FT_NET_HOLD_MAX)"
		bp=$(held_fields a | sed -n 's/^net\.backpressured=//p')
		case $bp in
		'' | true | [1-9]*) ;;
		*) fail "$name: $held_b2 bytes held (bound $HOLD_MAX) but net.backpressured is $bp" ;;
		esac
		kill -0 "${PID[a]}" 2>/dev/null || fail "$name: the primary died during the stall: $(tail -3 "$TMP/log.a")"
		grep -q '^reply' "$TMP/probe.$name" &&
			fail "$name: a reply left the primary while its secondary was not acknowledging: $(cat "$TMP/probe.$name")"
		if [ "$how" = stop ]; then
			kill -CONT "${PID[b]}"
		else
			net_repl_heal
		fi
		wait_for "$TMP/probe.$name" '^reply' 15 ||
			fail "$name: no reply 15 s after the secondary came back: $(cat "$TMP/probe.$name")"
		grep -q "the guest runs unprotected" "$TMP/log.a" &&
			fail "$name: the primary dropped its secondary within --timeout $timeout: $(tail -3 "$TMP/log.a")"
		t_reply=$(sed -n 's/^reply \([0-9]*\)\.\([0-9]\{3\}\).*/\1\2/p' "$TMP/probe.$name")
		echo "ok: $name: no reply for $secs s while the secondary did not acknowledge, the reply came" \
			"$((t_reply - t0)) ms after the stall began; held $held_f frames, $held_b2 bytes with the" \
			"flood waiting (--net-hold-max $HOLD_MAX, backpressured: ${bp:-not shown})"
	else
		# Longer than --timeout: the primary drops the secondary and releases.
		wait_for "$TMP/probe.$name" '^reply' $((secs + 5)) ||
			fail "$name: no reply $((secs + 5)) s into a stall longer than --timeout $timeout: $(tail -3 "$TMP/log.a")"
		t_reply=$(sed -n 's/^reply \([0-9]*\)\.\([0-9]\{3\}\).*/\1\2/p' "$TMP/probe.$name")
		grep -q "the guest runs unprotected" "$TMP/log.a" ||
			fail "$name: the reply came but the primary did not drop its secondary: $(tail -3 "$TMP/log.a")"
		[ $((t_reply - t0)) -ge $((${timeout%s} * 1000 - 500)) ] ||
			fail "$name: the reply came $((t_reply - t0)) ms into the stall, before --timeout $timeout"
		[ $((t_reply - t0)) -lt $((secs * 1000)) ] ||
			fail "$name: the reply came $((t_reply - t0)) ms into the stall: only when it ended"
		if [ "$how" = stop ]; then
			kill -CONT "${PID[b]}"
		else
			net_repl_heal
		fi
		echo "ok: $name: after --timeout $timeout the primary dropped its silent secondary and the reply came" \
			"$((t_reply - t0)) ms into the stall"
	fi
	wait_for "$TMP/probe.$name" '^readback ok' 10 || fail "$name: probe: $(cat "$TMP/probe.$name")"
	wait "$fpid" || fail "$name: flood: $(cat "$TMP/flood.$name")"
	sleep 1
	touch "$TMP/stop"
	wait "$jpid"
	rc=$?
	cat "$TMP/jep.$name"
	[ $rc = 0 ] || fail "$name: the checker failed (exit $rc)"
	grep -q "max client-visible gap" "$TMP/jep.$name" || fail "$name: checker: $(cat "$TMP/jep.$name")"
	stop a
	stop b
	archive "$name"
}

case_stall() {
	# shellcheck disable=SC2034 # lib.sh's pki_* read it
	C=$TMP/pki
	pki_ca ca
	pki_cert hosta ca
	pki_cert hostb ca
	# A 3 s stall within a 10 s --timeout; 30 s when emulated, where catching
	# up after the stall (TCP's retransmission backoff after a cut, then the
	# backlog) took longer than the rest of the 10 s.
	local within=10s
	emulated && within=30s
	stall_round sigstop stop 3 $within
	stall_round link-cut cut 3 $within
	stall_round dropped stop 5 2s
}

# ---- verify -----------------------------------------------------------------------------
# verify_round TAG PRIMARY_ARGS...: a pair with --verify, the clients on it for
# a few seconds (received frames written into guest memory by the device);
# prints "verified mismatches" of the primary.
verify_round() {
	local tag=$1
	shift
	net_up || fail "cannot build the topology"
	PRIMARY_EXTRA=(--verify "$@")
	start_pair
	PRIMARY_EXTRA=()
	# 4 s of traffic; 20 s when emulated, where a --verify checkpoint of the
	# guest's 128 MiB takes a second or two (2 in 4 s there: too few to catch
	# what --debug-no-device-dirty leaves out).
	local secs=4
	emulated && secs=20
	jepsen --clients 4 --duration $secs >"$TMP/jep.$tag" 2>&1
	VERIFY_RC=$?
	# 16 KiB replies that the device writes into guest memory: 20 GETs a
	# client, 5 when emulated (each round trip waits for a verified checkpoint).
	local gets=20
	emulated && gets=5
	jepsen flood --trigger /dev/null --clients 4 --count $gets >"$TMP/flood.$tag" 2>&1
	sleep 0.5
	ctl a status --json 2>/dev/null | "$PY" -c '
import json, sys
j = json.load(sys.stdin)
print(j.get("verified", -1), j.get("mismatches", -1))' >"$TMP/verify.$tag"
	stop a
	stop b
	archive "$tag"
}

case_verify() {
	local v m
	# shellcheck disable=SC2034 # lib.sh's pki_* read it
	C=$TMP/pki
	pki_ca ca
	pki_cert hosta ca
	pki_cert hostb ca
	verify_round marked
	read -r v m <"$TMP/verify.marked"
	[ "$VERIFY_RC" = 0 ] || fail "verify: the checker failed: $(cat "$TMP/jep.marked")"
	if [ "$v" -le 0 ] || [ "$m" != 0 ]; then
		fail "verify: with the device marking its writes, $v checkpoints verified and $m mismatches (expected >0 and 0)"
	fi
	echo "ok: verify: $v checkpoints verified under client traffic, 0 mismatches"
	verify_round unmarked --debug-no-device-dirty
	read -r v m <"$TMP/verify.unmarked"
	[ "$m" -gt 0 ] ||
		fail "verify: with --debug-no-device-dirty, $v checkpoints verified and no mismatch: --verify does not see what the device writes"
	echo "ok: verify: without the device's dirty marks (--debug-no-device-dirty) --verify found $m mismatches in $v checkpoints"
}

# ---- selfcheck --------------------------------------------------------------------------
# The checker must fire on the real system: the secondary stops past --timeout,
# the primary drops it and runs on unprotected (its replies leave at once), then
# the primary is killed and the operator promotes the old replica anyway
# (without --cluster nothing marks it stale): a rollback. The writes
# acknowledged meanwhile are gone, so the checker must fail, naming lost writes,
# retracted replies or resets.
case_selfcheck() {
	local rc
	# shellcheck disable=SC2034 # lib.sh's pki_* read it
	C=$TMP/pki
	pki_ca ca
	pki_cert hosta ca
	pki_cert hostb ca
	net_up || fail "cannot build the topology"
	start_pair --timeout 1s
	rm -f "$TMP/stop"
	jepsen --clients 4 --stop-file "$TMP/stop" --timeout 10 >"$TMP/jep.self" 2>&1 &
	local jpid=$!
	PIDS+=("$jpid")
	wait_for "$TMP/jep.self" "kv_jepsen: started" 60 || fail "selfcheck: checker: $(cat "$TMP/jep.self")"
	sleep 1
	kill -STOP "${PID[b]}"
	wait_log a "the guest runs unprotected" 10
	sleep 1.5 # writes acknowledged with nobody holding them
	kill -KILL "${PID[a]}"
	wait "${PID[a]}" 2>/dev/null
	kill -CONT "${PID[b]}"
	wait_log b "Primary lost|Lost the primary|closed the connection" 15
	ctl b failover >"$TMP/out" 2>&1 || ctl b failover --force >"$TMP/out" 2>&1 ||
		fail "selfcheck: the old replica could not be promoted: $(cat "$TMP/out")"
	sleep 3
	touch "$TMP/stop"
	wait "$jpid"
	rc=$?
	cat "$TMP/jep.self"
	[ $rc = 1 ] || fail "selfcheck: after a rollback the checker exited $rc, expected 1 (violations)"
	grep -Eq "^  (lost|retracted|connection failure): " "$TMP/jep.self" ||
		fail "selfcheck: the checker failed, but not for lost writes, retracted replies or resets"
	echo "ok: selfcheck: a rollback (promoting a replica the primary had moved past) is caught by the checker"
	stop b
}

# ---- tapbusy ------------------------------------------------------------------
# A promoted guest whose TAP will not open (another process holds it) must
# not stop: it runs on without its network, the clients wait, and once the
# TAP is free the NIC attaches, announces, and the clients carry on with
# nothing lost and no reset.
case_tapbusy() {
	# shellcheck disable=SC2034 # lib.sh's pki_* read it
	C=$TMP/pki
	pki_ca ca
	pki_cert hosta ca
	pki_cert hostb ca
	net_up || fail "cannot build the topology"
	start_pair
	rm -f "$TMP/stop"
	jepsen --stop-file "$TMP/stop" --save "$TMP/hist" --progress 0.5 >"$TMP/jep" 2>&1 &
	local jpid=$! hpid before after
	PIDS+=("$jpid")
	wait_for "$TMP/jep" "kv_jepsen: started" 60 || fail "checker: $(cat "$TMP/jep")"
	# Hold B's TAP (TUNSETIFF: IFF_TAP | IFF_NO_PI): B's ftd cannot attach it.
	ip netns exec "$(net_ns b)" "$PY" -c '
import fcntl, os, struct, sys, time
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH22x", sys.argv[1].encode(), 0x1002))
print("held", flush=True)
time.sleep(600)' "$NET_TAP" >"$TMP/holder" 2>&1 &
	hpid=$!
	PIDS+=("$hpid")
	wait_for "$TMP/holder" held 10 || fail "cannot hold B's TAP: $(cat "$TMP/holder")"
	sleep 1
	kill -KILL "${PID[a]}"
	wait "${PID[a]}" 2>/dev/null
	wait_log b "Primary lost: waiting for an operator" 15
	ctl b failover >"$TMP/out" 2>&1 || fail "ftctl failover: $(cat "$TMP/out")"
	wait_log b "runs on WITHOUT its network: TAP $NET_TAP would not open" 5
	sleep 2
	kill -0 "${PID[b]}" 2>/dev/null || fail "B stopped the guest when its TAP would not open: $(tail -3 "$TMP/log.b")"
	ctl b status >"$TMP/out" 2>&1 || fail "ftctl status on B: $(cat "$TMP/out")"
	grep -q "(not open)" "$TMP/out" || fail "B's status does not say its TAP is not open: $(cat "$TMP/out")"
	before=$(grep -c progress "$TMP/jep")
	kill "$hpid"
	wait "$hpid" 2>/dev/null
	wait_log b "is on TAP $NET_TAP at last; announcing it" 5
	net_wait_mac_host "$MAC" b 3 || fail "the guest's MAC did not move to B's port once its TAP opened"
	sleep 3
	touch "$TMP/stop"
	wait "$jpid"
	local rc=$?
	after=$(grep -c progress "$TMP/jep")
	grep -v progress "$TMP/jep"
	[ $rc = 0 ] || fail "the checker failed (exit $rc)"
	[ "$after" -gt "$((before + 1))" ] || fail "the clients made no progress once B's TAP opened"
	echo "ok: a promoted guest whose TAP was busy ran on without its network, attached when it was free; nothing lost, no reset"
	stop b
}

case $CASE in
redis) case_redis ;;
tapbusy) case_tapbusy ;;
failover) case_failover ;;
failover-cluster) case_failover_cluster ;;
stall) case_stall ;;
verify) case_verify ;;
selfcheck) case_selfcheck ;;
esac
exit 0
