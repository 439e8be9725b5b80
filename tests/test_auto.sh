#!/bin/bash
# One configuration for both nodes, roles decided at run time (role auto),
# automatic re-protection, and SIGHUP:
#
#  1. The file's [node NAME] sections refused where wrong, with what and
#     where: one node, a third, an unknown key or section, an address without a host, the
#     same address twice, a host that is none of the nodes, role auto
#     without nodes.
#  2. Both nodes start from the same file (--node picks which one this is,
#     as the host name does on real hosts) and wait: neither runs the guest
#     by itself. `ftctl start` on a boots it; b becomes its secondary with no
#     command; `ftctl start` on b is refused.
#  3. SIGHUP to the running primary: the console moved away (logrotate) is
#     reopened, a new interval in the file takes effect, a changed `mem` is
#     reported as needing a restart, a file that no longer parses changes
#     nothing; the guest runs on, protected, in the same process. SIGHUP to
#     the secondary too.
#  4. kill -9 of the primary, `ftctl failover` on the other node, then the
#     killed node is started again with the very same command: it becomes
#     the new primary's secondary by itself (automatic re-protection). Twice,
#     so that both nodes come back once.
#  5. The guest's console stream across all four processes is exactly once
#     (every bank line ok, iterations consecutive).
#  6. A node that was started while the other runs the guest and told
#     `ftctl start` before the other found it: its new guest stops without
#     showing anything (the other node answers that it runs the guest).
#  7. `ftctl switchover`: the old primary starts again by itself (the same
#     process and command) and becomes the new primary's secondary.
# Usage: test_auto.sh PATH_TO_FTD PATH_TO_FTCTL
set -u
FTD=${1:?usage: test_auto.sh FTD FTCTL}
FTCTL=${2:?usage: test_auto.sh FTD FTCTL}
. "$(dirname "$0")/lib.sh"
require_kvm

PORT=$((19000 + RANDOM % 400))
CONF=$TMP/vm1.conf

# refused EXPECTED ARGS...: ftd ARGS --check-config exits 2 with EXPECTED in its message.
refused() {
	local want=$1
	shift
	expect_usage_error "$want" "$@" --check-config
}

cat >"$CONF" <<EOF
guest = builtin:bank
mem = 64M
vcpus = 2
interval = 10ms
timeout = 1s
quiet = true

[node a]
address = 127.0.0.1:$PORT
[node b]
address = 127.0.0.1:$((PORT + 1))
EOF
"$FTD" --config "$CONF" --node a --check-config >/dev/null || fail "the shared file does not check"
"$FTD" --config "$CONF" --node b --check-config >/dev/null || fail "the shared file does not check on b"

bad() { printf '%s\n' "$@" >"$TMP/bad.conf"; }
bad "guest = builtin:bank" "[node a]" "address = 127.0.0.1:1"
refused "[node a] is the only node" --config "$TMP/bad.conf" --node a
bad "[node a]" "address = 127.0.0.1:1" "[node b]" "address = 127.0.0.1:2" "[node c]" "address = 127.0.0.1:3"
refused "bad.conf:6: [node c]: a third node (a guest is protected by two: a and b)" --config "$TMP/bad.conf" --node a
bad "[node a]" "adress = 127.0.0.1:1"
refused "bad.conf:2: [node a]: unknown key 'adress' (a node has an address)" --config "$TMP/bad.conf"
bad "[nodes]" "address = 127.0.0.1:1"
refused "bad.conf:2: unknown section [nodes] (only [node NAME])" --config "$TMP/bad.conf"
bad "[node a]" "address = 127.0.0.1:1" "[node b]" "address = 7411"
refused "bad.conf:4: [node b]: address '7411' is not HOST:PORT" --config "$TMP/bad.conf" --node a
bad "[node a]" "address = 127.0.0.1:1" "[node b]" "address = 127.0.0.1:1"
refused "[node a] and [node b] have the same address 127.0.0.1:1" --config "$TMP/bad.conf" --node a
refused "this host '$(hostname)' is none of the nodes (a, b): give --node NAME" --config "$CONF"
refused "--node c is none of the nodes (a, b)" --config "$CONF" --node c
bad "role = auto" "guest = builtin:bank"
refused "role auto needs the two nodes" --config "$TMP/bad.conf"
echo "ok: [node] sections refused where wrong, each with what and where"

