"""Benchmark: a no-op `pull --frozen` of the full-size Qwen3-VL-8B-Instruct layout, and `qwen-fetch --help`.

    .venv/bin/python bench/bench_noop.py [--runs 15] [--data sparse|random] [--out bench/results/noop.md]

Builds (once, under /tmp/qf-bench-noop) an HF cache holding the real repo's files at
their real sizes (17.5 GB, four shards), pinned in a lockfile, with a mirrors.yaml
whose only source is a closed loopback port: a pull that tried the network would
fail.  ``--data sparse`` (default) makes the shards sparse files of zeros, so the
benchmark needs no 17.5 GB of disk: a pull whose stamps hold reads no shard byte, so
the contents do not change what is measured (the ``--reverify`` row then hashes
zeros from holes, i.e. at warm-page-cache speed).  ``--data random`` writes real
pseudo-random shards instead.

One untimed pull records the verification stamps; then each round times, in a
rotated order, one run of each command (a fresh process each time, as CI runs it).
Reports median, min and max wall time, and the top imports of `--help`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from qwen_fetch.core.lockfile import Lock  # noqa: E402
from qwen_fetch.core.manifest import Pin, PinnedFile  # noqa: E402
from qwen_fetch.core.paths import safe_relpath  # noqa: E402
from qwen_fetch.store.hfcache import RepoCache  # noqa: E402
from qwen_fetch.store.lockio import write_lock  # noqa: E402
from tests.support.fixtures import QWEN3_VL_8B, REAL_FILES, build_sharded_files  # noqa: E402

QF = [sys.executable, "-m", "qwen_fetch"]
COMMIT = "0c351dd01ed87e9c1b53cbc748cba10e6187ff3b"  # the real commit the sizes come from


def _sha_of_zeros(size: int) -> str:
    h = hashlib.sha256()
    block = bytes(16 << 20)
    left = size
    while left:
        n = min(left, len(block))
        h.update(memoryview(block)[:n])
        left -= n
    return h.hexdigest()


def _sha_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def build(work: Path, data: str) -> tuple[Path, Path, Path]:
    """The cache, lockfile and mirrors.yaml (built once per ``data`` kind)."""
    cache, lock, mirrors = work / data / "cache", work / data / "qwen-fetch.lock", work / data / "mirrors.yaml"
    repo = RepoCache(cache, QWEN3_VL_8B)
    if not lock.exists():
        staging = work / data / "staging"
        real_total = sum(s for p, s in REAL_FILES if p.endswith(".safetensors"))
        files = build_sharded_files(staging, shard_total=1 if data == "sparse" else real_total, small_scale=1.0)
        repo.ensure_dirs()
        pinned = []
        for path, real in REAL_FILES:
            src = files[path]
            if path.endswith(".safetensors") and data == "sparse":
                sha = _sha_of_zeros(real)
                blob = repo.blob_path(sha)
                with open(blob, "wb") as f:
                    f.truncate(real)
            else:
                sha = _sha_of(src)
                blob = repo.blob_path(sha)
                os.replace(src, blob)
            size = blob.stat().st_size
            pinned.append(PinnedFile(safe_relpath(path), size, sha, lfs=path.endswith(".safetensors")))
            repo.link_snapshot(COMMIT, safe_relpath(path), sha)
        repo.write_ref("main", COMMIT)
        write_lock(lock, Lock().with_pin(QWEN3_VL_8B, Pin(revision="main", commit=COMMIT, source="hub",
                                                            files=tuple(pinned))))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mirrors.write_text(f"sources:\n  - name: hub\n    kind: hf\n    endpoint: http://127.0.0.1:{port}\n")
    return cache, lock, mirrors


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return time.perf_counter() - t0, p


def cpu_timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall seconds and CPU seconds (user + system) of one run: on a loaded machine the CPU time is
    what the command costs, the wall time what it costs there and then."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, p = timed(cmd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), p


def top_imports(env: dict[str, str], n: int = 8) -> list[tuple[int, str]]:
    p = subprocess.run([*QF[:1], "-X", "importtime", *QF[1:], "--help"], capture_output=True, text=True, env=env)
    rows = []
    for line in p.stderr.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2]
            if name.startswith(" ") and not name.startswith("  "):  # top level: not imported by another module
                rows.append((int(parts[1]), name.strip()))
    return sorted(rows, reverse=True)[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--reverify-runs", type=int, default=2)
    ap.add_argument("--data", choices=("sparse", "random"), default="sparse")
    ap.add_argument("--work", type=Path, default=Path("/tmp/qf-bench-noop"))
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()

    cache, lock, mirrors = build(a.work, a.data)
    # As installed: byte-compiled modules cached (kept out of the checkout), online mode.
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", PYTHONPYCACHEPREFIX=str(a.work / "pycache"))
    for var in ("HF_HUB_OFFLINE", "QWEN_FETCH_OFFLINE", "PYTHONDONTWRITEBYTECODE"):
        env.pop(var, None)
    timed([*QF, "--help"], env)  # fills the bytecode cache
    pull = [*QF, "pull", QWEN3_VL_8B, "--frozen", "--cache-dir", str(cache), "--lock", str(lock),
            "--config", str(mirrors)]
    first, p = timed([*pull, "--no-smoke", "--json"], env)  # re-hashes what has no stamp yet, and stamps it
    if p.returncode != 0:
        sys.exit(f"first pull failed ({p.returncode}): {p.stdout}{p.stderr}")
    check = json.loads(timed([*pull, "--no-smoke", "--json"], env)[1].stdout)
    assert check["used_cache"] and check["stamp_trusted_files"] == len(REAL_FILES), check

    cases = {
        "pull --frozen (no-op, stamps trusted)": [*pull],
        "pull --frozen --no-smoke": [*pull, "--no-smoke"],
        "qwen-fetch --help": [*QF, "--help"],
        "python -c pass (interpreter start)": [sys.executable, "-c", "pass"],
    }
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    names = list(cases)
    for r in range(a.runs):
        for name in names[r % len(names):] + names[:r % len(names)]:
            wall, cpu, p = cpu_timed(cases[name], env)
            if p.returncode != 0:
                sys.exit(f"{name} failed ({p.returncode}): {p.stderr[-2000:]}")
            times[name].append((wall, cpu))
    rev = [cpu_timed([*pull, "--no-smoke", "--reverify"], env)[:2] for _ in range(a.reverify_runs)]
    if rev:
        times["pull --frozen --reverify --no-smoke (re-hashes 17.5 GB)"] = rev
    rows = []
    for k, v in times.items():
        walls, cpus = [w for w, _ in v], [c for _, c in v]
        rows.append((k, statistics.median(walls), min(walls), max(walls), statistics.median(cpus), len(v)))
    imports = top_imports(env)

    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    lines = [f"machine: {os.cpu_count()} CPUs, load average {' '.join(load)} at the end; data: {a.data}; "
             f"first (stamping) pull {first:.1f} s", "",
             "| command | wall median s | wall min s | wall max s | CPU (user+sys) median s | runs |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| `{k}` | {m:.3f} | {lo:.3f} | {hi:.3f} | {c:.3f} | {n} |" for k, m, lo, hi, c, n in rows]
    lines += ["", "`python -X importtime -m qwen_fetch --help`, largest top-level imports (cumulative us):", ""]
    lines += [f"- {name}: {us}" for us, name in imports]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    main()
