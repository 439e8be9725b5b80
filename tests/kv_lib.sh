# shellcheck shell=bash
# The builtin:kv guest in the namespaces of tests/netns.sh, for test_net.sh and
# test_disk.sh: defaults, ftd on hosts A and B, redis-cli and the checker
# (kv_jepsen.py) from the client, and one kill -9 failover round under the
# checker. The caller sources lib.sh and netns.sh first and sets CASE.
# DISK_P and DISK_S, when set, are the --disk images of the guest (the
# primary and `run`) and of the secondary.

PY=${FT_NET_PYTHON:-/usr/bin/python3}
JEPSEN="$HERE/kv_jepsen.py"
MEM=${FT_NET_MEM:-256M}
# The emulated machine's CPU hashes (--verify) and syncs 256 MiB in seconds:
# 64 MiB there, with an 8 MiB store (the default store alone is 64 MiB; the
# store starts at 48 MiB, guest/layout.h).
KV_BYTES=()
if emulated; then
	MEM=${FT_NET_MEM:-64M}
	KV_BYTES=(--kv-max-bytes 8M)
fi
INTERVAL=${FT_NET_INTERVAL:-5ms}
PORT=7420
GUEST_IP=$NET_GUEST_IP
# One MAC per run: a locally administered one in QEMU's range.
MAC=$(printf '52:54:00:%02x:%02x:%02x' $((RANDOM % 256)) $((RANDOM % 256)) $((RANDOM % 256)))
CLUSTER_MODE=
PRIMARY_EXTRA=() # options of the primary only (start_pair)
declare -A PID

skip_or_fail() {
	[ "${FT_REQUIRE_KVM:-}" = 1 ] && fail "FT_REQUIRE_KVM=1 but $*"
	echo "skipped: $*"
	exit 77
}


# ---- helpers --------------------------------------------------------------------------
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# wait_log NAME REGEX SECONDS: until log.NAME matches; fails at once if that ftd died.
wait_log() {
	local name=$1 secs
	secs=$(time_limit "$3")
	local deadline=$((SECONDS + secs))
	until grep -Eq -- "$2" "$TMP/log.$name" 2>/dev/null; do
		if ! kill -0 "${PID[$name]}" 2>/dev/null; then
			fail "$name (ftd) exited while waiting for '$2': $(tail -5 "$TMP/log.$name")"
		fi
		[ $SECONDS -lt "$deadline" ] ||
			fail "$name: no '$2' after $secs s: $(tail -5 "$TMP/log.$name")"
		sleep 0.1
	done
}

# ftd_start NAME HOST ROLE ARGS...: ftd ROLE inside HOST (a or b); NAME names
# its log, console, control socket and state directory. Mutual TLS with the
# certificates of lib.sh's pki_*, or --insecure when IN_THE_CLEAR is set. Plain namespaces: ip
# netns exec (which execs: the pid is ftd's); the cluster: cluster_spawn.
ftd_start() {
	local name=$1 host=$2 role=$3 node
	shift 3
	local args tls
	if [ -n "${IN_THE_CLEAR:-}" ]; then
		tls=(--insecure)
	else
		read -ra tls <<<"$(pki_args "host$host")"
	fi
	local slow=()
	[ "$role" != run ] && slow=("${SLOW_TIMEOUT[@]}")
	args=("$role" --control "$TMP/$name.sock" --state-dir "$TMP/state.$name"
		--console "$TMP/con.$name" "${tls[@]}" "${slow[@]}" "$@")
	if [ -n "$CLUSTER_MODE" ]; then
		[ "$host" = a ] && node=node1 || node=node2
		cluster_spawn "$node" "$FTD" "${args[@]}" 2>"$TMP/log.$name" </dev/null 9>&- ||
			fail "cannot start $name in $node"
		PID[$name]=$CLUSTER_SPAWNED
	else
		ip netns exec "$(net_ns "$host")" "$FTD" "${args[@]}" 2>"$TMP/log.$name" </dev/null 9>&- &
		PID[$name]=$!
	fi
	PIDS+=("${PID[$name]}")
	wait_log "$name" "listening on|: running " 20
}

ctl() { # NAME ARGS...: ftctl on that ftd
	local name=$1
	shift
	"$FTCTL" --socket "$TMP/$name.sock" "$@"
}

