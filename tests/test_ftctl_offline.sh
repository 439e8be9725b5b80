#!/bin/bash
# ftctl without KVM: the real ftctl against fake ftd daemons, small python3
# servers on Unix sockets that answer as ftd's control socket does
# (daemon/control.c, daemon/status.c; the schema in ctl/README.md), and
# hostile ones. Exact exit codes and output: --version and usage errors;
# status of a primary and a secondary (human and --json); several instances in
# FTCTL_RUN_DIR with a stale socket among them (status, list, a command
# refused without a NAME), exactly one instance (no NAME needed); servers that
# close without answering, send garbage, an over-long line, an endless answer,
# never answer (ftctl gives up after 10 s) or refuse; --socket PATH; events.
# Exit 0 pass, 1 fail. Takes about 11 s (the 10 s of the silent servers run
# alongside the rest).
#
# Usage: test_ftctl_offline.sh FTCTL
set -u
FTCTL=$(realpath "${1:?usage: test_ftctl_offline.sh FTCTL}")
SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC/tests/lib.sh"
export TZ=UTC LC_ALL=C

VERSION=$(sed -n 's/^project(ringft VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
[ -n "$VERSION" ] || fail "no project version in $SRC/CMakeLists.txt"
ANSWER_TIMEOUT=10 # seconds: ctl/instance.c, ANSWER_TIMEOUT_MS

# ---- the fake daemons ----------------------------------------------------------------
# fake_ftd.py READY DIR:NAME:MODE[:FILE]...: one process (python starts slowly)
# serving every fake ftd, each on DIR/NAME.sock in a thread of its own; it
# touches READY once all listen, appends each request line NAME reads to
# $TMP/NAME.req, and answers each connection by MODE:
#   reply FILE  with FILE as is (one JSON line; several for events)
#   slow FILE   the same after 0.5 s
#   close       closes without reading or answering
#   garbage     "this is not json"
#   long        1 MiB of 'x' and a newline
#   flood       'x' without end, until the client goes away
#   hang        reads the request and never answers (holds the connection)
#   backlog     never accepts: its one-connection backlog is full, so connect() waits
#   stale       none: the socket file stays, nobody listens (an ftd killed by SIGKILL)
cat >"$TMP/fake_ftd.py" <<'EOF'
import os, socket, sys, threading, time

ready, specs = sys.argv[1], sys.argv[2:]


def request(c, log):
    buf = b""
    while b"\n" not in buf:
        d = c.recv(4096)
        if not d:
            break
        buf += d
    with open(log, "ab") as f:
        f.write(buf.split(b"\n")[0] + b"\n")


def serve(srv, mode, log, payload):
    held = []
    while True:
        c, _ = srv.accept()
        try:
            if mode == "close":
                c.close()
                continue
            request(c, log)
            if mode == "hang":
                held.append(c)
                continue
            if mode == "slow":
                time.sleep(0.5)
            if mode in ("reply", "slow"):
                c.sendall(payload)
            elif mode == "garbage":
                c.sendall(b"this is not json\n")
            elif mode == "long":
                c.sendall(b"x" * (1 << 20) + b"\n")
            elif mode == "flood":
                chunk = b"x" * 65536
                while True:
                    c.sendall(chunk)
        except OSError:
            pass
        c.close()


keep = []
for spec in specs:
    d, name, mode, *file = spec.split(":")
    path = os.path.join(d, name + ".sock")
    log = os.path.join(os.path.dirname(ready), name + ".req")
    payload = open(file[0], "rb").read() if file else b""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    if mode == "stale":
        srv.close()
        continue
    if mode == "backlog":
        srv.listen(0)
        filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        filler.connect(path)  # takes the backlog's only place
        keep += [srv, filler]
        continue
    srv.listen(16)
    threading.Thread(target=serve, args=(srv, mode, log, payload), daemon=True).start()
open(ready, "w").close()
while True:
    time.sleep(60)
EOF

# serve DIR NAME MODE [FILE]: a fake ftd on DIR/NAME.sock, once served runs.
SERVED=()
serve() {
	local IFS=:
	SERVED+=("$*")
}

# served: starts the fake ftds given to serve, and waits until they listen.
served() {
	local i
	python3 "$TMP/fake_ftd.py" "$TMP/ready" "${SERVED[@]}" 2>"$TMP/fake.err" &
	PIDS+=($!)
	for ((i = 0; i < 200; i++)); do
		[ -e "$TMP/ready" ] && return 0
		sleep 0.025
	done
	fail "the fake ftds did not start: $(cat "$TMP/fake.err")"
}

# run ARGS...: ftctl ARGS; $RC, and stdout and stderr in $TMP/out and $TMP/err.
run() {
	timeout 20 "$FTCTL" "$@" >"$TMP/out" 2>"$TMP/err"
	RC=$?
}

# expect RC STDOUT STDERR ARGS...: ftctl ARGS exits RC, writing exactly STDOUT
# and STDERR (each without its final newline; "" for nothing).
expect() {
	local want=$1 out=$2 err=$3
	shift 3
	run "$@"
	[ "$RC" -eq "$want" ] ||
		fail "ftctl $*: exit $RC, expected $want; stdout: $(cat "$TMP/out"); stderr: $(cat "$TMP/err")"
	[ "$(cat "$TMP/out")" = "$out" ] ||
		fail "ftctl $*: stdout:"$'\n'"$(cat "$TMP/out")"$'\n'"expected:"$'\n'"$out"
	[ "$(cat "$TMP/err")" = "$err" ] ||
		fail "ftctl $*: stderr:"$'\n'"$(cat "$TMP/err")"$'\n'"expected:"$'\n'"$err"
}

# json FILE PYTHON-EXPRESSION: true of the JSON in FILE (as j; the fake replies as a, b, s).
json() {
	python3 - "$1" "$2" "$TMP" <<'EOF' || fail "JSON check '$2' on: $(cat "$1")"
import json, sys
j = json.load(open(sys.argv[1]))
a, b, s = (json.load(open(f"{sys.argv[3]}/{n}.json")) for n in ("primary", "secondary", "solo"))
sys.exit(0 if eval(sys.argv[2]) else 1)
EOF
}

# requests NAME LINE...: the requests fake NAME received, in order.
requests() {
	local name=$1
	shift
	[ "$(cat "$TMP/$name.req" 2>/dev/null)" = "$(printf '%s\n' "$@")" ] ||
		fail "$name received:"$'\n'"$(cat "$TMP/$name.req" 2>/dev/null)"$'\n'"expected: $*"
	rm -f "$TMP/$name.req"
}

# Answers as daemon/status.c builds them ("ok" last, as daemon/control.c adds it).
UUID=6f1c0d2e-4b7a-4c1e-9a53-2f0e8d1b7c44
cat >"$TMP/primary.json" <<EOF
{"role":"primary","state":"protected","version":"$VERSION","protocol":5,"peer_protocol":5,"peer_version":"$VERSION","peer":"10.0.0.2:7788","guest":"builtin:bank","promoted_by":null,"epoch":4242,"checkpoints":4000,"acked":3999,"last_ack_age_ms":7,"interval_us":10000,"interval_auto":false,"live_harvests":12,"live_pages":34,"pause_us":{"p50":180,"p99":950,"max":2100},"dirty_pages_per_checkpoint":312,"bytes_sent":123456789,"bytes_per_s":2500000,"verified":3,"mismatches":0,"held_bytes":512,"disk":{"path":"/var/lib/ftd/vm1.img","size":1073741824,"reads":100,"writes":200,"flushes":30,"read_bytes":409600,"write_bytes":8192000,"errors":0,"inflight":1,"log_stalls":0,"latency_us":{"read":{"count":100,"p50":40,"p99":300,"max":900},"write":{"count":200,"p50":55,"p99":420,"max":1200},"flush":{"count":30,"p50":800,"p99":2500,"max":4000}},"sync_blocks":16,"sync_bytes":65536,"sync_ms":3},"console_offset":777,"sessions":1,"quorum":null,"frozen":false,"uuid":"$UUID","generation":3,"history":[2,1],"ok":true}
EOF
cat >"$TMP/secondary.json" <<EOF
{"role":"secondary","state":"replicating","version":"$VERSION","protocol":5,"peer_protocol":5,"peer_version":"$VERSION","stale":false,"peer":"10.0.0.1:40712","checkpoint":3557,"last_apply_age_ms":4,"epochs_applied":3600,"checkpoints":3557,"bytes_received":98765432,"verified":3,"mismatches":0,"refused":1,"sessions":2,"quorum":"yes","disk":{"path":"/var/lib/ftd/vm1.img","size":1073741824,"bytes_applied":8192000,"records_applied":200,"fdatasyncs":30,"apply_ms":12,"torn":false},"console_offset":777,"uuid":"$UUID","generation":3,"history":[2,1],"ok":true}
EOF
# A secondary waiting with nothing held, told that the primary moved on (no session: no peer versions).
cat >"$TMP/solo.json" <<EOF
{"role":"secondary","state":"waiting","version":"$VERSION","protocol":5,"stale":true,"stale_by_generation":4,"peer":null,"checkpoint":null,"last_apply_age_ms":null,"epochs_applied":0,"checkpoints":0,"bytes_received":0,"verified":0,"mismatches":0,"refused":0,"sessions":0,"quorum":null,"uuid":null,"generation":null,"history":[],"ok":true}
EOF
REFUSAL="the guest is not protected: nothing can take it over"
echo "{\"error\":\"$REFUSAL\",\"ok\":false}" >"$TMP/refuse.json"
# events --now: subscribed, the state, one change; then the daemon goes away.
cat >"$TMP/events.json" <<EOF
{"time_ms":1764806400123,"event":"subscribed"}
{"time_ms":1764806400124,"event":"state","status":$(sed 's/,"ok":true}$/}/' "$TMP/secondary.json")}
{"time_ms":1764806401500,"event":"peer-lost","peer":"10.0.0.1:40712","reason":"timeout"}
EOF

# What print_status (ctl/print.c) makes of them.
PRIMARY_SCREEN="primary builtin:bank: protected, secondary 10.0.0.2:7788
  ftd $VERSION, protocol 5 (peer: ftd $VERSION, protocol 5)
  guest $UUID, generation 3 (earlier: 2, 1)
  epoch 4242, 4000 checkpoints, 3999 acknowledged (last 7 ms ago), interval 10.000 ms
  pause p50 180 us, p99 950 us; 312 dirty pages per checkpoint; 123.5 MB sent, 2.5 MB/s
  verified 3, mismatches 0, output held 512 bytes, 1 sessions
  disk /var/lib/ftd/vm1.img (1024 MiB): 100 reads, 200 writes (8.2 MB), 30 flushes, 0 errors, 1 in flight; last sync sent 16 blocks (0.1 MB) in 3 ms
    latency (queue to used ring): write p50/p99 55/420 us, flush p50/p99/max 800/2500/4000 us"
SECONDARY_SCREEN="secondary: replicating, primary 10.0.0.1:40712
  ftd $VERSION, protocol 5 (peer: ftd $VERSION, protocol 5)
  replica at checkpoint 3557 (applied 4 ms ago)
  guest $UUID, generation 3 (earlier: 2, 1)
  3600 epochs applied, 3557 checkpoints, 98.8 MB received
  verified 3, mismatches 0, 1 connections refused, 2 sessions
  quorum yes
  disk /var/lib/ftd/vm1.img (1024 MiB): 8.2 MB in 200 records applied, 30 fdatasyncs, 12 ms writing"
SOLO_SCREEN="secondary: waiting, primary -
  ftd $VERSION, protocol 5
  replica holds no complete checkpoint, STALE: the primary moved on to generation 4 (never promoted automatically; failover needs --force)
  guest: none held
  0 epochs applied, 0 checkpoints, 0.0 MB received
  verified 0, mismatches 0, 0 connections refused, 0 sessions"

RUN=$TMP/run     # a primary, a secondary, a stale socket, a file that is no socket
ONE=$TMP/one     # exactly one instance
SLOW=$TMP/slow   # a primary and one that never answers
HOST=$TMP/host   # hostile and odd servers, by --socket
mkdir -m 0700 "$RUN" "$ONE" "$SLOW" "$HOST"
serve "$RUN" a reply "$TMP/primary.json"
serve "$RUN" b reply "$TMP/secondary.json"
serve "$RUN" c stale
touch "$RUN/notes.sock"
serve "$ONE" solo reply "$TMP/solo.json"
serve "$SLOW" p reply "$TMP/primary.json"
serve "$SLOW" q hang
for m in close garbage long flood hang backlog; do serve "$HOST" "$m" "$m"; done
serve "$HOST" refuse reply "$TMP/refuse.json"
serve "$HOST" slowpoke slow "$TMP/secondary.json"
serve "$HOST" events reply "$TMP/events.json"
served

# ---- 0. silent daemons, in the background meanwhile: ftctl gives up after 10 s ------------
# timed TAG ARGS...: ftctl ARGS in the background (FTCTL_RUN_DIR=$SLOW); its exit
# status and milliseconds taken in $TMP/TAG.rc, its output in $TMP/TAG.out/.err.
timed() {
	local tag=$1
	shift
	(
		start=$(date +%s%N)
		FTCTL_RUN_DIR=$SLOW timeout 14 "$FTCTL" "$@" >"$TMP/$tag.out" 2>"$TMP/$tag.err"
		rc=$?
		echo "$rc $((($(date +%s%N) - start) / 1000000))" >"$TMP/$tag.rc"
	) &
	TIMED+=($!)
}
TIMED=()
timed hang --socket "$HOST/hang.sock" status
timed backlog --socket "$HOST/backlog.sock" metrics
timed slowall status
timed slowlist list --json
timed slowq metrics q

# ---- 1. the command line ---------------------------------------------------------------
export FTCTL_RUN_DIR=$RUN
expect 0 "ftctl (ringft) $VERSION" "" --version
expect 2 "" "ftctl: no command given (see ftctl --help)"
expect 2 "" "ftctl: unknown command 'frobnicate' (see ftctl --help)" frobnicate
expect 2 "" "ftctl: unknown command 'frobnicate' (see ftctl --help)" frobnicate a
expect 2 "" "ftctl: status does not take --bogus (see ftctl --help)" status --bogus
expect 2 "" "ftctl: failover does not take --now (see ftctl --help)" failover --now
expect 2 "" "ftctl: unexpected argument 'b' (see ftctl --help)" metrics a b
expect 2 "" "ftctl: unknown setting 'speed' (known: interval)" set speed 5 a
expect 2 "" "ftctl: set needs interval DURATION|auto" set interval
expect 2 "" "ftctl: raw needs a REQUEST" raw
expect 2 "" "ftctl: protect needs --peer HOST:PORT" protect a
expect 2 "" "ftctl: protect --peer needs a value" protect a --peer
expect 2 "" "ftctl: give either --socket PATH or a NAME, not both" --socket "$RUN/a.sock" status a
expect 2 "" "ftctl: '../a' is not an instance name (the NAME of ftd@NAME; a socket elsewhere: --socket PATH)" status ../a
# A bad flag before the command: getopt's complaint, then the usage, on stderr.
run --bogus status
[ "$RC" -eq 2 ] && [ ! -s "$TMP/out" ] || fail "ftctl --bogus status: exit $RC, stdout: $(cat "$TMP/out")"
[ "$(head -2 "$TMP/err")" = "$FTCTL: unrecognized option '--bogus'
Usage: ftctl [--socket PATH] status [NAME...] [--json]" ] || fail "ftctl --bogus status: $(cat "$TMP/err")"
grep -q "^Exit status: 0 answered, 1 the daemon refused" "$TMP/err" || fail "ftctl --bogus: no usage: $(cat "$TMP/err")"
run --help
[ "$RC" -eq 0 ] && [ ! -s "$TMP/err" ] && [ "$(head -1 "$TMP/out")" = "Usage: ftctl [--socket PATH] status [NAME...] [--json]" ] ||
	fail "ftctl --help: exit $RC: $(cat "$TMP/out" "$TMP/err")"
grep -qxF "       ftctl [--socket PATH] list [NAME...] [--json]" "$TMP/out" ||
	fail "ftctl --help: list takes NAMEs (ctl/README.md): $(grep list "$TMP/out")"
for f in a b c; do [ ! -e "$TMP/$f.req" ] || fail "a usage error still asked $f: $(cat "$TMP/$f.req")"; done
echo "ok: --version, --help, usage errors (exit 2, nothing sent)"

# ---- 2. one primary, one secondary -------------------------------------------------------
expect 0 "a: $PRIMARY_SCREEN" "" status a
expect 0 "b: $SECONDARY_SCREEN" "" status b
expect 0 "$PRIMARY_SCREEN" "" --socket "$RUN/a.sock" status
expect 0 "$SECONDARY_SCREEN" "" --socket "$RUN/b.sock" status
requests a status status
requests b status status
run status a --json
[ "$RC" -eq 0 ] && [ ! -s "$TMP/err" ] && [ "$(wc -l <"$TMP/out")" = 1 ] || fail "status a --json: exit $RC: $(cat "$TMP/err")"
json "$TMP/out" 'j == a and list(j) == list(a)'
run --socket "$RUN/b.sock" status --json
[ "$RC" -eq 0 ] && [ ! -s "$TMP/err" ] || fail "--socket b status --json: exit $RC: $(cat "$TMP/err")"
json "$TMP/out" 'j == b and list(j) == list(b)'
run --json status b a
[ "$RC" -eq 0 ] || fail "status b a --json: exit $RC: $(cat "$TMP/err")"
json "$TMP/out" 'j == [dict(name="b", **b), dict(name="a", **a)] and all(list(i)[0] == "name" for i in j)'
expect 0 "b: $SECONDARY_SCREEN
a: $PRIMARY_SCREEN" "" status b a
requests a status status status
requests b status status status
echo "ok: status of a primary and a secondary, by NAME and --socket, human and --json"

# ---- 3. several instances, a stale socket among them --------------------------------------
expect 3 "a: $PRIMARY_SCREEN
b: $SECONDARY_SCREEN
c: not running" "" status
run status --json
[ "$RC" -eq 3 ] && [ ! -s "$TMP/err" ] || fail "status --json: exit $RC: $(cat "$TMP/err")"
json "$TMP/out" 'j == [dict(name="a", **a), dict(name="b", **b), {"name": "c", "ok": False, "running": False, "error": "Connection refused"}]'
expect 3 "a                primary    protected
b                secondary  replicating
c                -          not running" "" list
run list --json
[ "$RC" -eq 3 ] && [ ! -s "$TMP/err" ] || fail "list --json: exit $RC: $(cat "$TMP/err")"
json "$TMP/out" 'j == [{"name": "a", "running": True, "role": "primary", "state": "protected"}, {"name": "b", "running": True, "role": "secondary", "state": "replicating"}, {"name": "c", "running": False, "error": "Connection refused", "role": None, "state": None}]'
expect 0 "a                primary    protected
b                secondary  replicating" "" list a b
expect 3 "" "ftctl: cannot reach ftd at $RUN/c.sock: Connection refused (no ftd listens on it: a stale socket)" status c
expect 3 "" "ftctl: cannot reach ftd at $RUN/nosuch.sock: No such file or directory" status nosuch
expect 3 "" "ftctl: cannot reach ftd at $RUN/c.sock: Connection refused (no ftd listens on it: a stale socket)" failover c
requests a status status status status status
requests b status status status status status
for cmd in metrics start failover switchover discard "events" "set interval 5ms" "raw status" "protect --peer 10.0.0.9:7788"; do
	word=${cmd%% *}
	# shellcheck disable=SC2086 # the command's words
	expect 2 "" "ftctl: 3 ftd instances in $RUN: a, b, c; name one (ftctl $word NAME)" $cmd
done
for f in a b; do [ ! -e "$TMP/$f.req" ] || fail "a refused command still asked $f: $(cat "$TMP/$f.req")"; done
# raw: the answer re-serialised by json-c (compact, '/' escaped as json-c does).
RAW_A=$(python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":")).replace("/", "\\/"))' "$TMP/primary.json")
expect 0 "$RAW_A" "" raw status a
requests a status
# The request lines commands send (the fake answers a status to each: ftctl prints what it makes of it).
expect 0 "interval 10.000 ms" "" set interval 5ms a
expect 0 "promoted: the guest runs here from checkpoint 3557" "" failover b --force
expect 0 "protecting with 10.0.0.2:7788: the initial sync starts now (ftctl status shows progress)" "" \
	protect --peer 10.0.0.9:7788 --tls-peer node2 a
