#!/bin/bash
# Issue 15: a protected builtin:kv guest keeps an append-only log of its writes
# on a replicated virtio-blk disk (--disk), in the namespaces of tests/netns.sh
# (tests/kv_lib.sh has the helpers it shares with test_net.sh). One case per
# run:
#
#  failover   FT_DISK_ROUNDS (default 10) rounds under the checker
#             (kv_jepsen.py): kill -9 of the primary at a random moment (a
#             third of the time with the secondary stopped around it) and
#             `ftctl failover`; every acknowledged write is there on the
#             promoted guest. Then everything stops and the guest boots cold
#             from the promoted side's image alone (`ftd run --disk`): every
#             acknowledged write is there again, replayed from the disk. The
#             two images swap roles each round: the next primary boots from
#             the promoted image (the last round's writes must be there) and
#             the next secondary is the old primary's image, which is resynced
#             by block checksums, not copied.
#  verify     --verify hashes the disk image with memory at every checkpoint
#             (guest paused): 0 mismatches under client writes; one byte
#             changed in the secondary's image behind its back must be found;
#             every flush has its latency in ftctl status and the statistics
#             line counts flushes while the clients write.
#  hostile    image sizes that differ are refused at the handshake, naming
#             both; a secondary whose image lives on a full file system (a
#             small tmpfs) refuses the epoch it cannot write, says why, never
#             acknowledges it, and the primary runs on unprotected, serving; a
#             disk record moved beyond the image on the wire (tests/ft_proxy,
#             in the clear) is refused on arrival, the replica keeps its
#             checkpoint, and the next session syncs and serves on.
#  resync     a secondary stopped while the guest writes comes back with its
#             old image: only the blocks that differ are sent (counted against
#             the images' own block sums), then --verify finds the images equal;
#             then `ftctl switchover` hands the guest to it: every write is
#             there, and again after a cold boot from its image.
#
# Usage: test_disk.sh FTD FTCTL FT_PROXY CASE   (root: namespaces, TAP devices)
# Skipped (77) without /dev/kvm, namespaces, redis-tools or python3-redis,
# unless FT_REQUIRE_KVM=1 (then each is a failure). KEEP_TMP=1 keeps the logs.
# shellcheck source-path=SCRIPTDIR
set -u
FTD=$(readlink -f "${1:?usage: test_disk.sh FTD FTCTL FT_PROXY CASE}")
FTCTL=$(readlink -f "${2:?usage: test_disk.sh FTD FTCTL FT_PROXY CASE}")
PROXY=$(readlink -f "${3:?usage: test_disk.sh FTD FTCTL FT_PROXY CASE}")
CASE=${4:?usage: test_disk.sh FTD FTCTL FT_PROXY failover|verify|hostile|resync}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/netns.sh"
. "$HERE/kv_lib.sh"
trap 'cleanup; net_down; [ -n "${MNT:-}" ] && umount "$MNT" 2>/dev/null' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Ten rounds, emulated or not (each round is a kill, a failover and a cold
# boot from the image: 40-75 s a round in the emulated machine).
DISK_ROUNDS=${FT_DISK_ROUNDS:-10}
DISK_SIZE=${FT_DISK_SIZE:-64M}
MEM=${FT_DISK_MEM:-128M}
emulated && MEM=${FT_DISK_MEM:-64M} # as kv_lib.sh's

case $CASE in
failover | verify | hostile | resync) ;;
*) echo "usage: test_disk.sh FTD FTCTL FT_PROXY failover|verify|hostile|resync" >&2 && exit 2 ;;
esac

require_kvm
why=$(net_can 2>&1) || skip_or_fail "$why"
command -v redis-cli >/dev/null || skip_or_fail "missing: redis-cli (apt-get install redis-tools)"
"$PY" -c 'import redis' 2>/dev/null ||
	skip_or_fail "missing: $PY with python3-redis (apt-get install python3-redis)"
"$FTD" --help >"$TMP/help" 2>&1 || fail "ftd --help exited $?"
grep -qF -- "--disk FILE" "$TMP/help" || fail "ftd --help lacks '--disk FILE': this ftd has no disk (issue 15)"

