#!/bin/bash
# Integration test of replication: `ftd primary` and `ftd secondary` on
# loopback, driven as an operator would, checked against the guests' own
# invariants and the byte equality of the replica (--verify).
#
#  1. verified runs: builtin:bank and builtin:dirty, 2 vCPUs, 1 ms and 10 ms
#     intervals, at least 100 verified checkpoints each (a floor that a loaded
#     host still reaches, lower when emulated: rate_floor; the rate is bench/'s
#     to measure), no mismatch, bank ok;
#  2. output commit: a stopped secondary (SIGSTOP) stops the console while the
#     guest runs (held bytes grow); it resumes on SIGCONT; a secondary silent
#     past --timeout is dropped and output flows unprotected;
#  3. secondary killed mid-run: the guest runs on unprotected without a stall
#     longer than one interval; a new secondary re-syncs, verification resumes;
#  3b. a secondary re-synced by a new primary: pages the new guest has as zero
#     are cleared in the replica;
#  4. hostile peers (tests/ft_peer): each refused with its own log line, the
#     secondary stays up, a running replication is undisturbed and the replica
#     is untouched.
#  5. ftctl status on both daemons, human and JSON, metrics, set interval;
#     a malformed request is answered with an error; a user other than root
#     cannot use the socket.
# Failover, protect and switchover: test_failover.sh.
# Usage: test_replication.sh PATH_TO_FTD PATH_TO_FT_PEER PATH_TO_FTCTL
set -u
FTD=${1:?usage: test_replication.sh FTD FT_PEER FTCTL}
PEER=${2:?usage: test_replication.sh FTD FT_PEER FTCTL}
FTCTL=${3:?usage: test_replication.sh FTD FT_PEER FTCTL}
. "$(dirname "$0")/lib.sh"
require_kvm

BASE_PORT=$((17700 + RANDOM % 200))
MEM=64M

start_secondary() { # PORT LOG [ARGS...]
	local port=$1 log=$2
	shift 2
	"$FTD" secondary --listen 127.0.0.1:"$port" --mem $MEM --vcpus 2 "${SLOW_TIMEOUT[@]}" "$@" 2>"$log" &
	SEC=$!
	PIDS+=("$SEC")
	wait_for "$log" "listening on" "$(time_limit 10)" || fail "secondary did not start: $(cat "$log")"
}

stop() { # PID: SIGTERM, then the exit status must be 0
	kill -TERM "$1" 2>/dev/null
	wait "$1"
	local rc=$?
	[ $rc -eq 0 ] || fail "pid $1 exited $rc"
}