requests a "set interval 5ms" "protect --peer 10.0.0.9:7788 --tls-peer node2"
requests b "failover --force"
echo "ok: several instances: status and list (stale socket 'not running', exit 3), a NAME needed, requests"

# ---- 4. exactly one instance: no NAME needed ------------------------------------------------
export FTCTL_RUN_DIR=$ONE
expect 0 "solo: $SOLO_SCREEN" "" status
expect 0 "solo             secondary  waiting" "" list
expect 0 "-" "" metrics # the fake answers a status: no "text"
expect 0 "promoted: the guest runs here from checkpoint 0" "" failover
expect 0 "nothing to discard: the replica held no checkpoint" "" discard
run status --json
[ "$RC" -eq 0 ] || fail "status --json (one): exit $RC: $(cat "$TMP/err")"
json "$TMP/out" 'j == [dict(name="solo", **s)]'
requests solo status status metrics failover discard status
FTCTL_RUN_DIR=$TMP/none expect 3 "" "ftctl: no ftd instance in $TMP/none (none running, or give --socket PATH)" metrics
FTCTL_RUN_DIR=$TMP/none expect 3 "[]" "ftctl: no ftd instance in $TMP/none (none running, or give --socket PATH)" status --json
echo "ok: one instance takes commands without a NAME; none: exit 3"

