#!/usr/bin/python3
"""Jepsen-style checker for a Redis-protocol server that must never lose or
retract an acknowledged write (issue 13: builtin:kv behind packet output
commit, while its primary is killed and the secondary takes over).

  kv_jepsen.py [--host H] [--port P] [--clients N] [--duration S]
               [--stop-file F] [--save HISTORY.json] [--min-acked N]
  kv_jepsen.py --check-only HISTORY.json [--older] [--host H] [--port P]
  kv_jepsen.py probe --trigger F [--host H] [--port P]
  kv_jepsen.py conns [--clients N] [--host H] [--port P]
  kv_jepsen.py flood --trigger F [--clients N] [--size B] [--count K]

Each of N connections (one thread each, one TCP connection for the whole run,
never reconnected) loops over: INCR of a shared counter, SET of a new unique
key to a unique value, now and then a SET that overwrites one of its own keys,
and a GET of one of its own acknowledged keys (read your writes). Every reply
is recorded with the time it arrived. A connection error (reset, refused, EOF,
timeout) or an error reply ends that connection and is a failure: the point of
the system under test is that clients never see one. The run ends after
--duration seconds, when --stop-file exists, or on SIGTERM/SIGINT; each
connection finishes its operation in flight (generous --timeout, a failover
may take seconds).

Then a new connection reads everything back (MGET, GET, DBSIZE) and checks:
  - every acknowledged SET is there with exactly its value, unless a later
    write of that key (acknowledged or in doubt) may have replaced it;
  - a key whose only write is in doubt (sent, no reply) holds that value or
    is absent; no key holds a value that no client wrote for it;
  - the counter is >= the acknowledged INCRs and <= acknowledged + in doubt,
    and >= every INCR reply;
  - each connection's INCR replies strictly increase, and no two INCR replies
    (any connections) are equal (a repeated one means a reply was retracted);
  - every GET of an acknowledged key returned its value;
  - DBSIZE is what it was at the start plus the keys of this run (no key
    appeared that no client wrote);
  - no connection saw an error.
Prints a summary (acknowledged writes, lost, resets, the longest time a
connection waited between two replies) and exits 1 on any violation, 2 on
bad usage or when the server cannot be reached at all at the start.

`probe` is for stall tests: one connection, PING, prints `connected`; waits
for --trigger to exist, sends SET probe:<id> <value> and prints `sent T`,
prints `reply T OK` when the reply comes (T: seconds since the epoch), then
GETs it back (`readback ok`) and DELs it.

`conns` opens --clients connections and keeps them all open at once, then on
each SETs a key of its own, GETs every key back on another connection, PINGs
on all and QUITs: many clients at once (prints `ok: N connections`).

`flood` makes the guest transmit much more than a hold bound: --clients
connections (default 16) each SET a value of --size bytes (default 16384)
and print `connected`; once --trigger exists each pipelines --count GETs
(default 50) of it and then reads every reply, which must be the value
(`flood ok: N replies of B bytes`); then DELs its keys.

Uses Debian's python3-redis (redis-py) only for its RESP parser and
connection class; no connection pool, no retries.
"""

import argparse
import json
import os
import random
import signal
import sys
import threading
import time

try:
    import redis
except ImportError:
    sys.stderr.write("kv_jepsen: python3-redis is missing (apt-get install python3-redis)\n")
    sys.exit(2)

STOP = threading.Event()


def now():
    return time.monotonic()


def err_kind(e):
    """A short name for a connection failure."""
    text = str(e)
    cause = e.__cause__ or e.__context__
    for exc in (e, cause):
        if isinstance(exc, ConnectionResetError):
            return "reset"
        if isinstance(exc, ConnectionRefusedError):
            return "refused"
        if isinstance(exc, BrokenPipeError):
            return "broken pipe"
    if isinstance(e, redis.TimeoutError):
        return "timeout"
    if "Connection reset" in text:
        return "reset"
    if "refused" in text:
        return "refused"
    if "closed by server" in text or "Connection closed" in text:
        return "EOF"
    if isinstance(e, redis.ResponseError):
        return "error reply"
    return type(e).__name__