# shellcheck disable=SC2034 # lib.sh's pki_* read it
C=$TMP/pki
pki_ca ca
pki_cert hosta ca
pki_cert hostb ca

# image NAME [SIZE]: a fresh sparse image file, its path on stdout.
image() {
	rm -f "$TMP/$1"
	truncate -s "${2:-$DISK_SIZE}" "$TMP/$1" || fail "cannot create image $1"
	echo "$TMP/$1"
}

# differing_blocks A B: 64 KiB blocks whose bytes differ between two images.
differing_blocks() {
	"$PY" - "$1" "$2" <<'EOF'
import sys
n = 0
with open(sys.argv[1], "rb") as a, open(sys.argv[2], "rb") as b:
    while True:
        x, y = a.read(65536), b.read(65536)
        if not x and not y:
            break
        n += x != y
print(n)
EOF
}

# wait_count NAME REGEX N SECONDS: until log.NAME has N lines matching.
wait_count() {
	local secs
	secs=$(time_limit "$4")
	local deadline=$((SECONDS + secs))
	until [ "$(grep -Ec -- "$2" "$TMP/log.$1" 2>/dev/null)" -ge "$3" ]; do
		[ $SECONDS -lt "$deadline" ] || fail "$1: fewer than $3 lines '$2' after $secs s: $(tail -5 "$TMP/log.$1")"
		sleep 0.1
	done
}

# verified NAME: "verified mismatches" from that ftd's status.
verified() {
	ctl "$1" status --json 2>/dev/null | "$PY" -c '
import json, sys
j = json.load(sys.stdin)
print(j.get("verified", -1), j.get("mismatches", -1))'
}

# cold_check TAG IMAGE HISTORY...: boots the guest alone from IMAGE (`ftd run`)
# and checks each saved history against it: every acknowledged write replayed
# (a HISTORY may be "FILE --older": later runs followed it).
cold_check() {
	local tag=$1 img=$2 h
	shift 2
	net_up || fail "$tag: cannot build the topology for the cold boot"
	DISK_P=$img
	# shellcheck disable=SC2046 # option lists
	ftd_start c a run $(guest_args)
	wait_service 60
	expect "$(printf 'appendonly\nyes')" CONFIG GET appendonly
	for h in "$@"; do
		# shellcheck disable=SC2086 # "HISTORY [--older]"
		jepsen --check-only $h >"$TMP/coldcheck.$tag" 2>&1 ||
			fail "$tag: after a cold boot from $(basename "$img"), the checker found: $(cat "$TMP/coldcheck.$tag")"
	done
	grep -Eo 'kv disk [^"]*' "$TMP/con.c" | head -1 >"$TMP/disk.$tag"
	[ -s "$TMP/disk.$tag" ] || fail "$tag: the cold-booted guest printed no 'kv disk' line: $(head -5 "$TMP/con.c")"
	stop c
	archive "cold.$tag"
}

case_failover() {
	local r x y t keys
	x=$(image disk.x)
	y=$(image disk.y)
	for ((r = 1; r <= DISK_ROUNDS; r++)); do
		net_up || fail "cannot build the topology"
		DISK_P=$x
		DISK_S=$y
		FAILOVER_AFTER_START=disk_round_start
		failover_round "$r" ""
		# The promoted guest ran on y: it alone must hold every acknowledged write.
		cold_check "$r" "$y" "$TMP/hist.$r"
		echo "ok: round $r: cold boot from the promoted image: every acknowledged write replayed ($(cat "$TMP/disk.$r"))"
		t=$x
		x=$y
		y=$t
	done
	keys=$(grep -Eo 'keys=[0-9]+' "$TMP/disk.$DISK_ROUNDS" | head -1)
	echo "ok: $DISK_ROUNDS kill -9 failovers with the log on the replicated disk, each followed by a cold boot from the promoted image: nothing lost ($keys at the end)"
}

