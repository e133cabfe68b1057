"""Micro-benchmark: system CPU to write 2 GiB into a fresh sparse file in pwrite pieces of various sizes.

    python bench/write_piece.py [--gib 2] [--rounds 5] [--dir /tmp]

Why: the engine writes each 1 MiB block in pieces of ``filetask.WRITE_PIECE``;
on a VM with free page reporting large pieces cost several times the CPU of
small ones.  Sizes run in a shuffled order each round, 3 s apart (long enough
for freed memory to be reported to the host, as between two real pulls).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from pathlib import Path


def write_once(path: Path, total: int, piece: int) -> float:
    buf = memoryview(os.urandom(1 << 20))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, total)
        t0 = os.times()
        for off in range(0, total, 1 << 20):
            for q in range(0, 1 << 20, piece):
                os.pwrite(fd, buf[q:q + piece], off + q)
        t1 = os.times()
    finally:
        os.close(fd)
        path.unlink()
    return (t1.system - t0.system) + (t1.user - t0.user)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=Path("/tmp"))
    a = ap.parse_args()
    total = int(a.gib * (1 << 30)) // (1 << 20) * (1 << 20)
    sizes = [16 << 10, 64 << 10, 256 << 10, 1 << 20]
    res: dict[int, list[float]] = {s: [] for s in sizes}
    path = a.dir / f"qf-write-piece-{os.getpid()}"
    for _ in range(a.rounds):
        order = sizes[:]
        random.shuffle(order)
        for s in order:
            res[s].append(write_once(path, total, s))
            time.sleep(3)
    try:
        reporting = "free page reporting on" if "Free page reporting enabled" in os.popen("dmesg 2>/dev/null").read() \
            else "free page reporting not seen in dmesg"
    except OSError:
        reporting = "dmesg unreadable"
    print(f"{total / (1 << 30):.1f} GiB per run, {a.rounds} rounds, kernel {os.uname().release}, {reporting}")
    print("| pwrite piece | CPU s (median) | runs |")
    print("|---|---:|---|")
    for s, v in res.items():
        print(f"| {s >> 10} KiB | {statistics.median(v):.2f} | " + ", ".join(f"{x:.2f}" for x in v) + " |")


if __name__ == "__main__":
    main()
