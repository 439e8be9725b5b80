# Shared by the integration tests (sourced). Exit codes: 0 pass, 77 skip, 1 fail.
TMP=$(mktemp -d)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	# KEEP_TMP=1 keeps the logs for a look after a failure.
	[ -n "${KEEP_TMP:-}" ] && echo "logs kept in $TMP" >&2 || rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# expect_usage_error EXPECTED ARGS...: "$FTD" ARGS exits 2 (a bad command
# line or configuration) with EXPECTED in what it wrote to stderr.
expect_usage_error() {
	local want=$1 rc
	shift
	"$FTD" "$@" >"$TMP/out" 2>"$TMP/err"
	rc=$?
	[ $rc -eq 2 ] || fail "ftd $*: exit $rc, expected 2: $(cat "$TMP/err")"
	grep -qF -- "$want" "$TMP/err" || fail "ftd $*: stderr lacks '$want': $(cat "$TMP/err")"
}

# emulated: true inside scripts/kvm-vm.sh's emulated machine (FT_KVM_EMULATED=1),
# where the CPU is slow and the tests that wait on it wait longer.
emulated() { [ "${FT_KVM_EMULATED:-}" = 1 ]; }

# SLOW_TIMEOUT: ftd options for a pair whose peer may be busy for seconds (a
# --verify checkpoint, a sync): none, or --timeout 10s when emulated. Given
# before a test's own options, so that an explicit --timeout wins.
# CLUSTER_WAIT: --cluster-wait, never shorter than that --timeout.
SLOW_TIMEOUT=()
CLUSTER_WAIT=${FT_CLUSTER_WAIT:-7s}
if emulated; then
	SLOW_TIMEOUT=(--timeout 10s)
	CLUSTER_WAIT=${FT_CLUSTER_WAIT:-12s}
fi

# rate_floor N [MIN]: the floor for a count that depends on the CPU's speed (the
# checkpoints verified in a fixed time): N, or N/50 but at least MIN (2) in
# scripts/kvm-vm.sh's emulated machine (FT_KVM_EMULATED=1), whose CPU is one to
# two orders of magnitude slower (--verify hashes all guest memory at every
# checkpoint: 3 in 8 s there). Such floors only show that the work goes on;
# rates are bench/'s to measure, on real hardware.
rate_floor() {
	local f=$1
	if emulated; then
		f=$(($1 / 50))
		[ $f -ge "${2:-2}" ] || f=${2:-2}
	fi
	echo $f
}

# time_limit SECONDS: the limit of a wait on the guest or on daemons that
# work with it: SECONDS, or four times as much in the emulated machine. Limits
# only bound a hang; what a test measures stays a count or an order.
time_limit() {
	if emulated; then echo $(($1 * 4)); else echo "$1"; fi
}

require_kvm() {
	if ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ]; then
		[ "${FT_REQUIRE_KVM:-}" = 1 ] && fail "FT_REQUIRE_KVM=1 but /dev/kvm is not usable"
		echo "skipped: no /dev/kvm"
		exit 77
	fi
}

# check_bank FILE VCPUS [MIN_LINES]: every complete bank line ok, iter
# consecutive per vCPU from 0 (no gap, no repeat), at least MIN_LINES lines
# each (rate_floor 10: a vCPU of an emulated CPU prints a few in a short run).
# A last line without its newline was cut by the exit.
check_bank() {
	if [ -n "$(tail -c1 "$1")" ]; then head -n -1 "$1"; else cat "$1"; fi |
		awk -v n="$2" -v min="${3:-$(rate_floor 10)}" '
	/^bank / {
		if ($0 !~ /^bank vcpu=[0-9]+ iter=[0-9]+ sum=[0-9]+ moves=[0-9]+ (ok|FAIL)$/) {
			print "malformed: " $0; bad = 1; next
		}
		split($2, v, "="); split($3, it, "=");
		if ($NF != "ok") { print "not ok: " $0; bad = 1 }
		want = (v[2] in last) ? last[v[2]] + 1 : 0
		if (it[2] != want) { print "vcpu " v[2] ": iter " it[2] ", expected " want; bad = 1 }
		last[v[2]] = it[2]; lines[v[2]]++
	}
	END {
		for (i = 0; i < n; i++) if (lines[i] < min) { print "vcpu " i ": " lines[i] " lines"; bad = 1 }
		exit bad
	}'
}

# wait_for FILE PATTERN SECONDS: until an extended regex matches a line of FILE
# (SECONDS is a time_limit, as in every wait_* helper: they bound hangs).
wait_for() {
	local deadline=$((SECONDS + $(time_limit "$3")))
	until grep -Eq -- "$2" "$1" 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.1
	done
}

# last_stat FILE KEY: the value of KEY= in the last statistics line of FILE.
last_stat() {
	grep 'stats state=' "$1" | tail -1 | sed -n "s/.* $2=\([0-9.]*\).*/\1/p"
}

# summary_field FILE REGEX: the first number captured by REGEX (sed -E) in the summary line.
summary_field() {
	grep 'summary:' "$1" | tail -1 | sed -En "s/.*$2.*/\1/p"
}

# stream_join and bank_tally: the guest console helpers shared with scripts/demo.
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/console.sh"

