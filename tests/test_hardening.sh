#!/bin/bash
# Holes of issue 10 that two daemons on loopback show, each a case that
# failed before its fix:
#
#  1. shutdown with a stalled secondary (SIGSTOP): SIGTERM of the primary
#     while sends are stuck in a full socket exits 0, with nothing freed under
#     a send in flight (the sanitizer build, as CI runs it, reports any
#     use-after-free or leaked link);
#  2. a checkpoint whose console output exceeds what one checkpoint carries
#     (256 KiB): the guest promoted from it continues the stream at its true
#     end, so the primary's released console and the promoted guest's join
#     byte-exactly, every iteration once;
#  3. a --verify mismatch (the secondary's ACK rewritten by tests/ft_proxy)
#     ends the session instead of counting as protection, and the secondary is
#     synced again;
#  4. control clients that connect and say nothing do not hold every slot:
#     after 5 s a new ftctl gets its answer;
#  5. mutual TLS: a promoted node whose --tls-peer named its old primary does
#     not check a new secondary against that name: protect needs --tls-peer
#     NAME, and with it the new secondary is synced;
#  6. one huge epoch (200 MiB dirtied under a 30 s interval, then 10 ms) does
#     not leave its staging resident: the primary's RSS grows by less than
#     the epoch.
# Usage: test_hardening.sh FTD FTCTL FT_PROXY
set -u
FTD=${1:?usage: test_hardening.sh FTD FTCTL FT_PROXY}
FTCTL=${2:?usage: test_hardening.sh FTD FTCTL FT_PROXY}
PROXY=${3:?usage: test_hardening.sh FTD FTCTL FT_PROXY}
. "$(dirname "$0")/lib.sh"
require_kvm

BASE_PORT=$((21700 + RANDOM % 200))
MEM=64M

start_secondary() { # TAG PORT [ARGS...]
	local tag=$1 port=$2
	shift 2
	"$FTD" secondary --listen 127.0.0.1:"$port" --mem $MEM --vcpus 2 --quiet \
		--control "$TMP/s.$tag.sock" --console "$TMP/scon.$tag" "$@" 2>"$TMP/sec.$tag" &
	SEC=$!
	PIDS+=("$SEC")
	wait_for "$TMP/sec.$tag" "listening on" 10 || fail "$tag: secondary did not start: $(cat "$TMP/sec.$tag")"
}

no_sanitizer_report() { # LOG
	! grep -q "Sanitizer" "$1" || fail "$1: $(grep -A12 'Sanitizer' "$1" | head -30)"
}

# iters_once FILE: every complete "bank|dirty vcpu=V iter=I" line's iter follows
# the previous one of its vCPU (no gap, no repeat), at least 20 lines.
iters_once() {
	if [ -n "$(tail -c1 "$1")" ]; then head -n -1 "$1"; else cat "$1"; fi |
		awk '/^(bank|dirty) vcpu=[0-9]+ iter=[0-9]+ / {
			split($2, v, "="); split($3, it, "=")
			want = (v[2] in last) ? last[v[2]] + 1 : it[2]
			if (it[2] != want) { print "vcpu " v[2] ": iter " it[2] ", expected " want; bad = 1 }
			last[v[2]] = it[2]; n++
		}
		END { if (n < 20) { print n " lines"; bad = 1 } exit bad }'
}