# ---- 5. hostile and odd servers, by --socket ---------------------------------------------
H=$HOST
expect 3 "" "ftctl: ftd at $H/close.sock closed the connection without answering (not allowed to control it?)" \
	--socket "$H/close.sock" status
expect 3 "" "ftctl: ftd at $H/close.sock closed the connection without answering (not allowed to control it?)" \
	--socket "$H/close.sock" metrics
expect 3 "" "ftctl: the daemon's answer is not JSON: this is not json

ftctl: garbage: its answer is not JSON" --socket "$H/garbage.sock" status
expect 3 "" "ftctl: the daemon's answer is not JSON: this is not json" --socket "$H/garbage.sock" metrics
requests garbage status metrics
X200=$(printf 'x%.0s' {1..200})
expect 3 "" "ftctl: the daemon's answer is not JSON: $X200
ftctl: long: its answer is not JSON" --socket "$H/long.sock" status
expect 3 "" "ftctl: the daemon's answer is not JSON: $X200" --socket "$H/long.sock" raw status
requests long status status
(
	# 1 GB: ftctl must not grow with an endless answer (a sanitizer build
	# reserves terabytes of shadow address space: there the cap's message alone)
	ldd "$FTCTL" 2>/dev/null | grep -q 'lib[at]san' || ulimit -v 1000000
	expect 3 "" "ftctl: ftd at $H/flood.sock answered more than 4 MiB: not an ftd" --socket "$H/flood.sock" status
) || exit 1
expect 1 "" "ftctl: $REFUSAL" --socket "$H/refuse.sock" switchover
expect 1 "{\"error\":\"$REFUSAL\",\"ok\":false}" "" --socket "$H/refuse.sock" switchover --json
expect 1 "" "ftctl: refuse: $REFUSAL" --socket "$H/refuse.sock" status
expect 1 "{\"error\":\"$REFUSAL\",\"ok\":false}" "" --socket "$H/refuse.sock" status --json
expect 1 "refuse           -          $REFUSAL" "" --socket "$H/refuse.sock" list
expect 1 "[{\"name\":\"refuse\",\"running\":true,\"error\":\"$REFUSAL\",\"role\":null,\"state\":null}]" "" \
	--socket "$H/refuse.sock" list --json