# Called by failover_round once the pair is protected: from round 2 on the
# primary booted from the last promoted image, the secondary was resynced.
# shellcheck disable=SC2317 # called through FAILOVER_AFTER_START
disk_round_start() {
	local r=$1
	[ "$r" -gt 1 ] || return 0
	jepsen --check-only "$TMP/hist.$((r - 1))" >"$TMP/boot.$r" 2>&1 ||
		fail "round $r: the primary booted from the last promoted image lacks writes: $(cat "$TMP/boot.$r")"
	grep -Eq "sync: disk image .* compared in [0-9.]+ s: [0-9]+ of [0-9]+ blocks" "$TMP/log.a" ||
		fail "round $r: the primary logged no disk sync: $(grep sync "$TMP/log.a")"
}

case_verify() {
	local v m v2 m2 nf fp50 fp99
	net_up || fail "cannot build the topology"
	DISK_P=$(image disk.p)
	DISK_S=$(image disk.s)
	PRIMARY_EXTRA=(--verify)
	start_pair
	jepsen --clients 4 --duration 4 >"$TMP/jep.verify" 2>&1 || fail "verify: the checker failed: $(cat "$TMP/jep.verify")"
	read -r v m <<<"$(verified a)"
	if [ "$v" -le 0 ] || [ "$m" != 0 ]; then
		fail "verify: $v checkpoints verified with the disk hashed and $m mismatches (expected >0 and 0)"
	fi
	echo "ok: verify: $v checkpoints verified (memory and disk image hashed) under client writes, 0 mismatches"
	# Every flush the guest's log made (one per SET) has its latency sample,
	# and the statistics line counted them while the clients wrote.
	ctl a status --json 2>/dev/null | "$PY" -c '
import json, sys
d = json.load(sys.stdin)["disk"]
f, lat = d["flushes"], d["latency_us"]
assert f > 0 and lat["flush"]["count"] == f, "%d flushes, %d flush latencies" % (f, lat["flush"]["count"])
assert lat["write"]["count"] == d["writes"], "%d writes, %d write latencies" % (d["writes"], lat["write"]["count"])
assert 0 < lat["flush"]["p50"] <= lat["flush"]["p99"] <= lat["flush"]["max"], lat["flush"]
print(f, lat["flush"]["p50"], lat["flush"]["p99"])' >"$TMP/lat" 2>&1 ||
		fail "verify: the disk's latency in ftctl status: $(cat "$TMP/lat")"
	grep -Eq 'ftd: stats state=protected .* disk_MBps=[0-9.]+ disk_flushes=[0-9.]*[1-9][0-9.]*/s disk_write_us p50=[0-9]+ p99=[0-9]+ disk_flush_us p50=[1-9][0-9]* ' "$TMP/log.a" ||
		fail "verify: no statistics line with the disk's flushes: $(grep -m1 'ftd: stats state=protected' "$TMP/log.a")"
	read -r nf fp50 fp99 <"$TMP/lat"
	echo "ok: verify: $nf flushes, each with its latency (p50 $fp50 us, p99 $fp99 us), and in the statistics line"
	# One byte of the secondary's copy changed behind its back: the next hash differs.
	# Up to 8 checkpoints (PRIMARY_MAX_UNACKED) may have been hashed before the
	# change and acknowledged after it; the one after those must differ.
	read -r v m <<<"$(verified a)"
	printf 'X' | dd of="$DISK_S" bs=1 seek=$((3 * 1024 * 1024 + 17)) conv=notrunc status=none
	local deadline=$((SECONDS + $(time_limit 5)))
	while :; do
		read -r v2 m2 <<<"$(verified a)"
		[ "$m2" -gt 0 ] && break
		[ $((v2 - v)) -le 9 ] && [ $SECONDS -lt $deadline ] ||
			fail "verify: a byte changed in the secondary's image, and $((v2 - v)) more checkpoints verified with no mismatch"
		sleep 0.1
	done
	echo "ok: verify: a byte changed in the secondary's image is found ($m2 mismatches)"
	PRIMARY_EXTRA=()
	stop a
	stop b
}

