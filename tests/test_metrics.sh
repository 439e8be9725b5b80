#!/bin/bash
# --metrics-listen: Prometheus text over HTTP from both roles, scraped with curl.
#
#  1. A primary and its secondary on loopback, each serving metrics: both
#     scrapes pass `promtool check metrics` (when scripts/promtool.sh has put
#     it in .deps/), carry ftd_build_info with this ftd's version, ftd_role and
#     ftd_state, and the guest label on every sample; the primary's checkpoints
#     grow between two scrapes, the secondary has applied epochs; both have a
#     disk, and the primary serves its counters and its latency histogram
#     (ftd_disk_request_duration_seconds, every type at 0); idle clients
#     holding connections do not stop a scrape nor checkpoints.
#  2. Another path is 404, another method 405.
#  3. A second ftd on a metrics address in use exits non-zero, naming the
#     address, before its guest starts.
#  4. After kill -9 of the primary and `ftctl failover`, the promoted
#     secondary's endpoint serves a primary's metrics.
# Usage: test_metrics.sh PATH_TO_FTD PATH_TO_FTCTL
set -u
FTD=${1:?usage: test_metrics.sh FTD FTCTL}
FTCTL=${2:?usage: test_metrics.sh FTD FTCTL}
. "$(dirname "$0")/lib.sh"
require_kvm
command -v curl >/dev/null || fail "curl not found (scripts/deps.sh)"

PORT=$((19300 + RANDOM % 300 * 3)) # replication; PORT+1, PORT+2: metrics
SEC_M=127.0.0.1:$((PORT + 1))
PRI_M=127.0.0.1:$((PORT + 2))
PROMTOOL=${PROMTOOL:-$(dirname "$0")/../.deps/promtool}
[ -x "$PROMTOOL" ] || PROMTOOL=$(command -v promtool || true)
VERSION=$("$FTD" --version | sed -n 's/^ftd (ringft) //p')
[ -n "$VERSION" ] || fail "ftd --version: $("$FTD" --version 2>&1)"

scrape() { # ADDR OUT [PATH]: the body of GET http://ADDR/PATH (default metrics)
	curl -sf --max-time 3 -o "$2" "http://$1/${3:-metrics}" || fail "GET http://$1/${3:-metrics} failed"
}

sample() { # FILE REGEX: the value of the first sample line matching REGEX
	grep -E "$2" "$1" | head -1 | awk '{ print $NF }'
}

# check_scrape FILE ROLE STATE: the common metrics, the guest label, promtool.
check_scrape() {
	local f=$1
	grep -q "^ftd_build_info{guest=\"builtin:bank\",version=\"$VERSION\",protocol=\"[0-9]*\"} 1$" "$f" ||
		fail "$2: no ftd_build_info for $VERSION: $(head -5 "$f")"
	grep -q "^ftd_role{guest=\"builtin:bank\",role=\"$2\"} 1$" "$f" || fail "$2: ftd_role: $(grep ftd_role "$f")"
	grep -q "^ftd_state{guest=\"builtin:bank\",state=\"$3\"} 1$" "$f" ||
		fail "$2: ftd_state is not $3: $(grep 'ftd_state.* 1$' "$f")"
	! grep -Ev '^(#|$)' "$f" | grep -vq '{guest="builtin:bank"' ||
		fail "$2: samples without the guest label: $(grep -Ev '^(#|$)' "$f" | grep -v 'guest="' | head -3)"
	if [ -n "$PROMTOOL" ]; then
		"$PROMTOOL" check metrics <"$f" >"$TMP/promtool" 2>&1 ||
			fail "$2: promtool check metrics: $(cat "$TMP/promtool")"
	fi
}

# Both with a disk, so that its counters and latency histogram are scraped too.
truncate -s 1M "$TMP/p.img" "$TMP/s.img"
"$FTD" secondary --listen 127.0.0.1:$PORT --mem 64M --vcpus 1 --quiet --timeout 1s \
	--disk "$TMP/s.img" --control "$TMP/s.sock" --console "$TMP/con.s" --metrics-listen "$SEC_M" \
	2>"$TMP/log.s" &
SEC=$!
PIDS+=("$SEC")
wait_for "$TMP/log.s" "listening on" 10 || fail "secondary did not start: $(cat "$TMP/log.s")"
"$FTD" primary --peer 127.0.0.1:$PORT --guest builtin:bank --mem 64M --vcpus 1 --quiet \
	--interval 10ms --timeout 1s --disk "$TMP/p.img" --control "$TMP/p.sock" --console "$TMP/con.p" \
	--metrics-listen "$PRI_M" >/dev/null 2>"$TMP/log.p" &
PRI=$!
PIDS+=("$PRI")
wait_for "$TMP/log.p" "Protected: secondary" 15 || fail "never protected: $(tail -5 "$TMP/log.p")"
grep -q "metrics: Prometheus text at http://$PRI_M/metrics" "$TMP/log.p" ||
	fail "the primary did not say where its metrics are"

# ---- 1. both roles --------------------------------------------------------------------
# Idle clients (connected, sending nothing) hold slots of the server meanwhile.
exec 5<>/dev/tcp/127.0.0.1/$((PORT + 2)) 6<>/dev/tcp/127.0.0.1/$((PORT + 2)) ||
	fail "cannot connect to $PRI_M"