# The guest as the primary and `run` start it; the secondary only needs its NIC.
DISK_P=
DISK_S=
guest_args() {
	echo --guest builtin:kv --net "tap=$NET_TAP,mac=$MAC" --guest-ip "$GUEST_IP/24" \
		--guest-gateway "$NET_GATEWAY" --mem "$MEM" --vcpus 1 ${DISK_P:+--disk "$DISK_P"} "${KV_BYTES[@]}"
}
secondary_args() {
	echo --net "tap=$NET_TAP,mac=$MAC" --mem "$MEM" --vcpus 1 ${DISK_S:+--disk "$DISK_S"}
}

# start_pair [ARGS for both]: B secondary, A primary; until protected and serving.
start_pair() {
	# shellcheck disable=SC2046 # option lists
	ftd_start b b secondary --listen "$NET_REPL_B:$PORT" $(secondary_args) "$@"
	# shellcheck disable=SC2046 # option lists
	ftd_start a a primary --peer "$NET_REPL_B:$PORT" $(guest_args) --interval "$INTERVAL" \
		"${PRIMARY_EXTRA[@]}" "$@"
	wait_log b "Replica holds checkpoint" 60
	wait_service 30
}


# A reply waits for an acknowledged checkpoint; with --verify in an emulated
# machine that is about 10 s, and a new connection takes a few of them.
CLI_TIMEOUT=20
emulated && CLI_TIMEOUT=90
cli() { net_exec client timeout $CLI_TIMEOUT redis-cli -h "$GUEST_IP" "$@"; }

# diag: the state of the network, for a failure message.
diag() {
	local h ns
	net_show
	for h in a b; do
		ns=$(net_ns "$h")
		echo "== $h: bridge ports, fdb of brg, TAP"
		bridge -n "$ns" link show 2>&1
		bridge -n "$ns" fdb show br brg 2>&1 | grep -v permanent
		ip -n "$ns" -d -s link show "$NET_TAP" 2>&1
	done
	echo "== client neighbours"
	ip -n "$(net_ns client)" neigh 2>&1
	echo "== guest consoles"
	tail -n 2 "$TMP"/con.* 2>&1
	echo "== ftd logs"
	tail -n 15 "$TMP"/log.* 2>&1
}

# wait_service SECONDS: until the guest answers PING from the client (a
# time_limit: see CLI_TIMEOUT).
wait_service() {
	local secs
	secs=$(time_limit "$1")
	local deadline=$((SECONDS + secs))
	until [ "$(cli PING 2>/dev/null)" = PONG ]; do
		if [ $SECONDS -ge "$deadline" ]; then
			diag >&2
			fail "the guest at $GUEST_IP:6379 does not answer PING after $secs s"
		fi
		sleep 0.2
	done
}

# expect WANT ARGS...: redis-cli ARGS prints exactly WANT (newlines included,
# the last one stripped as $(...) does).
expect() {
	local want=$1 out
	shift
	out=$(cli "$@" 2>&1) || fail "redis-cli $*: exit $?: $out"
	[ "$out" = "$want" ] || fail "redis-cli $*: '$out', expected '$want'"
}
# expect_err PREFIX ARGS...: redis-cli ARGS answers an error starting with PREFIX.
expect_err() {
	local want=$1 out
	shift
	out=$(cli "$@" 2>&1)
	case $out in
	"$want"*) ;;
	*) fail "redis-cli $*: '$out', expected an error '$want...'" ;;
	esac
}

jepsen() { # ARGS...: the checker, in the client namespace
	local slow=()
	# A connection's SYN-ACK waits for an acknowledged checkpoint: seconds
	# with --verify in an emulated machine, past the default 10 s.
	emulated && slow=(--connect-timeout 60 --readback-timeout 60)
	net_exec client "$PY" "$JEPSEN" --host "$GUEST_IP" "${slow[@]}" "$@"
}

