"""Interleaved A/B of engine settings with traced pulls: chunk roots on/off, read-back piece size.

    python bench/pull_ab.py --gb 2 --rounds 3 [--procs 2]

Builds (once) the ``bench/hubfarm.py`` repo at ``--gb``, serves it, and runs ``bench/pull_trace.py``'s
in-process pull for every combination in every round, the order rotated per round; prints one line per
pull and a median table (rate, CPU-s per GB, time inside the sha256 updates: wall vs CPU).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import pull_trace  # noqa: E402
from hubfarm import MODEL, HubFarm, build  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/qf-pull-ab"))
    ap.add_argument("--pieces-kib", default="256,4096")
    args = ap.parse_args()
    store = args.work / "store"
    build(store, args.gb)
    combos = list(itertools.product((True, False), [int(k) << 10 for k in args.pieces_kib.split(",")]))
    runs: dict[tuple[bool, int], list[dict]] = {c: [] for c in combos}  # type: ignore[type-arg]
    with HubFarm(store, args.procs) as farm:
        cfg = args.work / "mirrors.yaml"
        cfg.write_text(f"sources:\n  - name: farm\n    kind: hf\n    endpoint: {farm.url}\n")
        for rnd in range(args.rounds):
            order = combos[rnd % len(combos):] + combos[:rnd % len(combos)]
            for roots, piece in order:
                load = os.getloadavg()[0]
                r = pull_trace.trace_pull(cfg, MODEL, args.work, hash_piece=piece, roots=roots)
                upd_wall = sum(f["update_wall"] for f in r["files"].values())
                upd_cpu = sum(f["update_cpu"] for f in r["files"].values())
                r.update(load=load, upd_wall=upd_wall, upd_cpu=upd_cpu)
                runs[(roots, piece)].append(r)
                print(f"round {rnd}: roots={roots} piece={piece >> 10} KiB load={load:.1f}: {r['gb_per_s']:.3f} GB/s, "
                      f"{r['cpu_s_per_gb']:.2f} CPU-s/GB, sha256 updates {upd_wall:.2f} s wall / {upd_cpu:.2f} s CPU",
                      flush=True)
    print("\n| roots | read-back piece | GB/s (median) | CPU-s per GB | sha256 updates wall / CPU s | GB/s per run |")
    print("|---|---:|---:|---:|---:|---|")
    for (roots, piece), rs in runs.items():
        med = statistics.median
        print(f"| {'on' if roots else 'off'} | {piece >> 10} KiB | {med(r['gb_per_s'] for r in rs):.3f} | "
              f"{med(r['cpu_s_per_gb'] for r in rs):.2f} | {med(r['upd_wall'] for r in rs):.2f} / "
              f"{med(r['upd_cpu'] for r in rs):.2f} | {', '.join('%.3f' % r['gb_per_s'] for r in rs)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
