#!/usr/bin/python3
"""One long TCP connection to an echo server: sends a numbered line every
--period seconds and checks that each comes back exactly, in order. Runs until
--stop-file exists, then requires every line sent to have come back.

Exit 0: every byte echoed once, in order, no reset. Exit 1 otherwise, saying
what went wrong. Prints the longest wait for an echo (the client-visible gap).
Used by tests/test_linux.sh (the Linux guest's busybox nc through a failover)."""
import argparse
import os
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--period", type=float, default=0.05)
    ap.add_argument("--stop-file", required=True)
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="fail when an echo takes longer than this")
    a = ap.parse_args()

    s = socket.create_connection((a.host, a.port), timeout=a.timeout)
    print("echo_check: connected", flush=True)
    sent = 0
    got = b""
    want = b""
    # While bytes are outstanding: when the last of them arrived (or, if none
    # has since the connection was last caught up, when the oldest was sent).
    # The client-visible gap is the time from there to the next arrival; a
    # slow echo that keeps flowing is not a stall, however far it lags.
    waiting_since = None
    worst = 0.0
    next_send = time.monotonic()
    stopping_at = None
    echoed_lines = 0
    while True:
        now = time.monotonic()
        if stopping_at is None and os.path.exists(a.stop_file):
            stopping_at = now
        if stopping_at is None and now >= next_send:
            sent += 1
            line = b"line %08d %s\n" % (sent, b"x" * (sent % 61))
            s.settimeout(a.timeout)
            try:
                s.sendall(line)
            except OSError as e:
                print("echo_check: FAIL: sending line %d: %s (%d of %d bytes back)"
                      % (sent, e, len(got), len(want)), flush=True)
                return 1
            want += line
            if waiting_since is None:
                waiting_since = now
            next_send = now + a.period
        s.settimeout(max(0.001, min(a.period, next_send - time.monotonic())))
        try:
            chunk = s.recv(65536)
            if not chunk:
                print("echo_check: FAIL: the server closed the connection after %d lines"
                      % sent, flush=True)
                return 1
        except socket.timeout:
            chunk = b""
        except OSError as e:
            print("echo_check: FAIL: %s after %d lines" % (e, sent), flush=True)
            return 1
        now = time.monotonic()
        if chunk:
            got += chunk
            if not want.startswith(got):
                i = next(i for i in range(len(got)) if got[i] != want[i])
                print("echo_check: FAIL: byte %d differs: got %r, sent %r"
                      % (i, got[i:i + 40], want[i:i + 40]), flush=True)
                return 1
            worst = max(worst, now - waiting_since)
            waiting_since = None if len(got) == len(want) else now
            before = echoed_lines
            echoed_lines += chunk.count(b"\n")
            if echoed_lines // 40 != before // 40:
                print("echo_check: progress %d lines echoed" % echoed_lines, flush=True)
        if len(got) == len(want) and stopping_at is not None:
            break
        if waiting_since is not None and now - waiting_since > a.timeout:
            print("echo_check: FAIL: no echo for %.1f s (%d of %d bytes back)"
                  % (now - waiting_since, len(got), len(want)), flush=True)
            return 1
    s.close()
    print("echo_check: ok: %d lines, %d bytes echoed once in order, longest wait %.0f ms"
          % (sent, len(want), worst * 1000), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