# held_fields NAME: the status's fields about held output and backpressure,
# name=value (the NIC's under net.).
held_fields() {
	ctl "$1" status --json 2>/dev/null | "$PY" -c '
import json, sys
def walk(o, path):
    for k, v in o.items():
        if isinstance(v, dict):
            walk(v, path + k + ".")
        elif "held" in k or "hold" in k or "backpressure" in k:
            print(f"{path}{k}={json.dumps(v)}")
walk(json.load(sys.stdin), "")'
}
# held_net NAME frames|bytes: net.held_frames or net.held_bytes of the
# status (FT_NET_HELD_FRAMES / FT_NET_HELD_BYTES name another field); empty
# when the status has none.
held_net() {
	local f
	if [ "$2" = frames ]; then f=${FT_NET_HELD_FRAMES:-net.held_frames}; else f=${FT_NET_HELD_BYTES:-net.held_bytes}; fi
	held_fields "$1" | sed -n "s/^$f=\([0-9]*\)$/\1/p" | head -1
}

# archive TAG: the logs, consoles and state of this round's ftd go to $TMP/TAG
# (KEEP_TMP=1 keeps them), so that the next round starts from nothing.
archive() {
	mkdir -p "$TMP/$1"
	mv "$TMP"/log.* "$TMP"/con.* "$TMP"/state.* "$TMP/$1/" 2>/dev/null
	rm -f "$TMP"/*.sock
	return 0
}


# failover_round R CLUSTER: one round; the caller has built the topology.
# FAILOVER_AFTER_START, if set, names a function called with R once the pair
# is protected and serving.
FAILOVER_AFTER_START=
failover_round() {
	local r=$1 auto=$2 t_start t_kill t_up before after gap ann stopped=0
	local extra=()
	[ -n "$auto" ] && extra=(--cluster t --cluster-wait "$CLUSTER_WAIT")
	start_pair "${extra[@]}"
	[ -z "$FAILOVER_AFTER_START" ] || "$FAILOVER_AFTER_START" "$r"
	[ "$(net_mac_host "$MAC")" = a ] || fail "round $r: $MAC is on '$(net_mac_host "$MAC")' before the kill, not a"
	net_announce_watch "$MAC" || fail "cannot count announces"
	rm -f "$TMP/stop"
	jepsen --stop-file "$TMP/stop" --save "$TMP/hist.$r" --progress 0.5 >"$TMP/jep.$r" 2>&1 &
	local jpid=$!
	PIDS+=("$jpid")
	wait_for "$TMP/jep.$r" "kv_jepsen: started" 60 || fail "round $r: checker: $(cat "$TMP/jep.$r")"
	t_start=$(now_ms)
	# A random moment, once some writes are acknowledged.
	sleep "$((RANDOM % 3)).$((RANDOM % 10))"
	sleep 0.2
	before=$(grep -c progress "$TMP/jep.$r")
	t_kill=$(now_ms)
	kill_active "${PID[a]}" "${PID[b]}" && stopped=1
	wait "${PID[a]}" 2>/dev/null
	promote_after_kill b "$auto"
	t_up=$(now_ms)
	net_wait_mac_host "$MAC" b 2 ||
		fail "round $r: the guest's MAC did not move to host B's port within 2 s of the promotion"
	# Let the clients go on against B for a while (and the announce finish).
	sleep 2
	ann=$(net_announce_count b rarp)
	[ "${ann:-0}" -ge 1 ] || fail "round $r: no RARP frame from $MAC on B's switch port after the promotion"
	ctl b status --json >"$TMP/out" 2>&1 || fail "round $r: ftctl status on B: $(cat "$TMP/out")"
	grep -q '"guest": *"builtin:kv"' "$TMP/out" ||
		fail "round $r: the promoted node does not name the guest it runs: $(cat "$TMP/out")"
	touch "$TMP/stop"
	wait "$jpid"
	local rc=$?
	after=$(grep -c progress "$TMP/jep.$r")
	grep -v progress "$TMP/jep.$r"
	[ $rc = 0 ] || fail "round $r: the checker failed (exit $rc, secondary stopped at the kill: $stopped)"
	[ "$after" -gt "$((before + 1))" ] || fail "round $r: the checker made no progress after the failover"
	gap=$(sed -n 's/.*max client-visible gap \([0-9.]*\) ms.*/\1/p' "$TMP/jep.$r")
	echo "ok: round $r: kill -9 $((t_kill - t_start)) ms into the run, promoted after $((t_up - t_kill)) ms" \
		"(secondary stopped around the kill: $stopped), MAC on B's port ($ann RARP frames), longest gap $gap ms"
	stop b
	archive "round$r"
}
