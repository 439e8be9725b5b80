#!/bin/bash
# Mutual TLS on the replication link (--tls-cert, --tls-key, --tls-ca):
#  1. a primary and a secondary with certificates from one CA replicate with
#     --verify through a recording proxy: every checkpoint byte-equal;
#  2. against that secondary: no TLS at all, a certificate from another CA, an
#     expired certificate, one from the right CA naming another host
#     (--tls-peer), the recorded session replayed: each refused with its own
#     log line, the secondary still serving, its replica untouched (same
#     checkpoint and memory hash at the end as after 1);
#  3. a primary that does not trust the secondary's CA refuses it;
#  4. a flipped bit in the encrypted stream (a proxy) ends the session with
#     its own log line, on a secondary of its own: the good primary's goodbye
#     released the first one's copy, which a new guest's sync may replace;
#  5. a key readable by others is refused, and so is replication in the clear
#     beyond loopback unless --insecure (which warns).
# Usage: test_tls.sh PATH_TO_FTD PATH_TO_FT_PROXY
set -u
FTD=${1:?usage: test_tls.sh FTD FT_PROXY}
PROXY=${2:?usage: test_tls.sh FTD FT_PROXY}
. "$(dirname "$0")/lib.sh"
require_kvm
command -v openssl >/dev/null || fail "openssl is not installed (scripts/deps.sh)"
PORT=$((19000 + RANDOM % 400))

# ---- certificates (pki_* in lib.sh) ----------------------------------------------------
C=$TMP/pki
pki_ca ca
pki_ca rogue
pki_cert pri ca
pki_cert sec ca
pki_cert impostor rogue
pki_cert other ca
PKI_CN=pri pki_cert old ca -startdate 20200101000000Z -enddate 20200102000000Z
tls() { pki_args "$@"; }
# The secondary wants its primary to be "pri"; primaries want "sec".
ptls() { echo $(pki_args "$@") --tls-peer sec; }

# The emulated machine's CPU hashes a --verify checkpoint for seconds, past a
# 2 s --timeout: 10 s there.
TIMEOUT=2s
emulated && TIMEOUT=10s

# primary NAME PEER_PORT SECONDS ARGS...: a primary with --verify, waited for.
primary() {
	local name=$1 port=$2 secs=$3
	shift 3
	"$FTD" primary --peer 127.0.0.1:"$port" --mem 64M --vcpus 2 --quiet --verify --timeout $TIMEOUT \
		--duration "$secs" --control "$TMP/$name.sock" --console /dev/null "$@" 2>"$TMP/$name.log"
}
refusals() { grep -c "Refusing 127.0.0.1" "$TMP/sec.log"; }
# expect_refusal WHAT REGEX: the secondary logged one more refusal, matching REGEX.
expect_refusal() {
	wait_for "$TMP/sec.log" "Refusing 127.0.0.1:[0-9]+: .*$2" 10 ||
		fail "$1: the secondary did not refuse it: $(tail -3 "$TMP/sec.log")"
	echo "ok: $1: $(grep -E "Refusing 127.0.0.1:[0-9]+: .*$2" "$TMP/sec.log" | tail -1 | sed 's/^ftd: //')"
}

"$FTD" secondary --listen 127.0.0.1:$PORT --mem 64M --vcpus 2 --quiet --timeout $TIMEOUT \
	--control "$TMP/sec.sock" --console /dev/null $(tls sec) --tls-peer pri 2>"$TMP/sec.log" &
SEC=$!
PIDS+=("$SEC")
wait_for "$TMP/sec.log" "listening on" 10 || fail "secondary: $(cat "$TMP/sec.log")"
grep -q "mutual TLS 1.3" "$TMP/sec.log" || fail "the secondary does not say it uses TLS"

# ---- 1. replication through a recording proxy ------------------------------------------
"$PROXY" $((PORT + 1)) 127.0.0.1:$PORT record "$TMP/session.rec" &
PIDS+=("$!")
sleep 0.2
# 4 s; 15 s when emulated, where the initial sync alone takes seconds.
good_for=4s
emulated && good_for=15s
primary good $((PORT + 1)) $good_for $(ptls pri) ||
	fail "good primary exited $?: $(grep -vE '^ftd: (summary|pause p50|live harvests|[0-9]+ console bytes)' "$TMP/good.log" | tail -5)"
v=$(summary_field "$TMP/good.log" "\(([0-9]+) verified")
m=$(summary_field "$TMP/good.log" "verified, ([0-9]+) mismatches")
[ "${v:-0}" -ge "$(rate_floor 100)" ] && [ "$m" = 0 ] || fail "over TLS: $v verified, $m mismatches"
wait_for "$TMP/sec.log" "primary gone: replica at checkpoint" 5 || fail "session did not end"
grep -q "said goodbye: primary shutting down" "$TMP/sec.log" ||
	fail "the good primary's goodbye did not reach the secondary: $(grep -v stats "$TMP/sec.log" | tail -3)"
after=$(grep -o "replica at checkpoint [0-9]*, memory xxh3 [0-9a-f]*" "$TMP/sec.log" | tail -1)
echo "ok: over mutual TLS: $v checkpoints verified byte-equal, 0 mismatches ($after)"