scrape "$PRI_M" "$TMP/m.p1"
sleep 0.5
scrape "$PRI_M" "$TMP/m.p2"
exec 5>&- 6>&-
check_scrape "$TMP/m.p2" primary protected
c1=$(sample "$TMP/m.p1" '^ftd_checkpoints_total\{')
c2=$(sample "$TMP/m.p2" '^ftd_checkpoints_total\{')
[ "${c1:-0}" -gt 0 ] && [ "${c2:-0}" -gt "$c1" ] || fail "checkpoints did not grow: ${c1:-?} then ${c2:-?}"
age=$(sample "$TMP/m.p2" '^ftd_last_ack_age_seconds\{')
awk -v a="${age:-x}" 'BEGIN { exit !(a ~ /^[0-9.]+$/ && a < 1) }' ||
	fail "ftd_last_ack_age_seconds: ${age:-none}"
grep -q '^ftd_output_held_bytes{guest="builtin:bank"} [0-9]*$' "$TMP/m.p2" || fail "no ftd_output_held_bytes"
grep -q '^ftd_protected{guest="builtin:bank"} 1$' "$TMP/m.p2" || fail "ftd_protected is not 1"
grep -q '^ftd_checkpoint_pause_seconds_bucket{guest="builtin:bank",le="+Inf"} [1-9]' "$TMP/m.p2" ||
	fail "no pause histogram"
# builtin:bank never uses its disk: every series there, at 0.
for t in read write flush; do
	for l in "_bucket{guest=\"builtin:bank\",type=\"$t\",le=\"0.0001\"} 0" \
		"_bucket{guest=\"builtin:bank\",type=\"$t\",le=\"+Inf\"} 0" \
		"_sum{guest=\"builtin:bank\",type=\"$t\"} 0.000000" "_count{guest=\"builtin:bank\",type=\"$t\"} 0"; do
		grep -qxF "ftd_disk_request_duration_seconds$l" "$TMP/m.p2" ||
			fail "no 'ftd_disk_request_duration_seconds$l': $(grep -m3 ftd_disk_request "$TMP/m.p2")"
	done
done
grep -q '^ftd_disk_requests_total{guest="builtin:bank",type="flush"} 0$' "$TMP/m.p2" ||
	fail "no disk request counters: $(grep -m3 ftd_disk_ "$TMP/m.p2")"

scrape "$SEC_M" "$TMP/m.s"
check_scrape "$TMP/m.s" secondary replicating
ep=$(sample "$TMP/m.s" '^ftd_epochs_applied_total\{')
[ "${ep:-0}" -gt 0 ] || fail "secondary: ${ep:-no} epochs applied"
for m in ftd_replica_checkpoint ftd_last_apply_age_seconds ftd_apply_seconds_count \
	ftd_replication_bytes_received_total ftd_refused_connections_total ftd_sessions_total; do
	grep -Eq "^$m\{guest=\"builtin:bank\"\} [0-9.]+$" "$TMP/m.s" || fail "secondary: no $m"
done
echo "ok: primary (checkpoints $c1 -> $c2, ACK ${age}s ago) and secondary ($ep epochs applied)" \
	"metrics${PROMTOOL:+, promtool check metrics passes}"
[ -n "$PROMTOOL" ] || echo "note: promtool not found (scripts/promtool.sh): format not checked"

# ---- 2. paths and methods -------------------------------------------------------------
code=$(curl -s --max-time 3 -o /dev/null -w '%{http_code}' "http://$PRI_M/")
[ "$code" = 404 ] || fail "GET / answered $code"
code=$(curl -s --max-time 3 -o /dev/null -w '%{http_code}' -X POST -d x "http://$PRI_M/metrics")
[ "$code" = 405 ] || fail "POST /metrics answered $code"
echo "ok: GET / is 404, POST /metrics 405"

# ---- 3. the address in use --------------------------------------------------------------
"$FTD" primary --peer 127.0.0.1:$((PORT + 3)) --guest builtin:bank --mem 64M --vcpus 1 --quiet \
	--control "$TMP/x.sock" --console "$TMP/con.x" --metrics-listen "$PRI_M" 2>"$TMP/log.x"
rc=$?
[ $rc -ne 0 ] || fail "a second ftd on $PRI_M exited 0"
grep -q "Cannot serve metrics on $PRI_M (--metrics-listen): Address already in use" "$TMP/log.x" ||
	fail "a second ftd on $PRI_M said: $(cat "$TMP/log.x")"
! grep -q "primary: running" "$TMP/log.x" && ! [ -s "$TMP/con.x" ] ||
	fail "the guest started although its metrics address was in use"
echo "ok: a second ftd on $PRI_M exits $rc: $(grep -o 'Cannot serve.*' "$TMP/log.x")"

# ---- 4. a promoted secondary serves a primary's metrics -------------------------------------
kill -KILL "$PRI"
wait "$PRI" 2>/dev/null
wait_for "$TMP/log.s" "Primary lost: waiting for an operator" 10 ||
	fail "the secondary did not notice the loss: $(tail -3 "$TMP/log.s")"
"$FTCTL" --socket "$TMP/s.sock" failover >"$TMP/out" 2>&1 || fail "ftctl failover: $(cat "$TMP/out")"
scrape "$SEC_M" "$TMP/m.a"
check_scrape "$TMP/m.a" primary unprotected
grep -q '^ftd_checkpoints_total{guest="builtin:bank"} [0-9]*$' "$TMP/m.a" ||
	fail "the promoted secondary serves no primary metrics: $(head -20 "$TMP/m.a")"
kill -TERM "$SEC"
wait "$SEC"
rc=$?
[ $rc -eq 0 ] || fail "the promoted secondary exited $rc: $(tail -3 "$TMP/log.s")"
echo "ok: after ftctl failover $SEC_M serves a primary's metrics (role primary, unprotected)"