case_hostile() {
	local small i held
	# Sizes differ: refused at the handshake, both named.
	net_up || fail "cannot build the topology"
	DISK_P=$(image disk.p 64M)
	DISK_S=$(image disk.s 32M)
	# shellcheck disable=SC2046 # option lists
	ftd_start b b secondary --listen "$NET_REPL_B:$PORT" $(secondary_args)
	# shellcheck disable=SC2046 # option lists
	ftd_start a a primary --peer "$NET_REPL_B:$PORT" $(guest_args) --interval "$INTERVAL"
	wait_log b "disk_size differs: 33554432 here, 67108864 there" 20
	wait_log a "refused this primary: disk_size differs: theirs 33554432, ours 67108864" 20
	wait_service 30
	grep -q "Replica holds checkpoint" "$TMP/log.b" && fail "hostile: a secondary with a smaller image took a checkpoint"
	echo "ok: hostile: image sizes 64 MiB and 32 MiB refused at the handshake, both named"
	stop a
	stop b
	archive size

	# A full file system under the secondary's image: the epoch is refused, never acknowledged.
	MNT=$TMP/small
	mkdir -p "$MNT"
	mount -t tmpfs -o size=2m tmpfs "$MNT" || skip_or_fail "cannot mount a tmpfs"
	small=$MNT/disk.s
	truncate -s 64M "$small"
	net_up || fail "cannot build the topology"
	DISK_P=$(image disk.p 64M)
	# Fill the primary's image beyond what the secondary's file system holds.
	dd if=/dev/urandom of="$DISK_P" bs=1M count=4 seek=8 conv=notrunc status=none
	DISK_S=$small
	# shellcheck disable=SC2046 # option lists
	ftd_start b b secondary --listen "$NET_REPL_B:$PORT" $(secondary_args)
	# shellcheck disable=SC2046 # option lists
	ftd_start a a primary --peer "$NET_REPL_B:$PORT" $(guest_args) --interval "$INTERVAL"
	wait_log b "No space left on device" 30
	wait_log a "the guest runs unprotected" 20
	grep -q "Replica holds checkpoint" "$TMP/log.b" &&
		fail "hostile: the secondary whose image could not be written holds a checkpoint: $(grep -i space "$TMP/log.b")"
	wait_service 30
	expect OK SET after-enospc 1
	expect 1 GET after-enospc
	echo "ok: hostile: a secondary out of space refused the epoch ($(grep -o 'Cannot apply[^;]*' "$TMP/log.b" | head -1)); the primary runs on unprotected and serves"
	stop a
	stop b
	umount "$MNT"
	MNT=
	archive enospc

	# A disk record moved beyond the image on the wire: refused when it arrives,
	# before anything of its epoch is applied; the replica keeps its checkpoint.
	net_up || fail "cannot build the topology"
	DISK_P=$(image disk.p 64M)
	DISK_S=$(image disk.s 64M)
	IN_THE_CLEAR=1
	# shellcheck disable=SC2046 # option lists
	ftd_start b b secondary --listen "127.0.0.1:$PORT" $(secondary_args)
	ip netns exec "$(net_ns b)" "$PROXY" "$NET_REPL_B:$PORT" "127.0.0.1:$PORT" disk-beyond 20 \
		2>"$TMP/proxy" &
	PIDS+=("$!")
	# shellcheck disable=SC2046 # option lists
	ftd_start a a primary --peer "$NET_REPL_B:$PORT" $(guest_args) --interval "$INTERVAL"
	IN_THE_CLEAR=
	wait_log b "Replica holds checkpoint" 60
	wait_service 30
	for ((i = 0; i < 40; i++)); do
		expect OK SET "beyond$i" "$i"
	done
	wait_for "$TMP/proxy" "now writes at offset 2\^60" 10 || fail "hostile: the proxy rewrote no disk record: $(cat "$TMP/proxy")"
	wait_log b "write of [0-9]+ bytes at 1152921504606846976 is beyond the image \(67108864 bytes\)" 10
	ctl b status --json >"$TMP/out" 2>&1 || fail "hostile: ftctl status on B: $(cat "$TMP/out")"
	held=$(sed -n 's/.*"checkpoint": *\([0-9][0-9]*\).*/\1/p' "$TMP/out")
	[ -n "$held" ] || fail "hostile: after a refused epoch the secondary holds no checkpoint: $(cat "$TMP/out")"
	# The primary runs on, syncs again (the proxy now forwards unchanged) and serves.
	wait_count a "Protected: secondary" 2 30
	for ((i = 0; i < 40; i++)); do
		expect "$i" GET "beyond$i"
	done
	echo "ok: hostile: a disk record moved beyond the image on the wire was refused on arrival" \
		"($(grep -o 'write of [0-9]* bytes at [0-9]* is beyond the image ([0-9]* bytes)' "$TMP/log.b" | head -1));" \
		"the replica kept checkpoint $held, the next session synced and serves"
	stop a
	stop b
}

