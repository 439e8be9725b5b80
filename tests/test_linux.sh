#!/bin/bash
# Issue 14: a Linux guest (the test kernel and initramfs of scripts/linux-guest.sh:
# Debian's linux-source with tests/linux/ringft.config and our SYSCALL patch,
# busybox-static and tests/linux/init.c). One case per run:
#
#  init      `ftd run --kernel --disk`: the kernel reaches the init, whose
#            numbered lines (a bank invariant kept in userspace, CLOCK_MONOTONIC
#            never going back) come consecutive and ok, each with its record on
#            the disk; the kernel logs no oops, BUG, panic, warning or lockup.
#            Prints the boot time.
#  failover  `ftd primary --verify` + `ftd secondary` on loopback, each with a
#            fresh sparse disk image: 0 mismatches while the kernel boots and
#            the init runs; kill -9 of the primary (a third of the time with the
#            secondary stopped around it) and `ftctl failover`: the joined
#            console stream has every init line exactly once and ok, the kernel
#            no trouble, and guest time never went back (the init checks it at
#            every line). The init writes and flushes each line's record to
#            /dev/vda (Linux's virtio_blk) before printing the line, so the
#            promoted side's image must hold the record of every line the
#            stream shows, with the same text (tests/linux/disk_check.py).
#  cluster   the same with --cluster: Corosync in the namespaces of
#            tests/cluster.sh, the secondary promotes by itself; the records
#            in 8 slots only, so that later lines reuse them.
#  net       with a virtio-net NIC on a TAP (tests/netns.sh): the guest's own
#            Linux TCP stack serves busybox httpd (curl from the client
#            namespace) and a busybox nc echo server over one long TCP
#            connection that must survive kill -9 + failover without a reset
#            and without losing or repeating a byte.
#
# Usage: test_linux.sh FTD FTCTL CASE. Skipped (77) without /dev/kvm or without a
# built test kernel (scripts/linux-guest.sh), unless FT_REQUIRE_KVM=1.
# shellcheck source-path=SCRIPTDIR
set -u
FTD=$(readlink -f "${1:?usage: test_linux.sh FTD FTCTL CASE}")
FTCTL=$(readlink -f "${2:?usage: test_linux.sh FTD FTCTL CASE}")
CASE=${3:?usage: test_linux.sh FTD FTCTL init|failover|cluster|net}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
require_kvm

case $CASE in
init | failover | cluster | net) ;;
*) echo "usage: test_linux.sh FTD FTCTL init|failover|cluster|net" >&2 && exit 2 ;;
esac

skip_or_fail() {
	[ "${FT_REQUIRE_KVM:-}" = 1 ] && fail "FT_REQUIRE_KVM=1 but $*"
	echo "skipped: $*"
	exit 77
}

# FT_LINUX_KERNEL and FT_LINUX_INITRD name another kernel and initramfs.
if [ -n "${FT_LINUX_KERNEL:-}" ]; then
	KERNEL=$FT_LINUX_KERNEL INITRD=${FT_LINUX_INITRD:?FT_LINUX_KERNEL needs FT_LINUX_INITRD}
	paths="$KERNEL $INITRD"
else
	paths=$("$HERE/../scripts/linux-guest.sh" --print 2>/dev/null) ||
		skip_or_fail "no test kernel built (run scripts/linux-guest.sh)"
	KERNEL=$(sed -n 's/^vmlinux=//p' <<<"$paths")
	INITRD=$(sed -n 's/^initramfs=//p' <<<"$paths")
fi
{ [ -r "$KERNEL" ] && [ -r "$INITRD" ]; } || fail "scripts/linux-guest.sh --print: '$paths'"