def connect(args):
    c = redis.Connection(host=args.host, port=args.port, socket_timeout=args.timeout,
                         socket_connect_timeout=args.connect_timeout)
    c.connect()
    return c


def command(conn, *argv):
    conn.send_command(*argv)
    return conn.read_response()


class Client(threading.Thread):
    def __init__(self, cid, args, prefix, ready):
        super().__init__(daemon=True)
        self.cid = cid
        self.args = args
        self.prefix = prefix
        self.ready = ready
        self.rng = random.Random(f"{prefix}:{cid}:{os.getpid()}")
        self.ops = []          # [type, key, value, t_sent, t_reply or None, result]
        self.error = None      # (kind, message, op index) of the failure that ended it
        self.max_gap = 0.0
        self.max_gap_at = None
        self.last_reply = None
        self.seq = 0
        self.own_keys = []     # keys this connection created (acknowledged SET)
        self.violations = []

    def key(self, n):
        return f"{self.prefix}:c{self.cid}:k{n}"

    def value(self, n):
        return f"v:{self.prefix}:c{self.cid}:{n}:{self.rng.getrandbits(48):012x}"

    def op(self, conn, kind, key, value):
        rec = [kind, key, value, now(), None, None]
        self.ops.append(rec)
        if kind == "INCR":
            argv = ("INCR", key)
        elif kind == "SET":
            argv = ("SET", key, value)
        else:
            argv = ("GET", key)
        res = command(conn, *argv)
        t = now()
        rec[4] = t
        if isinstance(res, bytes):
            res = res.decode("utf-8", "replace")
        rec[5] = res
        gap = t - self.last_reply
        if gap > self.max_gap:
            self.max_gap = gap
            self.max_gap_at = time.time() - (now() - t)
        self.last_reply = t
        return res

    def run(self):
        try:
            conn = connect(self.args)
        except Exception as e:  # noqa: BLE001 - any failure is reported
            self.error = (err_kind(e), f"connect: {e}", -1)
            self.ready.release()
            return
        self.last_reply = now()
        self.ready.release()
        last_incr = None
        counter = f"{self.prefix}:counter"
        written = {}  # key -> value acknowledged last
        try:
            while not STOP.is_set():
                r = self.rng.random()
                if r < 0.35:
                    res = self.op(conn, "INCR", counter, None)
                    if not isinstance(res, int):
                        self.violations.append(f"error reply: c{self.cid}: INCR answered {res!r}")
                    elif last_incr is not None and res <= last_incr:
                        self.violations.append(
                            f"retracted: c{self.cid}: INCR answered {res} after {last_incr}")
                    last_incr = res if isinstance(res, int) else last_incr
                elif r < 0.75 or not self.own_keys:
                    self.seq += 1
                    k, v = self.key(self.seq), self.value(self.seq)
                    res = self.op(conn, "SET", k, v)
                    if res != "OK":
                        self.violations.append(f"error reply: c{self.cid}: SET {k} answered {res!r}")
                    else:
                        written[k] = v
                        self.own_keys.append(k)
                elif r < 0.85:
                    k = self.rng.choice(self.own_keys)
                    self.seq += 1
                    v = self.value(self.seq)
                    res = self.op(conn, "SET", k, v)
                    if res != "OK":
                        self.violations.append(f"error reply: c{self.cid}: SET {k} answered {res!r}")
                    else:
                        written[k] = v
                else:
                    k = self.rng.choice(self.own_keys)
                    res = self.op(conn, "GET", k, None)
                    if res != written[k]:
                        self.violations.append(
                            f"retracted: c{self.cid}: GET {k} answered {res!r}, its acknowledged "
                            f"value is {written[k]!r}")
        except Exception as e:  # noqa: BLE001 - every exception ends the client
            self.error = (err_kind(e), str(e), len(self.ops) - 1)
        finally:
            try:
                conn.disconnect()
            except Exception:  # noqa: BLE001
                pass