# cluster-wait against corosync's timeouts (tests/cluster.sh's: token 1000 ms,
# qdevice timeout 3000 ms, sync_timeout 6000 ms).
cat >"$TMP/corosync.conf" <<EOF
totem {
	version: 2
	token: 1000 # ms
}
quorum {
	provider: corosync_votequorum
	device {
		model: net
		timeout: 3000
		sync_timeout: 6000
		net {
			host: 192.0.2.3
		}
	}
}
EOF
CL=(--config "$CONF" --node a --cluster t --corosync-conf "$TMP/corosync.conf")
refused "--cluster-wait 5s is shorter than corosync's token timeout (1000 ms) plus the qdevice's sync_timeout (6000 ms) in $TMP/corosync.conf: the node that left may still be quorate, its guest running, when this one promotes (make it at least 7s)" \
	"${CL[@]}" --cluster-wait 5
"$FTD" "${CL[@]}" --cluster-wait 7 --check-config >/dev/null || fail "cluster-wait 7 (s) was refused"
sed -i '/device {/,/^\t}/d' "$TMP/corosync.conf"
refused "--cluster-wait 0.5s is shorter than corosync's token timeout (1000 ms) in" "${CL[@]}" --cluster-wait 500ms --timeout 400ms
"$FTD" "${CL[@]}" --cluster-wait 1 --timeout 1 --check-config >/dev/null || fail "cluster-wait 1 (s) without a qdevice was refused"
sed -i "s/token: 1000 # ms/token: soon/" "$TMP/corosync.conf"
refused "--cluster: $TMP/corosync.conf:3: token: 'soon' is not a number of milliseconds" "${CL[@]}" --cluster-wait 7
refused "--cluster: cannot read corosync's configuration $TMP/none.conf (to check --cluster-wait against its timeouts): No such file or directory" \
	--config "$CONF" --node a --cluster t --corosync-conf "$TMP/none.conf"
echo "ok: cluster-wait below corosync's token + qdevice sync_timeout refused, saying why"

# start NAME K: node NAME's ftd, incarnation K (console con.K, log log.K).
declare -A PID
start() {
	"$FTD" --config "$CONF" --node "$1" --control "$TMP/$1.sock" --state-dir "$TMP/state-$1" \
		--console "$TMP/con.$2" 2>"$TMP/log.$2" &
	PID[$1]=$!
	PIDS+=("$!")
	LOG[$1]=$TMP/log.$2
	wait_for "$TMP/log.$2" "listening on 127.0.0.1" 10 || fail "node $1 did not start: $(cat "$TMP/log.$2")"
}
declare -A LOG
wait_log() { wait_for "${LOG[$1]}" "$2" "$3" || fail "$1: no '$2' in ${LOG[$1]}: $(tail -n 5 "${LOG[$1]}")"; }
ctl() { "$FTCTL" --socket "$TMP/$1.sock" "${@:2}"; }
status_has() { ctl "$1" status >"$TMP/st" 2>&1 && grep -Eq "$2" "$TMP/st"; }
wait_status() {
	local i
	for ((i = 0; i < 100; i++)); do
		status_has "$1" "$2" && return 0
		sleep 0.1
	done
	fail "$1: status never matched '$2': $(cat "$TMP/st")"
}

start a 1
start b 2
sleep 1.5
status_has a "^secondary: waiting" || fail "a does not wait: $(cat "$TMP/st")"
status_has b "^secondary: waiting" || fail "b does not wait: $(cat "$TMP/st")"
grep -q "booting" "$TMP/log.1" "$TMP/log.2" && fail "a node booted the guest by itself"
ctl a raw start >"$TMP/out" || fail "ftctl start on a: $(cat "$TMP/out")"
wait_status a "^primary builtin:bank: protected, secondary 127.0.0.1:$((PORT + 1))"
wait_status b "^secondary: replicating"
ctl b raw start >"$TMP/out" && fail "ftctl start on b was not refused: $(cat "$TMP/out")"
grep -q "is connected: the guest runs there" "$TMP/out" || fail "ftctl start on b said: $(cat "$TMP/out")"
echo "ok: both nodes wait; ftctl start on a runs the guest; b became its secondary by itself"