MEM=${FT_LINUX_MEM:-128M}
INTERVAL=${FT_LINUX_INTERVAL:-10ms}
# What this host's emulator needs (docs/linux.md): no XSAVE, and no SMAP,
# POPCNT, CMPXCHG16B, ERMS or FSRM at CPL 0. Harmless on VMX/SVM.
CMDLINE="console=ttyS0 noxsave clearcpuid=308,151,141,297,580 io_delay=none tsc=reliable"
CMDLINE+=" no_timer_check panic=-1 reboot=t ringft.period_ms=100"
# Soft lockups are reported after 60 s, not 20: a kernel that runs emulated on a
# loaded 2-core host can spend 20 s in one boot self-test (blake2s) under --verify.
CMDLINE+=" watchdog_thresh=30"
PORT=$((19000 + RANDOM % 500))
declare -A PID

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# wait_log NAME REGEX SECONDS: until log.NAME matches; fails at once if that ftd died.
wait_log() {
	local name=$1 secs
	secs=$(time_limit "$3")
	local deadline=$((SECONDS + secs))
	until grep -Eq -- "$2" "$TMP/log.$name" 2>/dev/null; do
		kill -0 "${PID[$name]}" 2>/dev/null ||
			fail "$name (ftd) exited while waiting for '$2': $(tail -5 "$TMP/log.$name")"
		[ $SECONDS -lt "$deadline" ] || fail "$name: no '$2' after $secs s: $(tail -5 "$TMP/log.$name")"
		sleep 0.2
	done
}

# last_line FILE: the number of the init's last line in FILE (0: none yet).
last_line() {
	tr -d '\r' <"$1" 2>/dev/null | sed -n 's/^ringft-init: line 0*\([0-9][0-9]*\) .*/\1/p' | tail -1 |
		grep . || echo 0
}

# wait_lines NAME N SECONDS: until con.NAME has init line N (a time_limit).
wait_lines() {
	local name=$1 n=$2 deadline=$((SECONDS + $(time_limit "$3")))
	until [ "$(last_line "$TMP/con.$name")" -ge "$n" ]; do
		kill -0 "${PID[$name]}" 2>/dev/null ||
			fail "$name (ftd) exited before init line $n: $(tail -5 "$TMP/log.$name")"
		[ $SECONDS -lt "$deadline" ] ||
			fail "$name: no init line $n after $(time_limit "$3") s (last $(last_line "$TMP/con.$name")): $(tail -c 1500 "$TMP/con.$name")
== its ftd's log, last lines:
$(grep -v 'stats' "$TMP/log.$name" | tail -20)
== ftctl status:
$("$FTCTL" --socket "$TMP/$name.sock" status 2>&1 | head -30)"
		sleep 0.2
	done
}

# check_console FILE MIN: the init's lines are consecutive from 1, every one ok,
# at least MIN of them; the kernel logged no trouble.
check_console() {
	local f=$1 min=$2 trouble
	tr -d '\r' <"$f" >"$TMP/check" || return 1
	awk -v min="$min" '
		/^ringft-init: line / {
			n = $3 + 0
			if (n != last + 1) { printf "init line %d follows line %d\n", n, last; bad = 1; exit 1 }
			if ($4 != "ok") { print "not ok: " $0; bad = 1; exit 1 }
			last = n
		}
		END { if (!bad && last < min) { printf "only %d init lines (want %d)\n", last, min; exit 1 } }
	' "$TMP/check" || return 1
	trouble=$(grep -E 'Oops|BUG:|Kernel panic|soft lockup|hard LOCKUP|blocked for more than|general protection|WARNING: CPU|Call Trace|segfault at|self-detected stall|rcu: INFO|ringft-init: .*BAD' "$TMP/check" | head -5)
	[ -z "$trouble" ] || {
		echo "kernel trouble in $f: $trouble"
		return 1
	}
}

# machine_checks CONSOLE: the kernel saw the machine the VMM describes.
machine_checks() {
	grep -q "Linux version 6\.1" "$1" || fail "no 'Linux version' line in $1"
	grep -q "found SMP MP-table" "$1" || fail "the kernel did not find the MP table"
	grep -Eq "ttyS0 at I/O 0x3f8 \(irq = 4" "$1" ||
		fail "the console UART does not run on IRQ 4: $(grep ttyS0 "$1")"
}

# ftd_start NAME ROLE ARGS...: on loopback (or in namespace $IN_NS: ip netns exec,
# which execs, so the pid is ftd's); NAME names log, console, socket, state.
IN_NS=
ftd_start() {
	local name=$1 role=$2 pre=() slow=()
	shift 2
	[ -n "$IN_NS" ] && pre=(ip netns exec "$IN_NS")
	[ "$role" = run ] || slow=("${SLOW_TIMEOUT[@]}")
	"${pre[@]}" "$FTD" "$role" --control "$TMP/$name.sock" --state-dir "$TMP/state.$name" --quiet \
		--console "$TMP/con.$name" "${slow[@]}" "$@" 2>"$TMP/log.$name" </dev/null 9>&- &
	PID[$name]=$!
	PIDS+=("$!")
	wait_log "$name" "listening on|: running " 20
}