def history_of(clients, prefix, args, dbsize0, t0_wall, duration):
    return {
        "prefix": prefix,
        "host": args.host,
        "port": args.port,
        "dbsize0": dbsize0,
        "start": t0_wall,
        "duration": duration,
        "clients": [{
            "cid": c.cid,
            "ops": c.ops,
            "error": c.error,
            "max_gap": c.max_gap,
            "max_gap_at": c.max_gap_at,
            "violations": c.violations,
        } for c in clients],
    }


def readback(args, keys, counter):
    """One new connection, retried while it is refused or times out for up to
    --readback-timeout seconds (the server may still be coming up)."""
    deadline = now() + args.readback_timeout
    while True:
        try:
            conn = connect(args)
            got = {}
            keys = list(keys)
            for i in range(0, len(keys), 200):
                chunk = keys[i:i + 200]
                vals = command(conn, "MGET", *chunk)
                if not isinstance(vals, list) or len(vals) != len(chunk):
                    raise RuntimeError(f"MGET of {len(chunk)} keys answered {vals!r:.200}")
                for k, v in zip(chunk, vals):
                    got[k] = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
            cval = command(conn, "GET", counter)
            dbsize = command(conn, "DBSIZE")
            conn.disconnect()
            return got, cval, dbsize
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            if now() > deadline:
                raise RuntimeError(f"cannot read back from {args.host}:{args.port}: {e}") from e
            time.sleep(0.2)


def check(hist, args):
    """Returns (violations, summary dict)."""
    v = []
    prefix = hist["prefix"]
    counter = f"{prefix}:counter"
    acked_incr = indoubt_incr = 0
    incr_replies = {}
    writes = {}  # key -> list of (value, acked) in the order that connection sent them
    acked_sets = gets = 0
    resets = []
    max_gap = 0.0
    for c in hist["clients"]:
        v.extend(c["violations"])
        max_gap = max(max_gap, c["max_gap"])
        if c["error"]:
            kind, msg, _idx = c["error"]
            if kind == "error reply":
                v.append(f"error reply: c{c['cid']}: {msg}")
            else:
                resets.append(f"c{c['cid']}: {kind} ({msg})")
        for kind, key, value, _ts, tr, res in c["ops"]:
            acked = tr is not None
            if kind == "INCR":
                if acked:
                    acked_incr += 1
                    if isinstance(res, int):
                        if res in incr_replies:
                            v.append(f"retracted: INCR reply {res} seen by c{incr_replies[res]} "
                                     f"and c{c['cid']}")
                        incr_replies[res] = c["cid"]
                else:
                    indoubt_incr += 1
            elif kind == "SET":
                writes.setdefault(key, []).append((value, acked and res == "OK"))
                if acked and res == "OK":
                    acked_sets += 1
            else:
                gets += 1
    for r in resets:
        v.append(f"connection failure: {r}")

    try:
        got, cval, dbsize = readback(args, sorted(writes), counter)
    except RuntimeError as e:
        v.append(f"readback: {e}")
        return v, {"acked_sets": acked_sets, "acked_incr": acked_incr, "lost": None,
                   "resets": len(resets), "max_gap_ms": max_gap * 1000}

    lost = 0
    lost_incr = 0
    present = 0
    for key, ws in writes.items():
        val = got.get(key)
        # The last acknowledged write, and what may have come after it.
        last_acked = max((i for i, (_, a) in enumerate(ws) if a), default=None)
        allowed = {w for w, _ in ws[last_acked:]} if last_acked is not None else {w for w, _ in ws}
        if val is not None:
            present += 1
        if val is None:
            if last_acked is not None:
                lost += 1
                v.append(f"lost: {key} (acknowledged {ws[last_acked][0]!r}) is missing")
        elif val not in allowed:
            if val in {w for w, _ in ws}:
                lost += 1
                v.append(f"lost: {key} holds {val!r}, an older value than its acknowledged "
                         f"{ws[last_acked][0]!r}")
            else:
                v.append(f"phantom: {key} holds {val!r}, which no client wrote")
    try:
        cnum = int(cval) if cval is not None else 0
    except ValueError:
        cnum = None
        v.append(f"counter: holds {cval!r}, not an integer")
    if cnum is not None:
        if cnum < acked_incr:
            lost_incr = acked_incr - cnum
            v.append(f"lost: counter is {cnum}, {acked_incr} INCRs were acknowledged")
        if cnum > acked_incr + indoubt_incr:
            v.append(f"counter: {cnum}, more than {acked_incr} acknowledged + {indoubt_incr} "
                     "in-doubt INCRs")
        if incr_replies and cnum < max(incr_replies):
            v.append(f"retracted: the counter is {cnum}, a client was told {max(incr_replies)}")
    expect_keys = present + (1 if cnum else 0)
    if getattr(args, "older", False):
        pass  # later runs added keys: DBSIZE says nothing about this one
    elif isinstance(dbsize, int) and hist.get("dbsize0") is not None:
        if dbsize != hist["dbsize0"] + expect_keys:
            v.append(f"dbsize: {dbsize}, expected {hist['dbsize0']} before the run + "
                     f"{expect_keys} keys of this run (a key that no client wrote, or one lost)")
    elif not isinstance(dbsize, int):
        v.append(f"dbsize: answered {dbsize!r}")
    summary = {"acked_sets": acked_sets, "acked_incr": acked_incr, "gets": gets,
               "indoubt": indoubt_incr + sum(1 for ws in writes.values() for _, a in ws if not a),
               "lost": lost, "lost_incr": lost_incr, "resets": len(resets), "max_gap_ms": round(max_gap * 1000, 1),
               "counter": cnum, "keys": len(writes)}
    return v, summary