case_resync() {
	local before n sent total v m h
	net_up || fail "cannot build the topology"
	DISK_P=$(image disk.p)
	DISK_S=$(image disk.s)
	PRIMARY_EXTRA=(--verify)
	start_pair
	jepsen --clients 4 --duration 3 --save "$TMP/hist.1" >"$TMP/jep.1" 2>&1 ||
		fail "resync: the checker failed: $(cat "$TMP/jep.1")"
	# The secondary goes; the guest writes on.
	stop b
	wait_log a "the guest runs unprotected" 20
	jepsen --clients 4 --duration 3 --save "$TMP/hist.2" >"$TMP/jep.2" 2>&1 ||
		fail "resync: the checker failed: $(cat "$TMP/jep.2")"
	sleep 0.5
	n=$(differing_blocks "$DISK_P" "$DISK_S")
	[ "$n" -gt 0 ] || fail "resync: the guest's writes changed no block of the image"
	before=$(grep -c "sync: disk image" "$TMP/log.a")
	# shellcheck disable=SC2046 # option lists
	ftd_start b2 b secondary --listen "$NET_REPL_B:$PORT" $(secondary_args)
	wait_count a "Protected: secondary" 2 30
	grep "sync: disk image" "$TMP/log.a" | tail -n +$((before + 1)) | head -1 >"$TMP/sync"
	sent=$(sed -n 's/.*: \([0-9]*\) of \([0-9]*\) blocks.*/\1/p' "$TMP/sync")
	total=$(sed -n 's/.*: \([0-9]*\) of \([0-9]*\) blocks.*/\2/p' "$TMP/sync")
	[ -n "$sent" ] || fail "resync: no disk sync line after the secondary came back: $(tail -5 "$TMP/log.a")"
	# Writes between the count and the compare may add a few blocks.
	if [ "$sent" -lt "$n" ] || [ "$sent" -gt $((n + 8)) ]; then
		fail "resync: $sent blocks sent, but $n blocks differed when the secondary came back"
	fi
	sleep 2
	read -r v m <<<"$(verified a)"
	if [ "$m" != 0 ] || [ "$v" -le 0 ]; then
		fail "resync: after the resync $v checkpoints verified, $m mismatches"
	fi
	echo "ok: resync: the returning secondary was sent $sent of $total blocks ($n differed), then $v checkpoints verified equal"
	PRIMARY_EXTRA=()

	# A planned hand-over: B runs the guest on its resynced image, with every write.
	ctl a switchover >"$TMP/out" 2>&1 || fail "resync: ftctl switchover: $(cat "$TMP/out")"
	grep -Eq "^switched over: .* runs the guest from checkpoint [0-9]+$" "$TMP/out" ||
		fail "resync: switchover said: $(cat "$TMP/out")"
	wait_log b2 "Promoted \(switchover from" 10
	net_wait_mac_host "$MAC" b 3 || fail "resync: the guest's MAC did not move to B after the switchover"
	if ! { jepsen --check-only "$TMP/hist.1" --older && jepsen --check-only "$TMP/hist.2"; } \
		>"$TMP/sw.check" 2>&1; then
		fail "resync: after the switchover B lacks writes: $(cat "$TMP/sw.check")"
	fi
	stop b2
	wait "${PID[a]}" 2>/dev/null
	archive switchover
	cold_check switchover "$DISK_S" "$TMP/hist.1 --older" "$TMP/hist.2"
	echo "ok: resync: ftctl switchover to the resynced secondary, every write there, and again after a cold boot from its image"
}

case $CASE in
failover) case_failover ;;
verify) case_verify ;;
hostile) case_hostile ;;
resync) case_resync ;;
esac
exit 0