# ---- 1. shutdown with a stalled secondary ------------------------------------------
# --timeout 3s: the stuck send fails (TCP_USER_TIMEOUT) while the old code
# drained after freeing; 30s: it would never come back by itself; with
# --send-zc the pages stay the kernel's until the connection is reset.
for run in 3s 30s 30s,--send-zc; do
	t=${run%%,*} zc=${run#$t} tag=stall$t${zc:+zc}
	port=$((BASE_PORT++))
	start_secondary $tag $port --timeout $t
	"$FTD" primary --peer 127.0.0.1:$port ${zc:+--send-zc} --guest builtin:dirty --dirty-pages-per-ms 50 \
		--dirty-wss 16M --mem $MEM --vcpus 2 --timeout $t --control "$TMP/p.$tag.sock" \
		--console /dev/null 2>"$TMP/pri.$tag" &
	PRI=$!
	PIDS+=("$PRI")
	wait_for "$TMP/pri.$tag" "Protected: secondary" 30 || fail "$tag: never protected"
	sleep 1
	kill -STOP $SEC
	sleep 0.3 # checkpoints pile up in the socket: a send is in flight
	t0=$SECONDS
	kill -TERM $PRI
	wait $PRI
	rc=$?
	kill -CONT $SEC
	[ $rc -eq 0 ] || fail "$tag: primary exited $rc: $(grep -v 'stats' "$TMP/pri.$tag" | tail -20)"
	no_sanitizer_report "$TMP/pri.$tag"
	[ $((SECONDS - t0)) -le 10 ] || fail "$tag: the primary took $((SECONDS - t0)) s to stop"
	kill -TERM $SEC
	wait $SEC
	echo "ok: SIGTERM with a stalled secondary (--timeout $t${zc:+, --send-zc}): exit 0 in $((SECONDS - t0)) s, sanitizer-clean"
done

# ---- 2. more console output than a checkpoint carries -------------------------------
# builtin:dirty reporting every millisecond writes up to 50 KB/s: with one
# checkpoint a minute, the final one (SIGTERM) carries all output held since
# checkpoint 0, over 256 KiB. The primary releases all of it; the secondary,
# promoted from that checkpoint, must continue the stream where it ends.
port=$((BASE_PORT++))
start_secondary big $port
"$FTD" primary --peer 127.0.0.1:$port --guest builtin:dirty --dirty-report-ms 1 \
	--dirty-pages-per-ms 1 --dirty-wss 1M --mem $MEM --vcpus 2 --interval 60s --quiet \
	--control "$TMP/p.big.sock" --console "$TMP/pcon.big" 2>"$TMP/pri.big" &
PRI=$!
PIDS+=("$PRI")
wait_for "$TMP/pri.big" "Protected: secondary" 30 || fail "console: never protected"
# Before the checkpoint at 60 s releases it all (a fixed deadline, emulated
# or not: --interval has no longer setting). Over 256 KiB is what the case
# needs. The emulated machine's guest writes 120-330 KB in that time (a
# console line is an exit to ftd, slow there): where it falls short, the
# case goes on without the overflow and says so.
deadline=$((SECONDS + 55))
big_overflow=1
while :; do
	held=$("$FTCTL" --socket "$TMP/p.big.sock" status --json | sed -n 's/.*"held_bytes":\([0-9]*\).*/\1/p')
	[ "${held:-0}" -gt 280000 ] && break
	if [ $SECONDS -ge $deadline ]; then
		emulated || fail "console: only ${held:-0} bytes held 55 s after the first checkpoint"
		echo "note: console: the emulated guest wrote only ${held:-0} bytes in 55 s: the final checkpoint does not overflow 256 KiB here"
		big_overflow=0
		break
	fi
	sleep 0.1
done
kill -TERM $PRI
wait $PRI
rc=$?
[ $rc -eq 0 ] || fail "console: primary exited $rc: $(tail -5 "$TMP/pri.big")"
wait_for "$TMP/sec.big" "primary gone" 10 || fail "console: the secondary did not see the primary go"
sleep 0.3 # the mirrored console is flushed on the next loop
mirrored=$(stat -c %s "$TMP/scon.big")
"$FTCTL" --socket "$TMP/s.big.sock" failover >"$TMP/out" 2>&1 ||
	fail "console: failover: $(cat "$TMP/out")"
wait_for "$TMP/sec.big" "the guest continues the stream at offset" 10 ||
	fail "console: the promoted guest did not say where it continues"
sleep 1.5
kill -TERM $SEC
wait $SEC
released=$(stat -c %s "$TMP/pcon.big")
at=$(sed -n 's/.*the guest continues the stream at offset \([0-9]*\).*/\1/p' "$TMP/sec.big")
[ "$released" -gt $((256 * 1024)) ] || [ $big_overflow = 0 ] ||
	fail "console: only $released bytes released: the test needs more"
[ "$at" = "$released" ] ||
	fail "console: the promoted guest continues at offset $at, the stream released up to $released"
tail -c +$((mirrored + 1)) "$TMP/scon.big" >"$TMP/promoted.big"
stream_join "$TMP/stream.big" "$TMP/pcon.big:0" "$TMP/promoted.big:$at" ||
	fail "console: the consoles do not join"
iters_once "$TMP/stream.big" || fail "console: the joined stream loses or repeats lines"
echo "ok: a checkpoint with $released bytes of console: the promoted guest continues at its end, joined stream exact"

# ---- 3. a --verify mismatch ends protection and re-syncs ----------------------------
port=$((BASE_PORT++)) pport=$((BASE_PORT++))
start_secondary verify $port "${SLOW_TIMEOUT[@]}"
"$PROXY" $pport 127.0.0.1:$port mismatch 20 2>"$TMP/proxy.log" &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
sleep 0.3
"$FTD" primary --peer 127.0.0.1:$pport --guest builtin:bank --mem $MEM --vcpus 2 --verify \
	"${SLOW_TIMEOUT[@]}" --interval 10ms --control "$TMP/p.verify.sock" --console "$TMP/pcon.verify" \
	2>"$TMP/pri.verify" &
PRI=$!
PIDS+=("$PRI")
wait_for "$TMP/proxy.log" "now says mismatch" 30 || fail "verify: the proxy never rewrote an ACK"
wait_for "$TMP/pri.verify" "memory hash differs from ours.*re-syncing" 5 ||
	fail "verify: the primary did not end the session: $(grep -v stats "$TMP/pri.verify" | tail -5)"
# Protected again once the secondary has dropped the old session (its
# --timeout, if the proxy keeps that connection): seconds, 30 at most.
for ((i = 0; i < 300; i++)); do
	[ "$(grep -c 'Protected: secondary' "$TMP/pri.verify")" -ge 2 ] && break
	sleep 0.1
done
[ "$(grep -c 'Protected: secondary' "$TMP/pri.verify")" -ge 2 ] ||
	fail "verify: not protected again after the mismatch: $(grep -v stats "$TMP/pri.verify" | tail -8)"
kill -TERM $PRI
wait $PRI
rc=$?
[ $rc -eq 0 ] || fail "verify: primary exited $rc"
mism=$(summary_field "$TMP/pri.verify" ' ([0-9]+) mismatches')
[ "${mism:-x}" = 1 ] || fail "verify: ${mism:-?} mismatches counted, expected 1"
sessions=$(summary_field "$TMP/pri.verify" ' ([0-9]+) sessions')
[ "${sessions:-0}" -ge 2 ] || fail "verify: ${sessions:-0} sessions"
check_bank "$TMP/pcon.verify" 2 || fail "verify: bank console check failed"
kill -TERM $SEC $PROXY_PID
wait $SEC
echo "ok: a verify mismatch ended the session (not counted as acknowledged) and the secondary was synced again"

# ---- 4. idle control clients ----------------------------------------------------------
port=$((BASE_PORT++))
start_secondary idle $port
python3 -c '
import socket, sys, time
held = []
for i in range(32):
    c = socket.socket(socket.AF_UNIX)
    c.connect(sys.argv[1])
    held.append(c)
open(sys.argv[2], "w").close()
time.sleep(300)
' "$TMP/s.idle.sock" "$TMP/idle.held" &
HOLDER=$!
PIDS+=("$HOLDER")
# The daemon closes idle clients when a new one arrives: once the 32 have been
# connected for over 5 s (python starts slowly under a sanitizer build on a
# busy host, and more slowly when emulated), ftctl is that new client.
end=$((SECONDS + 60))
until [ -e "$TMP/idle.held" ]; do
	[ $SECONDS -lt $end ] || fail "idle clients: the holder did not connect 32 clients"
	sleep 0.1
done
sleep 5.5
"$FTCTL" --socket "$TMP/s.idle.sock" status >"$TMP/out" 2>&1 ||
	fail "idle clients: ftctl status exited $?: $(cat "$TMP/out"); $(tail -3 "$TMP/sec.idle")"
grep -q "sent no request within 5 s" "$TMP/sec.idle" || fail "idle clients: no log line"
kill $HOLDER
kill -TERM $SEC
wait $SEC
echo "ok: 32 idle control connections, evicted after 5 s: ftctl status still answered"

# ---- 5. --tls-peer on a promoted node ------------------------------------------------
command -v openssl >/dev/null || fail "openssl is not installed (scripts/deps.sh)"
C=$TMP/pki
pki_ca ca
pki_cert pri ca
pki_cert s1 ca
pki_cert s2 ca
p1=$((BASE_PORT++)) p2=$((BASE_PORT++))
start_secondary s1 $p1 $(pki_args s1) --tls-peer pri
S1=$SEC
"$FTD" primary --peer 127.0.0.1:$p1 --guest builtin:bank --mem $MEM --vcpus 2 --quiet \
	$(pki_args pri) --tls-peer s1 --control "$TMP/p.tls.sock" --console /dev/null 2>"$TMP/pri.tls" &
PRI=$!
PIDS+=("$PRI")
wait_for "$TMP/pri.tls" "Protected: secondary" 30 || fail "tls: never protected: $(tail -3 "$TMP/pri.tls")"
kill -KILL $PRI
wait $PRI 2>/dev/null
wait_for "$TMP/sec.s1" "Primary .* (lost|closed|gone)|primary gone" 10 || fail "tls: s1 did not see the primary go"
"$FTCTL" --socket "$TMP/s.s1.sock" failover >"$TMP/out" 2>&1 || fail "tls: failover: $(cat "$TMP/out")"
start_secondary s2 $p2 $(pki_args s2) --tls-peer s1
"$FTCTL" --socket "$TMP/s.s1.sock" protect --peer 127.0.0.1:$p2 >"$TMP/out" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "this node was promoted: its --tls-peer pri named the primary" "$TMP/out" ||
	fail "tls: protect without --tls-peer on a promoted node: exit $rc, $(cat "$TMP/out")"
"$FTCTL" --socket "$TMP/s.s1.sock" protect --peer 127.0.0.1:$p2 --tls-peer s2 >"$TMP/out" 2>&1 ||
	fail "tls: protect --tls-peer s2: $(cat "$TMP/out")"
wait_for "$TMP/sec.s1" "Protected: secondary 127.0.0.1:$p2" 30 ||
	fail "tls: s2 never protected the promoted guest: $(grep -v stats "$TMP/sec.s1" | tail -5)"
kill -TERM $S1 $SEC
wait $S1 $SEC
echo "ok: a promoted node protects itself with a new TLS peer only when told its name"

# ---- 6. staging after a huge epoch ---------------------------------------------------
# The bitmap, so that no full ring cuts the epoch short. SLOW_TIMEOUT: when
# emulated, the secondary is silent for seconds while it applies 200 MiB.
port=$((BASE_PORT++))
"$FTD" secondary --listen 127.0.0.1:$port "${SLOW_TIMEOUT[@]}" --mem 256M --vcpus 1 --tracking bitmap --quiet \
	--control "$TMP/s.huge.sock" --console /dev/null 2>"$TMP/sec.huge" &
SEC=$!
PIDS+=("$SEC")
wait_for "$TMP/sec.huge" "listening on" 10 || fail "huge: secondary did not start"
"$FTD" primary --peer 127.0.0.1:$port "${SLOW_TIMEOUT[@]}" --mem 256M --vcpus 1 --tracking bitmap \
	--guest builtin:dirty --dirty-wss 200M --dirty-pages-per-ms 200 --interval 30s --quiet \
	--live-harvest off \
	--control "$TMP/p.huge.sock" --console /dev/null 2>"$TMP/pri.huge" &
PRI=$!
PIDS+=("$PRI")
wait_for "$TMP/pri.huge" "Protected: secondary" 30 || fail "huge: never protected"
sleep 3 # the guest dirties all of its 200 MiB (51200 pages) many times over
# (when emulated it may not have touched all of it yet: wait until it has)
deadline=$((SECONDS + $(time_limit 15)))
until rss0=$(awk '/^VmRSS:/ {print $2}' /proc/$PRI/status) && [ "$rss0" -gt 204800 ]; do
	[ $SECONDS -lt $deadline ] || fail "huge: the guest's 200 MiB not resident: RSS $rss0 KiB"
	sleep 0.5
done
huge_acked() {
	"$FTCTL" --socket "$TMP/p.huge.sock" status --json >"$TMP/huge.json" || return 1
	grep -Eo '"acked":[0-9]+' "$TMP/huge.json" | grep -Eo '[0-9]+$'
}
acked0=$(huge_acked) || fail "huge: status"
"$FTCTL" --socket "$TMP/p.huge.sock" set interval 10ms >/dev/null || fail "huge: set interval"
# A slot's staging beyond 64 MiB goes back once the socket has all of its
# epoch. Under 10 ms the guest's epochs are small on hardware, but when
# emulated a checkpoint of 51200 pages takes seconds and the epochs after it
# are huge too. So: 10 ms for 3 s and some checkpoints, then the long interval
# again, and RSS is read once the checkpoints taken until then are
# acknowledged, where every slot must be back to its 64 MiB. (No live harvest:
# its slot keeps what it copied until the pause.)
want=$((acked0 + $(rate_floor 10 3)))
deadline=$((SECONDS + $(time_limit 15)))
sleep 3
while acked=$(huge_acked) && [ "${acked:-0}" -lt $want ]; do
	[ $SECONDS -lt $deadline ] || fail "huge: $acked of $want checkpoints acknowledged: $(cat "$TMP/huge.json")"
	sleep 0.2
done
"$FTCTL" --socket "$TMP/p.huge.sock" set interval 60s >/dev/null || fail "huge: set interval 60s"
sleep 0.5
huge_acked >/dev/null || fail "huge: status"
pending=$(grep -Eo '"checkpoints":[0-9]+' "$TMP/huge.json" | grep -Eo '[0-9]+$')
deadline=$((SECONDS + $(time_limit 15)))
until acked=$(huge_acked) && [ "${acked:-0}" -ge "$pending" ]; do
	[ $SECONDS -lt $deadline ] || fail "huge: $acked of $pending checkpoints acknowledged: $(cat "$TMP/huge.json")"
	sleep 0.2
done
grep -q '"state":"protected"' "$TMP/huge.json" || fail "huge: not protected: $(cat "$TMP/huge.json")"
rss1=$(awk '/^VmRSS:/ {print $2}' /proc/$PRI/status)
kill -TERM $PRI $SEC
wait $PRI $SEC
# Two slots keep 64 MiB of staging each (128 MiB); 16 MiB more for the rest
# (an emulated run grew by 134.6 MiB). A staging kept whole is 200 MiB a slot.
[ $((rss1 - rss0)) -lt 147456 ] ||
	fail "huge: RSS grew from $rss0 to $rss1 KiB after a 200 MiB epoch: its staging stayed"
echo "ok: a 200 MiB epoch: RSS $rss0 -> $rss1 KiB (staging above 64 MiB returned)"
