"""A/B of the verify hasher's schedule on the bench cache: 32 MiB slices vs each file wholly on one thread.

    python bench/hasher_ab.py [--work /tmp/qf-bench-verify] [--rounds 3] [--workers 2]

Run after bench_verify.py (it reuses its cache).  "whole files" sets the slice
larger than any file, which is the previous behaviour (largest file first, a
file never changes threads).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_verify import hashlib_rate

from qwen_fetch.store import hasher


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/qf-bench-verify"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    blobs = sorted(p for p in (a.work / "cache").glob("models--*/blobs/*") if p.is_file())
    total = sum(p.stat().st_size for p in blobs)
    modes = {"slices (32 MiB)": hasher.SLICE, "whole files": 1 << 62}
    times: dict[str, list[float]] = {m: [] for m in modes}
    limit: list[float] = []
    hasher.hash_files(blobs, workers=a.workers)  # untimed: bring the files into the page cache
    for _ in range(a.rounds):
        for m, sl in modes.items():
            hasher.SLICE = sl
            t0 = time.perf_counter()
            hasher.hash_files(blobs, workers=a.workers)
            times[m].append(time.perf_counter() - t0)
            limit.append(hashlib_rate(a.workers))
    lim = statistics.median(limit)
    print(f"{len(blobs)} files, {total / 2**30:.2f} GiB, {a.workers} threads; hashlib limit {lim / 2**20:.0f} MiB/s "
          f"({total / lim:.2f} s)")
    for m, ts in times.items():
        med = statistics.median(ts)
        print(f"| {m} | {med:.2f} s | {total / med / 2**20:.0f} MiB/s | {total / lim / med * 100:.0f} % of the limit | "
              + ", ".join(f"{t:.2f}" for t in ts) + " |")


if __name__ == "__main__":
    main()