# Test certificates with openssl, in $C (set it first): pki_ca NAME makes a CA,
# pki_cert NAME CA [openssl ca options] a certificate it signs for CN NAME (or
# $PKI_CN) (keys mode 0600),
# pki_args NAME [CA] the ftd options that use them.
pki_key() {
	mkdir -p "$C"
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$C/$1.key" 2>/dev/null &&
		chmod 600 "$C/$1.key"
}
pki_ca() {
	pki_key "$1" &&
		openssl req -x509 -new -key "$C/$1.key" -out "$C/$1.pem" -days 30 -subj "/CN=$1" 2>/dev/null ||
		fail "openssl: CA $1"
}
pki_cert() {
	local name=$1 ca=$2
	shift 2
	pki_key "$name" &&
		openssl req -new -key "$C/$name.key" -out "$C/$name.csr" -subj "/CN=${PKI_CN:-$name}" 2>/dev/null ||
		fail "openssl: request for $name"
	printf '[ca]\ndefault_ca=c\n[c]\ndatabase=%s\nnew_certs_dir=%s\nserial=%s\ndefault_md=sha256\npolicy=p\ndefault_days=30\nunique_subject=no\n[p]\ncommonName=supplied\n' \
		"$C/index" "$C" "$C/serial" >"$C/ca.cnf"
	[ -e "$C/index" ] || { : >"$C/index"; echo 01 >"$C/serial"; }
	openssl ca -batch -config "$C/ca.cnf" -cert "$C/$ca.pem" -keyfile "$C/$ca.key" \
		-in "$C/$name.csr" -out "$C/$name.pem" "$@" >/dev/null 2>&1 ||
		fail "openssl ca: certificate for $name"
}
pki_args() { echo --tls-cert "$C/$1.pem" --tls-key "$C/$1.key" --tls-ca "$C/${2:-ca}.pem"; }

# cluster_test NAME [HEURISTICS]: the namespace cluster of tests/cluster.sh for
# an integration test: cluster NAME (with a qdevice heuristics command, if
# given), skipped (77) where namespaces are not available, its lock held on fd
# 9 (children started with 9>&- do not keep it), the cluster up, and
# certificates for node1 and node2 signed by one CA in $C (pki_args).
cluster_test() {
	export CLUSTER_NAME=$1
	export CLUSTER_DIR=$TMP/cluster
	[ -n "${2:-}" ] && export CLUSTER_QDEVICE_HEURISTICS=$2
	. "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"
	if ! why=$(cluster_can_namespace 2>&1); then
		[ "${FT_REQUIRE_KVM:-}" = 1 ] && fail "FT_REQUIRE_KVM=1 but $why"
		echo "skipped: $why"
		exit 77
	fi
	exec 9>"/tmp/ringft-cluster-$CLUSTER_NAME.lock"
	flock -w 150 9 || fail "another test holds the cluster lock"
	cluster_up 9>&- || fail "the cluster did not come up"
	C=$TMP/pki
	pki_ca ca
	pki_cert node1 ca
	pki_cert node2 ca
}

# join_incarnations FIRST COUNT OUT: the consoles con.1 .. con.COUNT in $TMP of
# one guest's successive ftd processes (con.FIRST from stream offset 0, each
# other one from the offset its log.K says; one that logged none, such as a
# refused primary, showed nothing) joined into OUT, as stream_join does.
join_incarnations() {
	local first=$1 count=$2 out=$3 k b args=("$TMP/con.$1:0")
	for ((k = 1; k <= count; k++)); do
		[ "$k" -eq "$first" ] && continue
		b=$(sed -n 's/.*committed output from stream offset \([0-9]*\).*/\1/p' "$TMP/log.$k" | head -1)
		[ -n "$b" ] && args+=("$TMP/con.$k:$b")
	done
	stream_join "$out" "${args[@]}"
}

# kill_active ACTIVE STANDBY: kill -9 of the active ftd; a third of the time
# with its secondary stopped around it, so that an epoch is in flight. Returns 0
# when it stopped the secondary.
kill_active() {
	if [ $((RANDOM % 3)) -eq 0 ]; then
		kill -STOP "$2"
		sleep 0.1
		kill -KILL "$1"
		sleep 0.05
		kill -CONT "$2"
		return 0
	fi
	kill -KILL "$1"
	return 1
}

# promote_after_kill NAME AUTO: once the active ftd is gone, the secondary
# NAME takes over: by the cluster (AUTO not empty) or by `ftctl failover` on
# $TMP/NAME.sock, which must answer that it promoted. Uses the caller's
# wait_log NAME REGEX SECONDS and $FTCTL.
promote_after_kill() {
	local name=$1 auto=$2
	if [ -n "$auto" ]; then
		wait_log "$name" "Promoted \(cluster" 30
		return
	fi
	wait_log "$name" "Primary lost: waiting for an operator" 15
	"$FTCTL" --socket "$TMP/$name.sock" failover >"$TMP/out" 2>&1 ||
		fail "ftctl failover on $name: $(cat "$TMP/out")"
	grep -Eq "^promoted: the guest runs here from checkpoint [0-9]+$" "$TMP/out" ||
		fail "ftctl failover on $name said: $(cat "$TMP/out")"
}

# stop NAME: SIGTERM to the process ${PID[NAME]} (the caller's associative
# array), then wait for it (KILL after 10 s).
stop() {
	local p=${PID[$1]} i
	kill -TERM "$p" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	return 0
}