requests refuse switchover switchover status status status status
expect 0 "$SECONDARY_SCREEN" "" --socket "$H/slowpoke.sock" status
expect 0 "00:00:00.123 subscribed
00:00:00.124 state role=secondary state=replicating peer=10.0.0.1:40712 checkpoint=3557 generation=3
00:00:01.500 peer-lost peer=10.0.0.1:40712 reason=timeout" "" --socket "$H/events.sock" events --now
expect 0 "$(cat "$TMP/events.json")" "" --socket "$H/events.sock" events --json
requests events "events --now" "events"
echo "ok: servers that close, send garbage, an over-long line, an endless answer, refuse, answer late; events"

# ---- 6. the silent ones: given up after 10 s, not hung --------------------------------------
for p in "${TIMED[@]}"; do wait "$p"; done
# check_timed TAG RC STDOUT STDERR: as expect, and taken within the bound.
check_timed() {
	local rc ms
	read -r rc ms <"$TMP/$1.rc"
	[ "$rc" -eq "$2" ] || fail "$1: exit $rc after $ms ms, expected $2 (124: still waiting at 14 s); stderr: $(cat "$TMP/$1.err")"
	[ "$ms" -ge $((ANSWER_TIMEOUT * 1000 - 200)) ] && [ "$ms" -le $((ANSWER_TIMEOUT * 1000 + 2000)) ] ||
		fail "$1: gave up after $ms ms, not ${ANSWER_TIMEOUT} s"
	[ "$(cat "$TMP/$1.out")" = "$3" ] || fail "$1: stdout:"$'\n'"$(cat "$TMP/$1.out")"$'\n'"expected:"$'\n'"$3"
	[ "$(cat "$TMP/$1.err")" = "$4" ] || fail "$1: stderr:"$'\n'"$(cat "$TMP/$1.err")"$'\n'"expected:"$'\n'"$4"
}
check_timed hang 3 "" "ftctl: ftd at $H/hang.sock did not answer within $ANSWER_TIMEOUT s"
check_timed backlog 3 "" "ftctl: ftd at $H/backlog.sock did not answer within $ANSWER_TIMEOUT s"
check_timed slowall 3 "p: $PRIMARY_SCREEN" "ftctl: ftd at $SLOW/q.sock did not answer within $ANSWER_TIMEOUT s"
check_timed slowlist 3 '[{"name":"p","running":true,"role":"primary","state":"protected"},{"name":"q","running":true,"error":"Connection timed out","role":null,"state":null}]' ""
check_timed slowq 3 "" "ftctl: ftd at $SLOW/q.sock did not answer within $ANSWER_TIMEOUT s"
echo "ok: servers that never answer (held, backlog full): exit 3 after ${ANSWER_TIMEOUT} s"
