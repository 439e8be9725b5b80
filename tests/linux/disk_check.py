#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks the Linux test guest's line records on a disk image against its console.

    disk_check.py IMAGE STREAM [--old-primary-last N]

With a disk, tests/linux/init.c writes each numbered line to the disk before
printing it: a 512-byte record (struct disk_record: magic "RFTLINE1", the
line's number, the number of slots, the text's length, the line as printed,
FNV-1a 64 of the 504 bytes before the sum) in sector line % slots, flushed
(VIRTIO_BLK_T_FLUSH). So on the image of the side the guest ran on last:

- every record is whole: magic, checksum, slots as the init announced, and
  in the sector its line number says (a torn or misplaced record fails);
- every line L the console STREAM shows has its record: sector L % slots
  holds L, with exactly the text the console shows (the same execution wrote
  and printed it), or a later line L' > L that reused the sector;
- records are never behind the console (the highest record >= the last line)
  and may be ahead only by the few lines written and not yet printed when
  the guest was stopped (at most AHEAD_MAX);
- a last line cut off by the stop (no newline after it) is a prefix of its
  record's text.

STREAM is the joined console (tests/lib.sh stream_join). Lines up to
--old-primary-last N are counted as the old primary's: their records reached
this image through checkpoints. Prints one summary line; exit 0 ok, 1 not.
"""
import argparse
import re
import struct
import sys

SECTOR = 512
MAGIC = b"RFTLINE1"
RECORD = struct.Struct("<8sQII480sQ")
AHEAD_MAX = 5
LINE = re.compile(r"^(ringft-init: line 0*(\d+) .*)$")
DISK = re.compile(r"^ringft-init: disk /dev/vda: (\d+) sectors, .* sector N % (\d+),")


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def console(path):
    """The disk announcement (sectors, slots), {line: text} of STREAM's whole
    lines, and the number and text of its unfinished last line (None if the
    stream ends with a newline): the guest may be stopped in mid-line."""
    disk, lines, partial = None, {}, None
    with open(path, "rb") as f:
        data = f.read().decode("utf-8", "replace")
    whole = data.splitlines()
    if whole and not data.endswith("\n"):
        m = LINE.match(whole.pop().rstrip("\r"))
        if m:
            partial = (int(m.group(2)), m.group(1))
    for raw in whole:
        s = raw.rstrip("\r")
        m = DISK.match(s)
        if m:
            disk = (int(m.group(1)), int(m.group(2)))
            continue
        m = LINE.match(s)
        if m:
            lines[int(m.group(2))] = m.group(1)
    return disk, lines, partial


def records(path, slots, errors):
    """{sector: (line, text)} of the image's first `slots` sectors."""
    found = {}
    with open(path, "rb") as f:
        data = f.read(slots * SECTOR)
    for sec in range(len(data) // SECTOR):
        raw = data[sec * SECTOR:(sec + 1) * SECTOR]
        if raw == bytes(SECTOR):
            continue
        magic, line, rslots, length, text, csum = RECORD.unpack(raw)
        if magic != MAGIC:
            errors.append(f"sector {sec}: no record magic: {raw[:16].hex()}")
        elif csum != fnv1a64(raw[:RECORD.size - 8]):
            errors.append(f"sector {sec}: record of line {line} has a bad checksum (torn?)")
        elif rslots != slots or line % slots != sec or length > len(text):
            errors.append(f"sector {sec}: record of line {line} says slots={rslots} "
                          f"len={length}, want slots={slots} in sector {line % slots}")
        else:
            found[sec] = (line, text[:length].decode("utf-8", "replace"))
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image")
    ap.add_argument("stream")
    ap.add_argument("--old-primary-last", type=int, default=0,
                    help="the last line the old primary printed (0: none)")
    a = ap.parse_args()

    disk, lines, partial = console(a.stream)
    if disk is None:
        print("disk_check: the console has no 'ringft-init: disk /dev/vda' line: "
              "the guest did not use a disk")
        return 1
    sectors, slots = disk
    if not lines:
        print("disk_check: no numbered lines on the console")
        return 1
    errors = []
    recs = records(a.image, slots, errors)
    exact = reused = replicated = 0
    for n, text in sorted(lines.items()):
        rec = recs.get(n % slots)
        if rec is None:
            errors.append(f"line {n}: no record in sector {n % slots}")
        elif rec[0] < n:
            errors.append(f"line {n}: sector {n % slots} holds the older line {rec[0]}")
        elif rec[0] > n:
            reused += 1
        elif rec[1] != text:
            errors.append(f"line {n}: the record says '{rec[1]}', the console '{text}'")
        else:
            exact += 1
            if n <= a.old_primary_last:
                replicated += 1
    if partial is not None:
        # The record was written before the first byte was printed: the
        # unfinished line is a prefix of its record's text.
        n, text = partial
        rec = recs.get(n % slots)
        if rec is None or rec[0] < n:
            errors.append(f"unfinished line {n}: no record in sector {n % slots}")
        elif rec[0] == n and not rec[1].startswith(text):
            errors.append(f"unfinished line {n}: the record says '{rec[1]}', "
                          f"the console began '{text}'")
        else:
            lines[n] = text
    last = max(lines)
    high = max((r[0] for r in recs.values()), default=0)
    if high < last:
        errors.append(f"the highest record is line {high}, behind the console's last line {last}")
    elif high - last > AHEAD_MAX:
        errors.append(f"the highest record is line {high}, {high - last} ahead of the console's "
                      f"last line {last} (at most {AHEAD_MAX})")
    for e in errors[:10]:
        print("disk_check: " + e)
    if errors:
        print(f"disk_check: {len(errors)} problems")
        return 1
    print(f"disk_check: {len(lines)} lines, each with its record on the image "
          f"({sectors} sectors, {slots} slots): {exact} exact ({replicated} of them printed "
          f"by the old primary), {reused} slots reused by a later line; highest record "
          f"{high}, last line {last} ({high - last} ahead)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