# ---- 2. refused ------------------------------------------------------------------------
primary plain $PORT 2s
expect_refusal "a primary without TLS" "TLS handshake failed"
primary impostor $PORT 2s $(ptls impostor)
expect_refusal "a certificate from another CA" "certificate is not accepted: unable to get local issuer certificate"
primary old $PORT 2s $(ptls old)
expect_refusal "an expired certificate" "certificate is not accepted: certificate has expired"
primary other $PORT 2s $(ptls other)
expect_refusal "a certificate from our CA for another host (--tls-peer pri)" "certificate is not accepted: hostname mismatch"
r=$(refusals)
"$PROXY" - 127.0.0.1:$PORT replay "$TMP/session.rec" || fail "replay"
wait_for "$TMP/sec.log" "Refusing 127.0.0.1:[0-9]+: TLS handshake failed" 10 &&
	[ "$(refusals)" -gt "$r" ] || fail "a replayed session was not refused: $(tail -3 "$TMP/sec.log")"
echo "ok: the recorded session replayed: $(grep "TLS handshake failed" "$TMP/sec.log" | tail -1 | sed 's/^ftd: //')"
[ "$(grep -c "connected (guest" "$TMP/sec.log")" = 1 ] ||
	fail "a refused peer got as far as the handshake: $(grep "connected (guest" "$TMP/sec.log")"

# ---- 3. the primary checks the secondary too -------------------------------------------
primary distrust $PORT 2s $(ptls pri rogue)
grep -q "connection to the secondary failed: TLS: the peer's certificate is not accepted" \
	"$TMP/distrust.log" || fail "a primary trusting another CA: $(tail -3 "$TMP/distrust.log")"
echo "ok: a primary that does not trust the secondary's CA: $(grep -o "connection to the secondary failed: [^;]*" "$TMP/distrust.log" | head -1)"

kill -TERM "$SEC"
wait "$SEC" || fail "secondary exited $?"
end=$(grep -o "stopping: replica at checkpoint [0-9]*, memory xxh3 [0-9a-f]*" "$TMP/sec.log" | sed 's/^stopping: //')
[ "$end" = "$after" ] || fail "the replica changed: '$after' after the good session, '$end' at the end"
echo "ok: the secondary served throughout; its replica is untouched ($end)"

# ---- 4. a flipped bit ------------------------------------------------------------------
"$FTD" secondary --listen 127.0.0.1:$((PORT + 3)) --mem 64M --vcpus 2 --quiet --timeout $TIMEOUT \
	--control "$TMP/sec2.sock" --console /dev/null $(tls sec) --tls-peer pri 2>"$TMP/sec2.log" &
SEC=$!
PIDS+=("$SEC")
wait_for "$TMP/sec2.log" "listening on" 10 || fail "second secondary: $(cat "$TMP/sec2.log")"
"$PROXY" $((PORT + 2)) 127.0.0.1:$((PORT + 3)) flip 100000 &
PIDS+=("$!")
sleep 0.2
# 3 s carry the first 100000 bytes past the proxy; an emulated CPU needs longer.
flipped_for=3s
emulated && flipped_for=15s
primary flipped $((PORT + 2)) $flipped_for $(ptls pri)
wait_for "$TMP/sec2.log" "TLS record refused" 10 || fail "a flipped bit: $(tail -3 "$TMP/sec2.log")"
kill -0 "$SEC" || fail "the secondary died of a flipped bit"
kill -TERM "$SEC"
wait "$SEC" || fail "the second secondary exited $?"
echo "ok: a flipped bit in the encrypted stream: $(grep "TLS record refused" "$TMP/sec2.log" | tail -1 | sed 's/^ftd: //')"

# ---- 5. keys and clear text -----------------------------------------------------------
cp "$C/sec.key" "$TMP/open.key"
chmod 644 "$TMP/open.key"
"$FTD" secondary --listen 127.0.0.1:$PORT --mem 64M --tls-cert "$C/sec.pem" --tls-key "$TMP/open.key" \
	--tls-ca "$C/ca.pem" --control "$TMP/x.sock" 2>"$TMP/x.log"
rc=$?
[ $rc = 2 ] && grep -q "is readable by others (mode 0644): refusing it" "$TMP/x.log" ||
	fail "a key readable by others: exit $rc, $(cat "$TMP/x.log")"
echo "ok: $(sed 's/^ftd: //' "$TMP/x.log")"
"$FTD" secondary --listen 0.0.0.0:$PORT --mem 64M --control "$TMP/x.sock" 2>"$TMP/x.log"
rc=$?
[ $rc = 2 ] && grep -q "Refusing to replicate in the clear with 0.0.0.0:$PORT" "$TMP/x.log" ||
	fail "clear text beyond loopback: exit $rc, $(cat "$TMP/x.log")"
echo "ok: $(sed 's/^ftd: //' "$TMP/x.log")"
"$FTD" secondary --listen 0.0.0.0:$PORT --mem 64M --insecure --duration 1s --quiet \
	--control "$TMP/x.sock" 2>"$TMP/x.log" || fail "--insecure: exit $?: $(cat "$TMP/x.log")"
grep -q "insecure: replication with 0.0.0.0:$PORT is neither authenticated nor encrypted" \
	"$TMP/x.log" || fail "--insecure does not warn: $(cat "$TMP/x.log")"
echo "ok: --insecure starts, with a warning"
exit 0