# On kvm_pvm a Linux guest needs the bitmap (docs/linux.md; ftd refuses the
# ring there); elsewhere the ring, as for every guest. Both sides, as the
# handshake compares it.
TRACKING=ring
[ -e /sys/module/kvm_pvm ] && TRACKING=bitmap
TRACKING=${FT_LINUX_TRACKING:-$TRACKING}
guest_args() {
	echo --kernel "$KERNEL" --initrd "$INITRD" --mem "$MEM" --vcpus 1 --tracking "$TRACKING"
}

# new_disk NAME: a fresh sparse image $TMP/disk.NAME for `--disk`. 1 MiB holds the
# init's 1024 record sectors; `ftd primary --verify` hashes the whole image in every
# pause, and with 16 MiB the kernel took 83 s of guest time to the init instead of 38.
DISK_SIZE=${FT_LINUX_DISK_SIZE:-1M}
new_disk() {
	rm -f "$TMP/disk.$1"
	truncate -s "$DISK_SIZE" "$TMP/disk.$1" || fail "cannot make $TMP/disk.$1"
}

# check_disk IMAGE STREAM OLD_PRIMARY_LAST: every init line of STREAM has its
# record on IMAGE (tests/linux/disk_check.py); sets DISK_REPORT to its summary.
check_disk() {
	DISK_REPORT=$(python3 "$HERE/linux/disk_check.py" "$1" "$2" --old-primary-last "$3") ||
		fail "the disk records on $1: $DISK_REPORT"
	DISK_REPORT=${DISK_REPORT#disk_check: }
}


base() { sed -n 's/.*committed output from stream offset \([0-9]*\).*/\1/p' "$TMP/log.$1" | head -1; }

# boot_time NAME T0_MS: what the boot took, as the init and the wall clock saw it.
boot_report() {
	local ms
	ms=$(tr -d '\r' <"$TMP/con.$1" | sed -n 's/^ringft-init: started pid 1, boot took \([0-9]*\) ms.*/\1/p')
	echo "${ms:-?} ms of guest time to the init"
}

case_init() {
	local t0 t1
	new_disk r
	t0=$(now_ms)
	# shellcheck disable=SC2046 # option lists
	ftd_start r run $(guest_args) --disk "$TMP/disk.r" --cmdline "$CMDLINE" --interval "$INTERVAL"
	wait_lines r 1 120
	t1=$(now_ms)
	wait_lines r 30 30
	stop r
	check_console "$TMP/con.r" 30 || fail "boot: the console is not right"
	machine_checks "$TMP/con.r"
	check_disk "$TMP/disk.r" "$TMP/con.r" 0
	echo "ok: boot: the init's first line $((t1 - t0)) ms after ftd started ($(boot_report r));" \
		"$(last_line "$TMP/con.r") lines consecutive and ok, no kernel trouble; disk: $DISK_REPORT"
	grep -h "Guest: " "$TMP/log.r" | sed 's/^/  host fallback: /'
	grep "summary:" "$TMP/log.r" | sed 's/^/  /'
}

# failover_round AUTO: a protected pair, kill -9, promotion, the stream checked.
# AUTO empty: loopback and `ftctl failover`; "cluster": node1/node2 of tests/cluster.sh.
failover_round() {
	local auto=$1 t_kill t_up n n_a stopped=0 mism ck verified=""
	# Each side its own fresh image: b's is synced from a's and then receives
	# the guest's writes with every checkpoint.
	new_disk a
	new_disk b
	if [ -n "$auto" ]; then
		# shellcheck disable=SC2046 # option lists
		spawn b node2 secondary --listen "$(cl_addr node2):$PORT" --cluster t \
			--cluster-wait "$CLUSTER_WAIT" $(pki_args node2) --mem "$MEM" --vcpus 1 \
			--tracking "$TRACKING" --disk "$TMP/disk.b"
		# shellcheck disable=SC2046 # option lists
		spawn a node1 primary --peer "$(cl_addr node2):$PORT" --cluster t \
			--cluster-wait "$CLUSTER_WAIT" $(pki_args node1) $(guest_args) \
			--disk "$TMP/disk.a" --cmdline "$CMDLINE ringft.disk_slots=8" --interval "$INTERVAL"
	else
		ftd_start b secondary --listen "127.0.0.1:$PORT" --mem "$MEM" --vcpus 1 --tracking "$TRACKING" \
			--disk "$TMP/disk.b"
		# --verify hashes all 128 MiB (and the image) at every checkpoint
		# (about 20 ms here, a second or more when emulated): a longer
		# interval leaves the guest most of the time.
		local vint=40ms
		emulated && vint=1s
		# shellcheck disable=SC2046 # option lists
		ftd_start a primary --peer "127.0.0.1:$PORT" $(guest_args) --disk "$TMP/disk.a" \
			--cmdline "$CMDLINE" --interval $vint --verify
	fi
	wait_log b "Replica holds checkpoint" 60
	# The boot and some of the init's lines, every checkpoint verified.
	wait_lines a 10 150
	sleep "$((RANDOM % 3)).$((RANDOM % 10))"
	if [ -z "$auto" ]; then
		"$FTCTL" --socket "$TMP/a.sock" status --json >"$TMP/st.a" 2>&1 ||
			fail "status of a: $(cat "$TMP/st.a")"
		mism=$(grep -o '"mismatches": *[0-9]*' "$TMP/st.a" | grep -o '[0-9]*$')
		ck=$(grep -o '"verified": *[0-9]*' "$TMP/st.a" | grep -o '[0-9]*$')
		{ [ "${mism:-x}" = 0 ] && [ "${ck:-0}" -gt "$(rate_floor 100)" ]; } ||
			fail "--verify: ${mism:-?} mismatches in ${ck:-?} verified checkpoints: $(cat "$TMP/st.a")"
		verified="$ck checkpoints verified with 0 mismatches; "
	fi
	n=$(last_line "$TMP/con.a")
	t_kill=$(now_ms)
	kill_active "${PID[a]}" "${PID[b]}" && stopped=1
	wait "${PID[a]}" 2>/dev/null
	n_a=$(last_line "$TMP/con.a")
	promote_after_kill b "$auto"
	t_up=$(now_ms)
	wait_lines b $((n + 20)) 60
	stop b
	stream_join "$TMP/stream" "$TMP/con.a:0" "$TMP/con.b:$(base b)" ||
		fail "the consoles of a and b do not join"
	check_console "$TMP/stream" $((n + 20)) || fail "the joined console stream is not right"
	machine_checks "$TMP/stream"
	# Both ftds are gone: b's image is what the promoted guest left on it.
	check_disk "$TMP/disk.b" "$TMP/stream" "$n_a"
	echo "ok: ${auto:-manual} failover: ${verified}kill -9 at init" \
		"line $n (secondary stopped around it: $stopped), promoted $((t_up - t_kill)) ms later;" \
		"$(last_line "$TMP/stream") init lines exactly once, ok, time never back, no kernel trouble;" \
		"$(boot_report a); disk of the promoted side: $DISK_REPORT"
}

case_failover() {
	failover_round ""
}

case_cluster() {
	cluster_test ftlx "/usr/bin/test -e /run/ftd/cluster-t.active"
	failover_round cluster
}

# spawn NAME NODE ROLE ARGS...: ftd inside a cluster node's namespaces.
spawn() {
	local name=$1 node=$2 role=$3
	shift 3
	cluster_spawn "$node" "$FTD" "$role" --control "$TMP/$name.sock" \
		--state-dir "$TMP/state.$name" --quiet --console "$TMP/con.$name" "${SLOW_TIMEOUT[@]}" "$@" \
		2>"$TMP/log.$name" 9>&- </dev/null || fail "cannot start $name in $node"
	PID[$name]=$CLUSTER_SPAWNED
	PIDS+=("$CLUSTER_SPAWNED")
	wait_log "$name" "listening on|: running " 20
}
cl_addr() { _cluster_addr "$1"; }

# ---- net -------------------------------------------------------------------------------
case_net() {
	local mac t_kill t_up n stopped=0 page ep rc gap tls_a tls_b
	. "$HERE/netns.sh"
	trap 'cleanup; net_down' EXIT
	why=$(net_can 2>&1) || skip_or_fail "$why"
	command -v curl >/dev/null || skip_or_fail "missing curl (apt-get install curl)"
	mac=$(printf '52:54:00:%02x:%02x:%02x' $((RANDOM % 256)) $((RANDOM % 256)) $((RANDOM % 256)))
	# shellcheck disable=SC2034 # lib.sh's pki_* read it
	C=$TMP/pki
	pki_ca ca
	pki_cert hosta ca
	pki_cert hostb ca
	read -ra tls_a <<<"$(pki_args hosta)"
	read -ra tls_b <<<"$(pki_args hostb)"
	net_up || fail "cannot build the topology"
	IN_NS=$(net_ns b)
	ftd_start b secondary --listen "$NET_REPL_B:$PORT" --net "tap=$NET_TAP,mac=$mac" \
		--mem "$MEM" --vcpus 1 --tracking "$TRACKING" "${tls_b[@]}"
	IN_NS=$(net_ns a)
	# shellcheck disable=SC2046 # option lists
	ftd_start a primary --peer "$NET_REPL_B:$PORT" --net "tap=$NET_TAP,mac=$mac" $(guest_args) \
		--cmdline "$CMDLINE ip=$NET_GUEST_IP::$NET_GATEWAY:255.255.255.0::eth0:off ringft.net=1" \
		--interval "$INTERVAL" "${tls_a[@]}"
	wait_log b "Replica holds checkpoint" 60
	wait_lines a 1 150
	grep -q "ringft-init: net up $NET_GUEST_IP" "$TMP/con.a" ||
		fail "the guest's network did not come up: $(grep -E 'ringft-init|virtio|eth0|IP-Config' "$TMP/con.a")"
	page=$(net_exec client curl -s --max-time "$(time_limit 30)" "http://$NET_GUEST_IP/") ||
		fail "curl http://$NET_GUEST_IP/ from the client failed: $(tail -c 800 "$TMP/con.a")"
	[ "$page" = "ringft Linux test guest" ] || fail "httpd served '$page'"
	rm -f "$TMP/stop"
	net_exec client /usr/bin/python3 "$HERE/echo_check.py" "$NET_GUEST_IP" 7 \
		--timeout "$(time_limit 30)" --stop-file "$TMP/stop" >"$TMP/echo" 2>&1 &
	ep=$!
	PIDS+=("$ep")
	if ! wait_for "$TMP/echo" "echo_check: progress" 60; then
		# The NIC's counters and output-commit state, twice: which side stopped.
		net_json() { "$FTCTL" --socket "$TMP/a.sock" status --json 2>&1 | tr -d ' \n' | head -c 4000; }
		fail "echo client: $(cat "$TMP/echo"); a: $(net_json); 2 s later: $(sleep 2 && net_json)"
	fi
	sleep "$((RANDOM % 2)).$((RANDOM % 10))"
	n=$(last_line "$TMP/con.a")
	t_kill=$(now_ms)
	kill_active "${PID[a]}" "${PID[b]}" && stopped=1
	wait "${PID[a]}" 2>/dev/null
	wait_log b "Primary lost: waiting for an operator" 15
	"$FTCTL" --socket "$TMP/b.sock" failover >"$TMP/out" 2>&1 || fail "ftctl failover: $(cat "$TMP/out")"
	t_up=$(now_ms)
	net_wait_mac_host "$mac" b 2 || fail "the guest's MAC did not move to B's port within 2 s"
	wait_lines b $((n + 20)) 60
	page=$(net_exec client curl -s --max-time "$(time_limit 30)" "http://$NET_GUEST_IP/") ||
		fail "curl after the failover failed"
	[ "$page" = "ringft Linux test guest" ] || fail "httpd served '$page' after the failover"
	touch "$TMP/stop"
	wait "$ep"
	rc=$?
	grep -v progress "$TMP/echo"
	[ $rc = 0 ] || fail "the echo connection did not survive the failover (secondary stopped: $stopped)"
	stop b
	stream_join "$TMP/stream" "$TMP/con.a:0" "$TMP/con.b:$(base b)" ||
		fail "the consoles of a and b do not join"
	check_console "$TMP/stream" $((n + 20)) || fail "the joined console stream is not right"
	gap=$(sed -n 's/.*longest wait \([0-9]*\) ms.*/\1/p' "$TMP/echo")
	echo "ok: net: the guest's Linux TCP stack served curl and one echo connection through kill -9" \
		"(secondary stopped: $stopped) and a failover $((t_up - t_kill)) ms later: no reset, every" \
		"byte once in order, longest echo wait $gap ms; MAC on B's port"
}

"case_$CASE"
