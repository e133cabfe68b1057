"""Where a pull's time goes: one in-process pull with probes on the engine.

    python bench/pull_trace.py --config mirrors.yaml --model ORG/NAME --work DIR [--json out.json]

Runs ``qwen_fetch.api.run_pull`` into a fresh cache with the engine instrumented from outside
(monkeypatched, nothing in the package changes):

* every 20 ms, per file: bytes on disk (finished blocks) and bytes hashed (the sha256's prefix);
* per file, the wall time some thread spent in ``hash_prefix`` (the file's sha256 stream) and, inside
  it, in ``update`` calls, wall and CPU (``thread_time``): wall minus CPU inside ``update`` is time the
  hashing thread waited to get the GIL (or a core) back after hashing a piece;
* a GIL probe thread that sleeps 1 ms in a loop and records how late it wakes (the GIL's queue, plus
  the run queue on a machine with fewer cores than runnable threads);
* the process's CPU per GB.

Prints a summary and writes the raw numbers as JSON.  Used by ``bench/host_many_cores.py``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class _TimedHash:
    """A sha256 that times its ``update`` calls (wall and this thread's CPU)."""

    def __init__(self, inner: Any, stats: dict[str, float]) -> None:
        self._inner, self._stats = inner, stats

    def update(self, data: Any) -> None:
        w0, c0 = time.perf_counter(), time.thread_time()
        self._inner.update(data)
        self._stats["update_wall"] += time.perf_counter() - w0
        self._stats["update_cpu"] += time.thread_time() - c0
        self._stats["update_calls"] += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def trace_pull(config: Path, model: str, work: Path, connections: int | None = None,
               hash_piece: int | None = None, roots: bool | None = None) -> dict[str, Any]:
    """One traced pull; ``hash_piece`` overrides the engine's read-back piece and ``roots`` whether chunk roots
    are computed (A/Bs of those settings)."""
    from dataclasses import replace

    from qwen_fetch.api import run_pull
    from qwen_fetch.net import filetask as task_mod
    from qwen_fetch.net import jobs as jobs_mod
    from qwen_fetch.net import scheduler as sched_mod

    cache, lock = work / "trace-cache", work / "trace.lock"
    shutil.rmtree(cache, ignore_errors=True)
    lock.unlink(missing_ok=True)
    scheds: list[Any] = []
    per_file: dict[str, dict[str, float]] = {}
    samples: list[tuple[float, dict[str, tuple[int, int]]]] = []
    stop = threading.Event()
    orig_init = sched_mod.Scheduler.__init__
    orig_hash_prefix = sched_mod.Scheduler.hash_prefix
    orig_pwrite = task_mod.FileTask._pwrite
    orig_piece = sched_mod.HASH_PIECE
    writes = dict.fromkeys(("pwrite_wall", "pwrite_cpu", "pwrite_calls"), 0.0)
    wlock = threading.Lock()

    def init(self: Any, tasks: Any, *a: Any, **k: Any) -> None:
        orig_init(self, tasks, *a, **k)
        for t in tasks:
            st = per_file.setdefault(str(t.job.path), dict.fromkeys(
                ("prefix_wall", "prefix_calls", "update_wall", "update_cpu", "update_calls"), 0.0))
            st["size"] = t.job.size
            t.hasher = _TimedHash(t.hasher, st)
        scheds.append(self)

    def hash_prefix(self: Any, t: Any, *, blocking: bool) -> None:
        w0 = time.perf_counter()
        try:
            orig_hash_prefix(self, t, blocking=blocking)
        finally:
            st = per_file[str(t.job.path)]
            st["prefix_wall"] += time.perf_counter() - w0
            st["prefix_calls"] += 1

    def pwrite(self: Any, start: int, data: Any, pieces: Any) -> None:
        w0, c0 = time.perf_counter(), time.thread_time()
        try:
            orig_pwrite(self, start, data, pieces)
        finally:
            w, c = time.perf_counter() - w0, time.thread_time() - c0
            with wlock:
                writes["pwrite_wall"] += w
                writes["pwrite_cpu"] += c
                writes["pwrite_calls"] += 1

    def sampler() -> None:
        while not stop.is_set():
            if scheds:
                s = scheds[-1]
                with s.cond:
                    snap = {str(t.job.path): (t.done_count * t.block_size, t.hashed * t.block_size) for t in s.tasks}
                samples.append((time.perf_counter(), snap))
            stop.wait(0.02)

    lateness: list[float] = []

    def gil_probe() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            time.sleep(0.001)
            lateness.append(time.perf_counter() - t0 - 0.001)

    sched_mod.Scheduler.__init__ = init  # type: ignore[method-assign]
    sched_mod.Scheduler.hash_prefix = hash_prefix  # type: ignore[method-assign]
    task_mod.FileTask._pwrite = pwrite  # type: ignore[method-assign]
    if hash_piece:
        sched_mod.HASH_PIECE = hash_piece
    orig_from = jobs_mod.EngineOptions.from_deadlines
    if roots is not None:
        jobs_mod.EngineOptions.from_deadlines = classmethod(  # type: ignore[method-assign]
            lambda cls, d, connections=None: replace(orig_from(d, connections), roots=roots))
    threads = [threading.Thread(target=sampler, daemon=True, name="trace-sampler"),
               threading.Thread(target=gil_probe, daemon=True, name="trace-gil")]
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    try:
        result = run_pull(model, config=config, cache_dir=cache, lock=lock, connections=connections)
    finally:
        stop.set()
        sched_mod.Scheduler.__init__ = orig_init  # type: ignore[method-assign]
        sched_mod.Scheduler.hash_prefix = orig_hash_prefix  # type: ignore[method-assign]
        task_mod.FileTask._pwrite = orig_pwrite  # type: ignore[method-assign]
        sched_mod.HASH_PIECE = orig_piece
        jobs_mod.EngineOptions.from_deadlines = orig_from  # type: ignore[method-assign]
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    for th in threads:
        th.join()
    total = sum(f.size for f in result.files)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    # Per file: when its bytes were all on disk, when its sha256 caught up, and how many files hashed at once.
    files: dict[str, Any] = {}
    for path, st in per_file.items():
        size = int(st["size"])
        on_disk = next((ts - t0 for ts, snap in samples if snap.get(path, (0, 0))[0] >= size), None)
        hashed = next((ts - t0 for ts, snap in samples if snap.get(path, (0, 0))[1] >= size), None)
        first = next((ts - t0 for ts, snap in samples if snap.get(path, (0, 0))[1] > 0), None)
        files[path] = {**st, "on_disk_s": on_disk, "hashed_s": hashed, "first_hashed_s": first}
    hashing_now: list[int] = []
    for (ta, a), (_, b) in zip(samples, samples[1:]):
        hashing_now.append(sum(1 for p in b if b[p][1] > a.get(p, (0, 0))[1]))
    busy = [n for n in hashing_now if n]
    return {
        "wall_s": wall, "bytes": total, "gb_per_s": total / wall / 1e9, "cpu_s": cpu, "cpu_s_per_gb": cpu / (total / 1e9),
        "connections": scheds[-1].options.connections if scheds else connections,
        "hash_piece": hash_piece or orig_piece, "writes": writes, "roots": roots,
        "rooted_files": sum(1 for f in result.files if f.root is not None),
        "files": files,
        "files_hashing_at_once": {"mean_while_any": statistics.fmean(busy) if busy else 0.0,
                                  "max": max(busy, default=0), "samples": len(hashing_now)},
        "gil_probe_late_ms": {"median": statistics.median(lateness) * 1e3 if lateness else None,
                              "p90": statistics.quantiles(lateness, n=10)[-1] * 1e3 if len(lateness) > 10 else None,
                              "n": len(lateness)},
    }


def summary(r: dict[str, Any]) -> str:
    lines = [f"pull: {r['bytes'] / 1e9:.2f} GB in {r['wall_s']:.2f} s = {r['gb_per_s']:.2f} GB/s, "
             f"{r['cpu_s']:.1f} CPU-s ({r['cpu_s_per_gb']:.2f} CPU-s/GB), {r['connections']} connections",
             f"files hashing at once (20 ms samples, while any): mean {r['files_hashing_at_once']['mean_while_any']:.2f}, "
             f"max {r['files_hashing_at_once']['max']}",
             f"GIL probe (1 ms sleep) late by: median {r['gil_probe_late_ms']['median']:.2f} ms, "
             f"p90 {r['gil_probe_late_ms']['p90'] or 0:.2f} ms",
             f"hash piece {r['hash_piece'] >> 10} KiB, roots {'default' if r['roots'] is None else r['roots']} ({r['rooted_files']} files rooted); pwrite: wall {r['writes']['pwrite_wall']:.2f} s, "
             f"CPU {r['writes']['pwrite_cpu']:.2f} s, {int(r['writes']['pwrite_calls'])} calls",
             "| file | MB | on disk at s | hashed at s | in hash_prefix, all threads s | in update: wall s / CPU s | calls |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for path, f in sorted(r["files"].items(), key=lambda kv: -kv[1]["size"]):
        if f["size"] < 16 << 20:
            continue
        lines.append(f"| {path} | {f['size'] / 1e6:.0f} | {f['on_disk_s'] or 0:.2f} | {f['hashed_s'] or 0:.2f} | "
                     f"{f['prefix_wall']:.2f} | {f['update_wall']:.2f} / {f['update_cpu']:.2f} | "
                     f"{int(f['update_calls'])} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--model", default="Qwen/Qwen3-VL-8B-Instruct")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--connections", type=int)
    ap.add_argument("--hash-piece-kib", type=int)
    ap.add_argument("--roots", choices=("on", "off"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    r = trace_pull(args.config, args.model, args.work, args.connections,
                   args.hash_piece_kib << 10 if args.hash_piece_kib else None,
                   None if args.roots is None else args.roots == "on")
    print(summary(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
