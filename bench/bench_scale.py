#!/usr/bin/env python3
"""How cost grows with the number of files: `lock`, `pull`, `verify --all`, `gc` at N files.

    .venv/bin/python bench/bench_scale.py [--counts 10,100,1000,10000,100000] [--plain]
                                          [--out bench/results/scale.md]

For each N a repo of N small files (``d<k>/f<i>.bin``, 64-191 bytes each, 1,000 per
folder) is served by the loopback test hub, and each command runs as its own process:

1. ``lock``    resolve + list + write the pin (LFS-typed files: sha256 from the listing;
               ``--plain`` makes them plain git files, which ``lock`` downloads and hashes)
2. ``pull``    ``--frozen`` into an empty cache (every file fetched and hashed)
3. ``verify --all``  re-hash the snapshot against the pin
4. ``gc``      plan + execute with the pin kept (nothing to delete: the cost of the scan)

Each row: wall seconds and the peak RSS of that process (``wait4`` ru_maxrss).  The hub
runs in this process with its listing and file table computed once per repo, so its
per-request work does not grow with N the way a re-scan of the repo on disk would.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tests.support.hub as hub_mod  # noqa: E402
from tests.support.hub import HubServer  # noqa: E402
from tests.support.repo import RepoStore, StoredFile, is_lfs  # noqa: E402

MODEL = "bench/many-files"


class TableRepoStore(RepoStore):
    """A RepoStore whose file table is built once per commit (the real hub keeps it in a database)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._tables: dict[tuple[str, str], tuple[list[StoredFile], dict[str, StoredFile]]] = {}

    def add_files(self, repo_id: str, n: int, *, lfs: bool) -> str:
        """Write ``n`` small files straight into a commit folder (faster than add_commit's per-file hashing)."""
        suffix = ".bin" if lfs else ".txt"
        paths = [f"d{i // 1000:04d}/f{i:06d}{suffix}" for i in range(n)]
        commit = hashlib.sha1(f"{n}-{suffix}".encode()).hexdigest()
        base = self.repo_dir(repo_id) / "commits" / commit
        files: list[StoredFile] = []
        for i, p in enumerate(paths):
            body = (f"file {i} ".encode() * 32)[: 64 + i % 128]
            disk = base / p
            disk.parent.mkdir(parents=True, exist_ok=True)
            disk.write_bytes(body)
            blob = b"blob %d\0" % len(body) + body
            files.append(StoredFile(path=p, disk=disk, size=len(body), sha256=hashlib.sha256(body).hexdigest(),
                                    git_oid=hashlib.sha1(blob).hexdigest(), lfs=is_lfs(p, len(body))))
        self.set_ref(repo_id, "main", commit)
        self._tables[(repo_id, commit)] = (files, {f.path: f for f in files})
        return commit

    def files(self, repo_id: str, commit: str) -> list[StoredFile]:
        t = self._tables.get((repo_id, commit))
        return t[0] if t else super().files(repo_id, commit)

    def file(self, repo_id: str, commit: str, path: str) -> StoredFile | None:
        t = self._tables.get((repo_id, commit))
        return t[1].get(path) if t else super().file(repo_id, commit, path)


_tree_entries_uncached = hub_mod._tree_entries


@lru_cache(maxsize=8)
def _tree_entries_once(files_id: int, sub: str) -> list[dict[str, Any]]:
    return _tree_entries_uncached(_FILES[files_id], sub)


_FILES: dict[int, list[StoredFile]] = {}


def _tree_entries(files: list[StoredFile], sub: str) -> list[dict[str, Any]]:
    _FILES[id(files)] = files
    return _tree_entries_once(id(files), sub)


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """Run ``cmd``; (wall s, peak RSS MiB, exit code, stderr tail)."""
    t = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t
    return wall, usage.ru_maxrss / 1024, proc.returncode, err.decode(errors="replace").strip()[-300:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="10,100,1000,10000,100000")
    ap.add_argument("--plain", action="store_true", help="plain git files (lock downloads them) instead of LFS")
    ap.add_argument("--steps", default="lock,pull,verify,gc")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "tmp" / "scale")
    ap.add_argument("--out", type=Path, default=None, help="write a Markdown table here")
    ap.add_argument("--machine", default="")
    ap.add_argument("--profile", type=Path, default=None, help="run each command under cProfile, .prof files here")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    steps = args.steps.split(",")

    hub_mod._tree_entries = _tree_entries  # type: ignore[assignment]
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", HF_HUB_DISABLE_TELEMETRY="1")
    for k in ("HF_ENDPOINT", "HF_HUB_CACHE", "HF_TOKEN", "QWEN_FETCH_CONFIG"):
        env.pop(k, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    qf = [sys.executable, "-m", "qwen_fetch"]
    rows: list[str] = []
    ok = True
    for n in counts:
        work = args.work / str(n)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        store = TableRepoStore(work / "hub")
        t = time.monotonic()
        store.add_files(MODEL, n, lfs=not args.plain)
        print(f"{n} files generated in {time.monotonic() - t:.1f}s", flush=True)
        lock, cache = work / "q.lock", work / "cache"
        with HubServer(store) as hub:
            cfg = work / "hub.yaml"
            cfg.write_text(f"sources:\n  - name: hub\n    kind: hf\n    endpoint: {hub.url}\n")
            cmds = {
                "lock": [*qf, "lock", MODEL, "--config", str(cfg), "--lock", str(lock), "--json"],
                "pull": [*qf, "pull", MODEL, "--config", str(cfg), "--lock", str(lock), "--cache-dir", str(cache),
                         "--frozen", "--no-smoke", "--json"],
                "verify": [*qf, "verify", "--all", "--lock", str(lock), "--cache-dir", str(cache), "--json"],
                "gc": [*qf, "gc", "--lock", str(lock), "--cache-dir", str(cache), "--yes", "--json"],
            }
            cells = []
            for step in ("lock", "pull", "verify", "gc"):
                if step not in steps:
                    cells.append("–")
                    continue
                cmd = cmds[step]
                if args.profile:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    cmd = [sys.executable, "-m", "cProfile", "-o", str(args.profile / f"{step}-{n}.prof"), *cmd[1:]]
                wall, rss, rc, err = run(cmd, env)
                print(f"{n:>7} {step:<6} {wall:7.2f}s {rss:7.0f} MiB rc={rc} {err[-120:] if rc else ''}", flush=True)
                ok = ok and rc == 0
                cells.append(f"{wall:.2f} s / {rss:.0f} MiB" + ("" if rc == 0 else f" (exit {rc})"))
        rows.append(f"| {n:,} | " + " | ".join(cells) + " |")
        shutil.rmtree(work, ignore_errors=True)
    table = ("| files | `lock` | `pull --frozen` | `verify --all` | `gc` |\n|---:|---|---|---|---|\n"
             + "\n".join(rows))
    print(table)
    if args.out:
        kind = "plain git files (lock downloads each)" if args.plain else "LFS-typed files (sha256 from the listing)"
        host = args.machine or f"{platform.machine()}, {os.cpu_count()} CPU cores"
        args.out.write_text(f"Command: `.venv/bin/python bench/bench_scale.py --counts {args.counts}"
                            f"{' --plain' if args.plain else ''}`\nMachine: {host}; Python "
                            f"{platform.python_version()}; {kind}.\n\n{table}\n")
    return 0 if ok else 1


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))  # the hub's threads
    sys.exit(main())