# ---- 1. verified replication --------------------------------------------------
verified_run() { # GUEST INTERVAL DURATION [FTD OPTIONS...]
	local guest=$1 interval=$2 duration=$3 port=$((BASE_PORT++)) tag=$1-$2
	# Three times as long when emulated: the initial sync and each verified
	# checkpoint take seconds there (0 verified in 8 s, once).
	emulated && duration=$((${3%s} * 3))s
	local extra=()
	shift 3
	[ "$guest" = dirty ] && extra=(--dirty-pages-per-ms 20 --dirty-wss 8M --dirty-report-ms 50)
	[ $# -gt 0 ] && tag=$tag-live
	# A live harvest needs a slot free half-way to the next checkpoint, and an
	# emulated secondary takes a second or two for each verified one: there
	# the live runs checkpoint every 2 s (at 10 ms, 0 or 1 in 24 s).
	[ $# -gt 0 ] && emulated && interval=2s
	extra+=("$@")
	start_secondary "$port" "$TMP/sec.$tag"
	"$FTD" primary --peer 127.0.0.1:"$port" --guest builtin:"$guest" --mem $MEM --vcpus 2 \
		--interval "$interval" --duration "$duration" --verify --console "$TMP/con.$tag" \
		"${SLOW_TIMEOUT[@]}" "${extra[@]}" 2>"$TMP/pri.$tag"
	local rc=$?
	[ $rc -eq 0 ] || fail "$tag: primary exited $rc: $(tail -5 "$TMP/pri.$tag")"
	# Its goodbye reached the secondary behind the epochs still queued (an
	# orderly close, not a reset that drops them): the copy is released.
	wait_for "$TMP/sec.$tag" "said goodbye: primary shutting down" "$(time_limit 10)" ||
		fail "$tag: the secondary never read the goodbye: $(grep -v stats "$TMP/sec.$tag" | tail -3)"
	stop "$SEC"
	local verified mism sverified smism
	verified=$(summary_field "$TMP/pri.$tag" '\(([0-9]+) verified')
	mism=$(summary_field "$TMP/pri.$tag" ' ([0-9]+) mismatches')
	sverified=$(summary_field "$TMP/sec.$tag" ' ([0-9]+) verified')
	smism=$(summary_field "$TMP/sec.$tag" ' ([0-9]+) mismatches')
	[ "${mism:-x}" = 0 ] && [ "${smism:-x}" = 0 ] ||
		fail "$tag: mismatches primary=${mism:-?} secondary=${smism:-?}"
	[ "${verified:-0}" -ge "$(rate_floor 100)" ] || fail "$tag: only ${verified:-0} verified checkpoints"
	# The primary stops at --duration without waiting for the acknowledgements
	# still in flight (at most PRIMARY_MAX_UNACKED, 8): the secondary may have
	# verified a few checkpoints more than the primary heard of, never fewer.
	# A session that ended early (a --timeout when emulated) loses its in-flight
	# acknowledgements too: then never more than the primary sent.
	local sessions bound
	sessions=$(summary_field "$TMP/pri.$tag" ' ([0-9]+) sessions')
	bound=$((verified + 8 * ${sessions:-1}))
	[ "${sverified:-0}" -ge "$verified" ] && [ "${sverified:-0}" -le "$bound" ] ||
		fail "$tag: secondary verified $sverified, primary $verified in ${sessions:-?} sessions"
	grep -q "Protected: secondary" "$TMP/pri.$tag" || fail "$tag: never protected"
	if [ "$guest" = bank ]; then
		check_bank "$TMP/con.$tag" 2 || fail "$tag: bank console check failed"
	else
		grep -Eq '^dirty vcpu=1 iter=[0-9]+ pages=[0-9]+ ' "$TMP/con.$tag" ||
			fail "$tag: no dirty lines"
	fi
	local live
	live=$(sed -En 's/.*live harvests: ([0-9]+),.*/\1/p' "$TMP/pri.$tag" | tail -1)
	if [ $# -gt 0 ]; then
		[ "${live:-0}" -ge "$(rate_floor 20)" ] || fail "$tag: only ${live:-0} live harvests"
		live=", $live live harvests"
	else
		live=""
	fi
	echo "ok: $guest at $interval $*: $verified checkpoints verified byte-equal, 0 mismatches$live"
}

verified_run bank 1ms 8s
verified_run bank 10ms 8s
verified_run dirty 1ms 8s
verified_run dirty 10ms 8s
# Pages harvested and copied while the guest runs, then again in the pause
# when rewritten: the replica must still be byte-equal at every checkpoint.
verified_run dirty 10ms 8s --live-harvest on --dirty-pages-per-ms 100
verified_run bank 4ms 6s --live-harvest on

# ---- 2. output commit -----------------------------------------------------------
port=$((BASE_PORT++))
# A 2 s stop of the secondary within --timeout: 3 s, or 10 s when emulated,
# where the resumed secondary takes seconds to catch up.
OC_TIMEOUT=3s
emulated && OC_TIMEOUT=10s
start_secondary "$port" "$TMP/sec.oc" --timeout $OC_TIMEOUT
"$FTD" primary --peer 127.0.0.1:"$port" --guest builtin:bank --mem $MEM --vcpus 2 \
	--interval 10ms --timeout $OC_TIMEOUT --console "$TMP/con.oc" 2>"$TMP/pri.oc" &
PRI=$!
PIDS+=("$PRI")
wait_for "$TMP/pri.oc" "Protected: secondary" "$(time_limit 20)" || fail "output commit: never protected"
sleep 1
# ---- 5. ftctl (while protected) ------------------------------------------------------
"$FTCTL" --socket /run/ftd/primary.sock status >"$TMP/ctl.p" 2>&1 || fail "ftctl status (primary) exited $?: $(cat "$TMP/ctl.p")"
grep -q "^primary builtin:bank: protected, secondary 127.0.0.1:$port" "$TMP/ctl.p" ||
	fail "ftctl status (primary): $(cat "$TMP/ctl.p")"
grep -Eq "[0-9]+ acknowledged \(last [0-9]+ ms ago\), interval 10.000 ms" "$TMP/ctl.p" ||
	fail "ftctl status (primary) lacks the ACK line: $(cat "$TMP/ctl.p")"
"$FTCTL" --socket /run/ftd/secondary.sock status >"$TMP/ctl.s" 2>&1 ||
	fail "ftctl status (secondary) exited $?"
grep -Eq "^secondary: replicating, primary 127.0.0.1:[0-9]+" "$TMP/ctl.s" &&
	grep -Eq "replica at checkpoint [0-9]+ \(applied [0-9]+ ms ago\)" "$TMP/ctl.s" ||
	fail "ftctl status (secondary): $(cat "$TMP/ctl.s")"
"$FTCTL" --socket /run/ftd/primary.sock status --json >"$TMP/ctl.j" || fail "ftctl status --json exited $?"
grep -q '"role":"primary","state":"protected"' "$TMP/ctl.j" && grep -q '"ok":true' "$TMP/ctl.j" &&
	grep -Eq '"bytes_per_s":[1-9][0-9]*' "$TMP/ctl.j" && grep -q '"quorum":null' "$TMP/ctl.j" ||
	fail "ftctl status --json: $(cat "$TMP/ctl.j")"
grep -Eq "dirty pages per checkpoint; [0-9.]+ MB sent, [0-9.]+ MB/s$" "$TMP/ctl.p" ||
	fail "ftctl status (primary) lacks the rate: $(cat "$TMP/ctl.p")"
"$FTCTL" --socket /run/ftd/primary.sock raw frobnicate >"$TMP/ctl.e" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "unknown request 'frobnicate'" "$TMP/ctl.e" ||
	fail "ftctl raw frobnicate: exit $rc, $(cat "$TMP/ctl.e")"
setpriv --reuid=nobody --regid=nogroup --clear-groups "$FTCTL" --socket /run/ftd/primary.sock status >"$TMP/ctl.n" 2>&1
rc=$?
[ $rc -eq 3 ] && grep -q "Permission denied" "$TMP/ctl.n" ||
	fail "ftctl as nobody: exit $rc, $(cat "$TMP/ctl.n")"
# With the file modes opened up, the daemon's own SO_PEERCRED check still refuses.
chmod 0711 /run/ftd && chmod 0666 /run/ftd/primary.sock
setpriv --reuid=nobody --regid=nogroup --clear-groups "$FTCTL" --socket /run/ftd/primary.sock status >"$TMP/ctl.n" 2>&1
rc=$?
chmod 0700 /run/ftd && chmod 0600 /run/ftd/primary.sock
[ $rc -eq 3 ] && grep -q "closed the connection without answering" "$TMP/ctl.n" ||
	fail "ftctl as nobody past the file modes: exit $rc, $(cat "$TMP/ctl.n")"
grep -q "control: refused a client (pid [0-9]*, uid 65534)" "$TMP/pri.oc" ||
	fail "the primary did not log the refused client"
"$FTCTL" --socket "$TMP/none.sock" status >/dev/null 2>&1
[ $? -eq 3 ] || fail "ftctl without a daemon did not exit 3"
"$FTCTL" --socket /run/ftd/primary.sock metrics >"$TMP/ctl.m" || fail "ftctl metrics exited $?"
grep -Eq '^ftd_checkpoints_total [1-9][0-9]*$' "$TMP/ctl.m" &&
	grep -Eq '^ftd_checkpoint_pause_seconds_bucket\{le="\+Inf"\} [1-9][0-9]*$' "$TMP/ctl.m" &&
	grep -q '^ftd_protected 1$' "$TMP/ctl.m" || fail "ftctl metrics: $(head -20 "$TMP/ctl.m")"
"$FTCTL" --socket /run/ftd/primary.sock set interval 5ms | grep -q "^interval 5.000 ms$" || fail "ftctl set interval 5ms"
"$FTCTL" --socket /run/ftd/primary.sock status | grep -q "interval 5.000 ms" || fail "the new interval is not in the status"
# The new interval shows in the rate: 150-299 checkpoints/s (any, when
# emulated: the CPU there cannot keep a 5 ms pace; the status said 5 ms above).
rate_re="rate=(1[5-9][0-9]|2[0-9][0-9])/s"
emulated && rate_re="rate=[0-9.]*[1-9][0-9.]*/s"
wait_for "$TMP/pri.oc" "$rate_re" "$(time_limit 5)" || fail "5 ms interval: not 150-299 checkpoints/s"
"$FTCTL" --socket /run/ftd/primary.sock set interval 0ms >"$TMP/ctl.i" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "interval '0ms' is not auto or a duration between 1ms and 60s" "$TMP/ctl.i" ||
	fail "ftctl set interval 0ms: exit $rc, $(cat "$TMP/ctl.i")"
"$FTCTL" --socket /run/ftd/primary.sock set interval auto >"$TMP/ctl.i" 2>&1 && grep -q "(auto: adapts every second)" "$TMP/ctl.i" ||
	fail "ftctl set interval auto: $(cat "$TMP/ctl.i")"
wait_for "$TMP/pri.oc" "interval auto: [0-9.]+ ms \(bound by" "$(time_limit 10)" || fail "interval auto never adapted"
"$FTCTL" --socket /run/ftd/primary.sock status >"$TMP/ctl.a" 2>&1 &&
	grep -Eq "interval [0-9.]+ ms \(auto: overhead 5%, bound by (overhead|minimum|maximum)" "$TMP/ctl.a" ||
	fail "ftctl status with interval auto: $(cat "$TMP/ctl.a")"
"$FTCTL" --socket /run/ftd/primary.sock status --json | grep -q '"interval_auto":true' || fail "status --json: interval_auto"
"$FTCTL" --socket /run/ftd/primary.sock set interval 10ms >/dev/null || fail "ftctl set interval 10ms"
"$FTCTL" --socket /run/ftd/primary.sock status --json | grep -q '"interval_auto":false' || fail "set interval 10ms: still auto"
kill -0 "$PRI" "$SEC" || fail "a daemon died answering ftctl"
echo "ok: ftctl status on both daemons (human and JSON), metrics, set interval (5 ms: ~200 checkpoints/s), bad requests refused, nobody denied"

kill -STOP "$SEC"
sleep 0.5
size1=$(stat -c %s "$TMP/con.oc")
held1=$(last_stat "$TMP/pri.oc" held_bytes)
sleep 1.5
size2=$(stat -c %s "$TMP/con.oc")
held2=$(last_stat "$TMP/pri.oc" held_bytes)
[ "$size1" = "$size2" ] || fail "output commit: console grew from $size1 to $size2 bytes while the secondary could not acknowledge"
[ "${held2:-0}" -gt "${held1:-0}" ] && [ "$held2" -gt 1000 ] ||
	fail "output commit: held bytes $held1 -> $held2: the guest did not run on"
kill -CONT "$SEC"
sleep 1
size3=$(stat -c %s "$TMP/con.oc")
[ "$size3" -gt "$size2" ] || fail "output commit: no output after the secondary resumed"
grep -q "silent" "$TMP/pri.oc" && fail "output commit: a 2 s stop dropped the secondary (--timeout $OC_TIMEOUT)"
echo "ok: output commit: console held at $size2 bytes for 2 s (held_bytes $held1 -> $held2) while the secondary was stopped, released after it resumed"
# Silent past the timeout: dropped, and output flows unprotected.
kill -STOP "$SEC"
wait_for "$TMP/pri.oc" "secondary has been silent for" $((${OC_TIMEOUT%s} + 5)) || fail "silent secondary not dropped"
size4=$(stat -c %s "$TMP/con.oc")
sleep 1
size5=$(stat -c %s "$TMP/con.oc")
[ "$size5" -gt "$size4" ] || fail "unprotected primary holds output"
kill -CONT "$SEC"
stop "$PRI"
stop "$SEC"
check_bank "$TMP/con.oc" 2 || fail "output commit: bank console check failed"
echo "ok: output commit: a secondary silent for $OC_TIMEOUT is dropped, output then flows unprotected"

# ---- 3. secondary killed mid-run ----------------------------------------------------
port=$((BASE_PORT++))
start_secondary "$port" "$TMP/sec.k1"
"$FTD" primary --peer 127.0.0.1:"$port" --guest builtin:dirty --mem $MEM --vcpus 2 \
	--interval 20ms --verify --dirty-pages-per-ms 20 --dirty-wss 8M --dirty-report-ms 50 \
	--console "$TMP/con.k" 2>"$TMP/pri.k" &
PRI=$!
PIDS+=("$PRI")
wait_for "$TMP/pri.k" "Protected: secondary" "$(time_limit 20)" || fail "kill: never protected"
sleep 1
kill -KILL "$SEC"
wait "$SEC" 2>/dev/null
wait_for "$TMP/pri.k" "guest runs unprotected" "$(time_limit 5)" || fail "kill: primary did not notice"
sleep 0.3
lines1=$(wc -l <"$TMP/con.k")
sleep 2
# (When emulated, a report line can take longer than that: wait for one.)
deadline=$((SECONDS + $(time_limit 2)))
until lines2=$(wc -l <"$TMP/con.k") && [ "$lines2" -gt "$lines1" ]; do
	[ $SECONDS -lt $deadline ] || fail "kill: the guest stopped printing while unprotected"
	sleep 0.1
done
worst=$(sed -n "$((lines1 + 1)),${lines2}p" "$TMP/con.k" |
	sed -n 's/.* maxstall_us=\([0-9]*\) .*/\1/p' | sort -n | tail -1)
# A primary still waiting for its dead peer stalls the guest for its --timeout
# (2 s); host noise (a compiler on the other core) can stretch a 20 ms interval's
# pause by tens of ms. 200 ms tells the two apart (CI failed once at 27 ms);
# when emulated, 1 s (a 2-vCPU --verify guest stalled 181 ms there anyway).
stall_max=200000
emulated && stall_max=1000000
[ -n "$worst" ] && [ "$worst" -lt $stall_max ] ||
	fail "kill: the guest stalled ${worst:-?} us while unprotected (interval 20 ms)"
before=$(last_stat "$TMP/pri.k" verified)
start_secondary "$port" "$TMP/sec.k2"
wait_for "$TMP/sec.k2" "the guest is protected" "$(time_limit 20)" || fail "kill: the new secondary never synced"
sleep 2
stop "$PRI"
stop "$SEC"
after=$(summary_field "$TMP/pri.k" '\(([0-9]+) verified')
sverified=$(summary_field "$TMP/sec.k2" ' ([0-9]+) verified')
smism=$(summary_field "$TMP/sec.k2" ' ([0-9]+) mismatches')
[ "$(grep -c 'Protected: secondary' "$TMP/pri.k")" = 2 ] || fail "kill: not protected twice"
[ "${smism:-x}" = 0 ] || fail "kill: the new secondary saw ${smism:-?} mismatches"
[ "${sverified:-0}" -ge "$(rate_floor 20)" ] && [ "${after:-0}" -gt "${before:-0}" ] ||
	fail "kill: verification did not resume (new secondary verified ${sverified:-0})"
echo "ok: secondary killed: guest ran unprotected (longest stall ${worst} us), re-synced, $sverified more checkpoints verified"

# ---- 3b. a secondary re-synced by a new primary ---------------------------------------
# The dirty guest leaves non-zero pages in the replica that are zero in a fresh
# bank guest: the second initial sync lists them as zero pages, and the replica
# must clear them (verification fails otherwise).
port=$((BASE_PORT++))
start_secondary "$port" "$TMP/sec.r"
# 4 s each; 16 s when emulated, where the initial sync alone takes seconds
# (and --verify checkpoints keep the secondary busy for seconds: SLOW_TIMEOUT).
rdur=$(time_limit 4)s
for guest in dirty bank; do
	"$FTD" primary --peer 127.0.0.1:"$port" --guest builtin:$guest --mem $MEM --vcpus 2 \
		"${SLOW_TIMEOUT[@]}" --interval 10ms --duration "$rdur" --verify --dirty-wss 16M --console /dev/null \
		2>"$TMP/pri.r.$guest" || fail "re-sync: primary ($guest) failed"
	grep -q "Protected: secondary" "$TMP/pri.r.$guest" || fail "re-sync: $guest never protected"
done
stop "$SEC"
zero=$(sed -n 's/.* pages (\([0-9]*\) of them zero.*/\1/p' "$TMP/pri.r.bank")
smism=$(summary_field "$TMP/sec.r" ' ([0-9]+) mismatches')
sverified=$(summary_field "$TMP/sec.r" ' ([0-9]+) verified')
[ "${smism:-x}" = 0 ] && [ "${sverified:-0}" -ge "$(rate_floor 100)" ] ||
	fail "re-sync: ${smism:-?} mismatches, ${sverified:-0} verified"
[ "${zero:-0}" -gt 0 ] || fail "re-sync: no zero pages listed"
echo "ok: a replica left by one guest re-synced for another ($zero zero pages listed), $sverified verified, 0 mismatches"

# ---- 4. hostile peers -------------------------------------------------------------
port=$((BASE_PORT++))
start_secondary "$port" "$TMP/sec.h" --timeout 1s
hostile() { # MODE EXPECTED-LOG-LINE: only lines logged after the attempt count
	local from deadline=$((SECONDS + 5))
	from=$(wc -l <"$TMP/sec.h")
	"$PEER" 127.0.0.1:"$port" "$1" --mem $MEM >"$TMP/peer.$1" 2>&1 ||
		fail "hostile $1: $(cat "$TMP/peer.$1")"
	until tail -n +$((from + 1)) "$TMP/sec.h" | grep -Eq -- "$2"; do
		[ $SECONDS -lt $deadline ] ||
			fail "hostile $1: no log line '$2': $(tail -3 "$TMP/sec.h")"
		sleep 0.1
	done
	kill -0 "$SEC" 2>/dev/null || fail "hostile $1: the secondary died"
	echo "ok: hostile $1: $(tail -n +$((from + 1)) "$TMP/sec.h" | grep -E -- "$2" | head -1 | cut -c1-150)"
}
run_hostile_set() {
	hostile garbage "bad magic"
	hostile truncated "before a complete HELLO"
	hostile huge "hello frame of 4294967280 bytes exceeds its bound"
	hostile version "protocol_version differs: 5..5 here, 99..99 there"
	hostile memsize "mem_size differs: 67108864 here, 69206016 there"
	hostile epoch-first "expected HELLO first, got epoch-begin"
	hostile silent "no HELLO within 1.0 s"
}
# During a verified replication: it goes on, undisturbed.
"$FTD" primary --peer 127.0.0.1:"$port" --guest builtin:bank --mem $MEM --vcpus 2 \
	--interval 10ms --verify --console "$TMP/con.h" 2>"$TMP/pri.h" &
PRI=$!
PIDS+=("$PRI")
wait_for "$TMP/pri.h" "Protected: secondary" "$(time_limit 20)" || fail "hostile: never protected"
run_hostile_set
# Only what the secondary logs after this stop: under an emulated CPU its 1 s
# --timeout may have dropped the primary before (which then came back).
from=$(wc -l <"$TMP/sec.h")
stop "$PRI"
deadline=$((SECONDS + $(time_limit 5)))
until tail -n +$((from + 1)) "$TMP/sec.h" | grep -q "primary gone: replica at checkpoint"; do
	[ $SECONDS -lt $deadline ] || fail "hostile: no replica line"
	sleep 0.1
done
gone=$(tail -n +$((from + 1)) "$TMP/sec.h" | grep "primary gone: replica at checkpoint" | tail -1 |
	sed 's/.*replica at/replica at/')
# With no primary: the replica must stay exactly as it was.
run_hostile_set
stop "$SEC"
final=$(grep "stopping: replica at checkpoint" "$TMP/sec.h" | sed 's/.*replica at/replica at/')
[ "$gone" = "$final" ] ||
	fail "hostile: replica changed: '$gone' then '$final'; the secondary's log since the stop: $(tail -n +$((from + 1)) "$TMP/sec.h" | grep -v stats | tail -25)"
mism=$(summary_field "$TMP/sec.h" ' ([0-9]+) mismatches')
[ "${mism:-x}" = 0 ] || fail "hostile: ${mism:-?} mismatches during the attack"
check_bank "$TMP/con.h" 2 || fail "hostile: bank console check failed"
echo "ok: hostile peers refused, replication undisturbed (0 mismatches), $final untouched"
echo "test_replication: all passed"
