"""Where a `qwen-fetch verify` command's time goes beyond the hashing (run after bench_verify.py, same cache).

    python bench/verify_gap.py [--work /tmp/qf-bench-verify] [--rounds 3]

Times, interleaved: the interpreter alone, `qwen-fetch --help` (imports), the
verify command, and the hasher in a fresh process and in this one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qwen_fetch.store.hasher import hash_files

PY = sys.executable


def run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/qf-bench-verify"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    cache, lock = a.work / "cache", a.work / "qwen-fetch.lock"
    snap = next((cache).glob("models--*/snapshots/*"))
    paths = sorted(p for p in snap.rglob("*") if p.is_symlink() or p.is_file())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    hash_in_child = ("import sys, pathlib; from qwen_fetch.store.hasher import hash_files; "
                     f"hash_files([pathlib.Path(p) for p in sys.argv[1:]], workers={a.workers})")
    cmds = {
        "python -c pass": [PY, "-c", "pass"],
        "qwen-fetch --help": [PY, "-m", "qwen_fetch", "--help"],
        "qwen-fetch verify --json": [PY, "-m", "qwen_fetch", "verify", "Qwen/Qwen3-VL-8B-Instruct", "--cache-dir",
                                     str(cache), "--lock", str(lock), "--workers", str(a.workers), "--json"],
        "hasher in a fresh process": [PY, "-c", hash_in_child, *map(str, paths)],
    }
    times: dict[str, list[float]] = {k: [] for k in [*cmds, "hasher in this process"]}
    hash_files(paths, workers=a.workers)  # warm
    for _ in range(a.rounds):
        for k, c in cmds.items():
            times[k].append(run(c, env))
        t0 = time.perf_counter()
        hash_files(paths, workers=a.workers)
        times["hasher in this process"].append(time.perf_counter() - t0)
    for k, ts in times.items():
        print(f"| {k} | {statistics.median(ts):.3f} s | " + ", ".join(f"{t:.3f}" for t in ts) + " |")


if __name__ == "__main__":
    main()