def report(v, s, out=sys.stdout):
    lost = "?" if s["lost"] is None else s["lost"] + s.get("lost_incr", 0)
    if s["lost"]:
        lost = f"{lost} (SET {s['lost']}, INCR {s.get('lost_incr', 0)})"
    print(f"kv_jepsen: acked writes {s['acked_sets'] + s['acked_incr']} "
          f"(SET {s['acked_sets']}, INCR {s['acked_incr']}), in doubt {s.get('indoubt', '?')}, "
          f"lost {lost}, resets {s['resets']}, max client-visible gap "
          f"{s['max_gap_ms']:.1f} ms", file=out)
    if v:
        # By kind (the words before the first colon), the first few of each.
        groups = {}
        for line in v:
            kind = line.split(": ", 1)[0]
            groups.setdefault(kind, []).append(line)
        print(f"kv_jepsen: FAIL: {len(v)} violation(s): " +
              ", ".join(f"{k} {len(g)}" for k, g in groups.items()), file=out)
        for kind, g in groups.items():
            for line in g[:5]:
                print(f"  {line}", file=out)
            if len(g) > 5:
                print(f"  ... and {len(g) - 5} more of {kind}", file=out)
        return 1
    print("kv_jepsen: ok", file=out)
    return 0


def run(args):
    prefix = args.prefix or f"j{os.getpid()}x{random.getrandbits(24):06x}"
    try:
        c0 = connect(args)
        if args.flush:
            command(c0, "FLUSHALL")
        dbsize0 = command(c0, "DBSIZE")
        c0.disconnect()
    except Exception as e:  # noqa: BLE001
        print(f"kv_jepsen: cannot reach {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    ready = threading.Semaphore(0)
    clients = [Client(i, args, prefix, ready) for i in range(args.clients)]
    t0 = now()
    t0_wall = time.time()
    for c in clients:
        c.start()
    for _ in clients:
        ready.acquire()
    print(f"kv_jepsen: started {args.clients} connections to {args.host}:{args.port} "
          f"(keys {prefix}:*)", flush=True)
    last_progress = now()
    while not STOP.is_set():
        if args.duration and now() - t0 >= args.duration:
            break
        if args.stop_file and os.path.exists(args.stop_file):
            break
        if all(not c.is_alive() for c in clients):
            break
        if args.progress and now() - last_progress >= args.progress:
            last_progress = now()
            n = sum(1 for c in clients for o in c.ops if o[4] is not None)
            print(f"kv_jepsen: progress {now() - t0:.1f} s: {n} replies", flush=True)
        time.sleep(0.02)
    STOP.set()
    for c in clients:
        c.join(args.timeout + 5)
        if c.is_alive():
            print(f"kv_jepsen: c{c.cid} still waits for a reply after {args.timeout + 5} s",
                  file=sys.stderr)
    hist = history_of(clients, prefix, args, dbsize0, t0_wall, now() - t0)
    if args.save:
        with open(args.save, "w") as f:
            json.dump(hist, f)
    v, s = check(hist, args)
    acked = s["acked_sets"] + s["acked_incr"]
    if acked < args.min_acked:
        v.append(f"too few: only {acked} writes acknowledged, fewer than --min-acked {args.min_acked}")
    return report(v, s)


def probe(args):
    try:
        conn = connect(args)
        res = command(conn, "PING")
    except Exception as e:  # noqa: BLE001
        print(f"probe: connect: {err_kind(e)}: {e}", flush=True)
        return 1
    print(f"connected {res!r}", flush=True)
    while not os.path.exists(args.trigger):
        if STOP.is_set():
            return 1
        time.sleep(0.01)
    key = f"probe:{os.getpid()}:{random.getrandbits(32):08x}"
    val = f"pv:{random.getrandbits(64):016x}"
    print(f"sent {time.time():.3f}", flush=True)
    try:
        conn.send_command("SET", key, val)
        res = conn.read_response()
    except Exception as e:  # noqa: BLE001
        print(f"probe: SET: {err_kind(e)}: {e}", flush=True)
        return 1
    print(f"reply {time.time():.3f} {res.decode() if isinstance(res, bytes) else res}", flush=True)
    try:
        got = command(conn, "GET", key)
    except Exception as e:  # noqa: BLE001
        print(f"probe: GET: {err_kind(e)}: {e}", flush=True)
        return 1
    got = got.decode() if isinstance(got, bytes) else got
    if got != val:
        print(f"readback wrong: {got!r}, expected {val!r}", flush=True)
        return 1
    print(f"readback ok {key}", flush=True)
    try:
        command(conn, "DEL", key)  # leave the store as it was (the checker counts keys)
    except Exception as e:  # noqa: BLE001
        print(f"probe: DEL: {err_kind(e)}: {e}", flush=True)
        return 1
    return 0


def conns(args):
    tag = f"m{os.getpid()}x{random.getrandbits(24):06x}"
    cs = []
    try:
        for i in range(args.clients):
            cs.append(connect(args))
        for i, c in enumerate(cs):
            c.send_command("SET", f"{tag}:{i}", f"val-{i}")
        for i, c in enumerate(cs):
            res = c.read_response()
            if res not in (b"OK", "OK"):
                print(f"conns: SET on connection {i} answered {res!r}")
                return 1
        n = len(cs)
        for i, c in enumerate(cs):
            res = command(c, "GET", f"{tag}:{(i + 1) % n}")
            want = f"val-{(i + 1) % n}"
            if (res.decode() if isinstance(res, bytes) else res) != want:
                print(f"conns: GET on connection {i} answered {res!r}, expected {want!r}")
                return 1
        for i, c in enumerate(cs):
            res = command(c, "PING")
            if res not in (b"PONG", "PONG", True):
                print(f"conns: PING on connection {i} answered {res!r}")
                return 1
        for c in cs:
            c.send_command("QUIT")
            c.read_response()
            c.disconnect()
    except Exception as e:  # noqa: BLE001
        print(f"conns: connection {len(cs)}: {err_kind(e)}: {e}")
        return 1
    print(f"ok: {len(cs)} connections at once")
    return 0


def flood(args):
    cs = []
    try:
        for i in range(args.clients):
            c = connect(args)
            key = f"flood:{os.getpid()}:{i}"
            val = os.urandom(args.size // 2).hex().encode()
            if command(c, "SET", key, val) not in (b"OK", "OK"):
                print(f"flood: SET on connection {i} failed")
                return 1
            cs.append((c, key, val))
    except Exception as e:  # noqa: BLE001
        print(f"flood: connection {len(cs)}: {err_kind(e)}: {e}", flush=True)
        return 1
    print(f"connected {len(cs)}", flush=True)
    while not os.path.exists(args.trigger):
        if STOP.is_set():
            return 1
        time.sleep(0.01)
    n = 0
    try:
        for c, key, _ in cs:
            c.send_packed_command(c.pack_commands([("GET", key)] * args.count))
        print(f"sent {time.time():.3f}", flush=True)
        for i, (c, key, val) in enumerate(cs):
            for _ in range(args.count):
                res = c.read_response()
                if res != val:
                    print(f"flood: GET on connection {i} answered {len(res or b'')} bytes, not its value")
                    return 1
                n += 1
        for c, key, _ in cs:
            command(c, "DEL", key)  # leave the store as it was (the checker counts keys)
    except Exception as e:  # noqa: BLE001
        print(f"flood: after {n} replies: {err_kind(e)}: {e}", flush=True)
        return 1
    print(f"flood ok: {n} replies of {args.size} bytes at {time.time():.3f}", flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", default="run", choices=["run", "probe", "conns", "flood"])
    ap.add_argument("--host", default="10.77.0.2")
    ap.add_argument("--port", type=int, default=6379)
    ap.add_argument("--clients", type=int, default=8, help="connections (default 8)")
    ap.add_argument("--duration", type=float, default=0,
                    help="seconds to run (default 0: until --stop-file or a signal)")
    ap.add_argument("--stop-file", help="stop once this file exists")
    ap.add_argument("--timeout", type=float, default=30,
                    help="seconds a reply may take (default 30: failover takes seconds)")
    ap.add_argument("--connect-timeout", type=float, default=10)
    ap.add_argument("--readback-timeout", type=float, default=15,
                    help="how long the read-back connection is retried (default 15 s)")
    ap.add_argument("--flush", action="store_true", help="FLUSHALL before the run")
    ap.add_argument("--prefix", help="key prefix (default: unique per run)")
    ap.add_argument("--save", help="write the history (JSON) here")
    ap.add_argument("--check-only", metavar="HISTORY",
                    help="check a saved history against the server now (no new operations)")
    ap.add_argument("--older", action="store_true",
                    help="--check-only: a history that later runs followed (their keys "
                         "count in DBSIZE, so it is not compared)")
    ap.add_argument("--min-acked", type=int, default=1,
                    help="fail if fewer writes were acknowledged (default 1)")
    ap.add_argument("--progress", type=float, default=0,
                    help="print a progress line every this many seconds")
    ap.add_argument("--trigger", help="probe, flood: send once this file exists")
    ap.add_argument("--size", type=int, default=16384, help="flood: value size (default 16384)")
    ap.add_argument("--count", type=int, default=50, help="flood: GETs per connection (default 50)")
    args = ap.parse_args()

    def on_signal(_sig, _frame):
        STOP.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if args.mode == "probe":
        if not args.trigger:
            ap.error("probe needs --trigger FILE")
        return probe(args)
    if args.mode == "flood":
        if not args.trigger:
            ap.error("flood needs --trigger FILE")
        return flood(args)
    if args.mode == "conns":
        return conns(args)
    if args.check_only:
        with open(args.check_only) as f:
            hist = json.load(f)
        args.host = hist.get("host", args.host) if args.host == ap.get_default("host") else args.host
        v, s = check(hist, args)
        return report(v, s)
    if args.clients < 1:
        ap.error("--clients must be at least 1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
