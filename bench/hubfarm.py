"""A repo shaped like Qwen3-VL-8B-Instruct, built fast on many cores, served by several hub processes.

    python bench/hubfarm.py build --store DIR --gb 17.54        # prints the commit
    python bench/hubfarm.py serve --store DIR --port P          # one server process (the farm starts several)

The shards are written in parallel (one thread per file; sha256 computed while writing, so the
store needs no second read) at the real repo's sizes scaled to ``--gb``.  ``HubFarm`` starts
``procs`` processes of :class:`tests.support.hub.HubServer` on one port (``SO_REUSEPORT``: the
kernel spreads connections over them), each fed the precomputed digests so none re-hashes the
store, with bodies sent by ``sendfile``: the servers' CPU is measured and reported, so a run shows
whether the server, not the client, was the bound.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qwen_fetch.core.digests import git_blob_header  # noqa: E402
from tests.support.fixtures import QWEN3_VL_8B, REAL_FILES, REAL_SHARD_BYTES  # noqa: E402

MODEL = QWEN3_VL_8B
MIB = 1 << 20


def _write_random(path: Path, size: int, seed: int) -> tuple[str, str]:
    """Pseudo-random bytes (a random MiB re-keyed per MiB, no two MiB alike); returns (sha256, git oid)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.shake_256(b"qwen-fetch-many-%d" % seed).digest(MIB)
    h = hashlib.sha256()
    g = hashlib.sha1(git_blob_header(size), usedforsecurity=False) if size < 64 * MIB else None
    buf = bytearray(block * 16)  # 16 MiB writes
    view = memoryview(buf)
    with open(path, "wb", buffering=0) as f:
        written, i = 0, 0
        while written < size:
            for k in range(16):  # re-key each MiB
                view[k * MIB:k * MIB + 32] = hashlib.sha256(b"%d:%d" % (seed, i + k)).digest()
            n = min(len(buf), size - written)
            chunk = view[:n]
            f.write(chunk)
            h.update(chunk)
            if g is not None:
                g.update(chunk)
            written += n
            i += 16
    return h.hexdigest(), (g.hexdigest() if g is not None else "0" * 40)


def build(store: Path, total_gb: float) -> str:
    """Write the repo into ``store`` (a :class:`~tests.support.repo.RepoStore` layout); returns the commit."""
    meta = store / "meta.json"
    if meta.exists():
        m = json.loads(meta.read_text())
        if m.get("gb") == total_gb:
            return str(m["commit"])
    shard_total = int(total_gb * 1e9) - sum(s for p, s in REAL_FILES if not p.endswith(".safetensors"))
    sizes = {p: (int(s * shard_total / REAL_SHARD_BYTES) if p.endswith(".safetensors") else s) for p, s in REAL_FILES}
    stage = store / "stage"
    digests: dict[str, tuple[str, str]] = {}
    errors: list[BaseException] = []

    def one(i: int, p: str) -> None:
        try:
            digests[p] = _write_random(stage / p, sizes[p], i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(sizes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    commit = hashlib.sha1(json.dumps(sorted(digests.items())).encode()).hexdigest()
    repo = store / MODEL
    final = repo / "commits" / commit
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        import shutil

        shutil.rmtree(final)
    stage.rename(final)
    (repo / "refs.json").write_text(json.dumps({"main": commit}))
    known = {str(final / p): [sizes[p], d[0], d[1]] for p, d in digests.items()}
    meta.write_text(json.dumps({"gb": total_gb, "commit": commit, "known": known}))
    return commit


def serve(store: Path, port: int) -> None:
    """One hub process on ``port`` (shared with the farm's others), digests from ``meta.json``."""
    from tests.support import hub, repo

    known = json.loads((store / "meta.json").read_text())["known"]

    def hashed(disk: str, mtime_ns: int, size: int) -> tuple[str, str]:
        if disk in known:
            return known[disk][1], known[disk][2]
        return repo._hash_cached.__wrapped__(disk, mtime_ns, size)  # type: ignore[attr-defined]

    repo._hash_cached = hashed  # type: ignore[assignment]
    hub._QuietServer.allow_reuse_port = True  # type: ignore[attr-defined]
    server = hub.HubServer(repo.RepoStore(store), port=port)
    print("ready", flush=True)
    server.httpd.serve_forever(poll_interval=0.2)


class HubFarm:
    """``procs`` hub processes on one loopback port; ``cpu_s()`` is their CPU time so far."""

    def __init__(self, store: Path, procs: int) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        self.procs = [subprocess.Popen([sys.executable, __file__, "serve", "--store", str(store), "--port",
                                        str(self.port)], stdout=subprocess.PIPE, env=env, text=True)
                      for _ in range(procs)]
        for p in self.procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("a hub process did not start")
        self.url = f"http://127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for p in self.procs:
            try:
                fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
            except OSError:
                pass
        return total

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()

    def __enter__(self) -> HubFarm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--store", type=Path, required=True)
    b.add_argument("--gb", type=float, default=17.54)
    s = sub.add_parser("serve")
    s.add_argument("--store", type=Path, required=True)
    s.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    if args.cmd == "build":
        t0 = time.perf_counter()
        print(build(args.store, args.gb), f"{time.perf_counter() - t0:.1f}s")
    else:
        serve(args.store, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