# 3. SIGHUP with the guest running.
sleep 1
mv "$TMP/con.1" "$TMP/con.1.rotated"
sed -i 's/^interval = 10ms$/interval = 5ms/; s/^mem = 64M$/mem = 128M/' "$CONF"
kill -HUP "${PID[a]}" "${PID[b]}"
wait_log a "SIGHUP: checkpoint interval 5.000 ms" 5
wait_log a "SIGHUP: mem changed in .*vm1.conf, but it cannot change while ftd runs" 5
wait_log b "SIGHUP: mem changed" 5
wait_status a "interval 5.000 ms"
sleep 1
[ -s "$TMP/con.1" ] || fail "the console was not reopened after SIGHUP"
sed -i "1i bogus = 1" "$CONF"
kill -HUP "${PID[a]}"
wait_log a "SIGHUP: .*vm1.conf:[0-9]+: unknown key 'bogus'; nothing changed" 5
sed -i '/^bogus = 1$/d; s/^mem = 128M$/mem = 64M/' "$CONF"
kill -0 "${PID[a]}" "${PID[b]}" || fail "SIGHUP stopped a daemon"
status_has a "^primary builtin:bank: protected" || fail "a after SIGHUP: $(cat "$TMP/st")"
status_has a "interval 5.000 ms" || fail "a bad file changed the interval: $(cat "$TMP/st")"
echo "ok: SIGHUP reopened the console, took the new interval, named mem as needing a restart, left a bad file alone; the guest ran on, protected"

# 4. kill -9, failover, restart with the same command: protected again. Twice.
round() { # ACTIVE STANDBY K: kill ACTIVE, fail over to STANDBY, start ACTIVE as incarnation K
	local active=$1 standby=$2 k=$3
	sleep 1
	kill -KILL "${PID[$active]}"
	wait "${PID[$active]}" 2>/dev/null
	wait_log "$standby" "Primary lost: waiting for an operator" 15
	ctl "$standby" failover >"$TMP/out" 2>&1 || fail "failover on $standby: $(cat "$TMP/out")"
	wait_log "$standby" "auto: protecting the guest towards the other node" 5
	start "$active" "$k"
	wait_status "$standby" "^primary builtin:bank: protected"
	wait_status "$active" "^secondary: replicating"
	echo "ok: $active killed, $standby promoted; $active started again with the same command is its secondary"
}
round a b 3
round b a 4
sleep 1
stop a
stop b

# 5. The stream across four processes: exactly once.
cat "$TMP/con.1.rotated" "$TMP/con.1" >"$TMP/con.1.whole"
mv "$TMP/con.1.whole" "$TMP/con.1"
join_incarnations 1 4 "$TMP/stream" || fail "the consoles do not join"
check_bank "$TMP/stream" 2 || fail "the bank stream across two failovers and a SIGHUP is broken"
echo "ok: the console stream is exactly once across 4 processes, a rotation and 2 failovers"

# 6. Started while the other runs the guest, told to start before it was found.
rm -f "$TMP/a.sock" "$TMP/b.sock"
start a 5
ctl a raw start >/dev/null || fail "ftctl start on a lone a"
wait_status a "^primary builtin:bank"
"$FTD" --config "$CONF" --node b --control "$TMP/b.sock" --state-dir "$TMP/state-b" \
	--console "$TMP/con.6" 2>"$TMP/log.6" &
PID[b]=$!
PIDS+=("$!")
for ((i = 0; i < 50; i++)); do
	ctl b raw start >"$TMP/out" 2>&1 && break
	sleep 0.02
done
grep -q '"ok":true' "$TMP/out" || echo "note: a found b before its start (no race this time): $(cat "$TMP/out")"
if grep -q '"ok":true' "$TMP/out"; then
	wait "${PID[b]}"
	rc=$?
	[ $rc -eq 1 ] || fail "b's second copy exited $rc, not 1"
	grep -q "this node must not run a second copy" "$TMP/log.6" || fail "b: $(tail -n 3 "$TMP/log.6")"
	[ -s "$TMP/con.6" ] && fail "b's second copy showed output: $(head -c 200 "$TMP/con.6")"
	echo "ok: a second copy started by mistake stopped with nothing shown"
fi
status_has a "^primary builtin:bank" || fail "a after b's start: $(cat "$TMP/st")"

# 7. A switchover: the guest moves to b, and a starts again by itself as b's secondary.
kill -0 "${PID[b]}" 2>/dev/null || start b 7
wait_status a "^primary builtin:bank: protected"
ctl a switchover >"$TMP/out" 2>&1 || fail "switchover on a: $(cat "$TMP/out")"
wait_status b "^primary builtin:bank: protected, secondary 127.0.0.1:$PORT"
wait_status a "^secondary: replicating"
kill -0 "${PID[a]}" || fail "a exited after the switchover instead of starting again"
grep -q "auto: the guest runs on the other node now: starting again" "$TMP/log.5" ||
	fail "a did not say why it started again: $(tail -n 5 "$TMP/log.5")"
echo "ok: after a switchover the old primary started again as the new one's secondary (same pid, same command)"
stop a
stop b
echo "ok: test_auto"
