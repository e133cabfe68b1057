#!/usr/bin/env python3
"""Fleet check: one `qwen-fetch serve` on loopback, 8 `qwen-fetch pull` nodes and 2 `hf download` nodes at once.

    .venv/bin/python bench/fleet.py [--mib 512] [--pulls 8] [--hf 2] [--out bench/results/fleet.md]

1. Builds a repo shaped like Qwen3-VL-8B-Instruct (4 shards in the real size ratios,
   ``--mib`` MiB of shards, small files at 1 % of their real size), serves it from the
   loopback test hub, and pulls it once into an "origin" cache with a lockfile: the
   machine that downloaded from outside.
2. Starts ``qwen-fetch serve --lock`` over that cache (a subprocess, port 0).
3. Starts every client at once, each with its own cache dir: ``qwen-fetch pull --frozen``
   (a ``kind: hf`` source pointing at serve) and ``hf download`` (``HF_ENDPOINT``).
4. Checks that every node holds identical bytes equal to the pins: ``qwen-fetch verify``
   for the pull nodes, a re-hash against the lock plus ``hf cache verify`` for the hf nodes.
5. Reports wall time per client and aggregate throughput (bytes delivered / wall time
   of the whole fleet), and writes a Markdown table.

Exit status 1 if any node fails or holds different bytes.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qwen_fetch.hashing import hash_file  # noqa: E402
from qwen_fetch.lockfile import read_lock  # noqa: E402
from qwen_fetch.testing.fixtures import QWEN3_VL_8B, add_sharded_repo  # noqa: E402
from qwen_fetch.testing.hub import HubServer  # noqa: E402
from qwen_fetch.testing.repo import RepoStore  # noqa: E402

VENV_BIN = Path(sys.executable).parent
MODEL = QWEN3_VL_8B


@dataclass
class Node:
    name: str
    kind: str  # "qwen-fetch" or "hf"
    cache: Path
    proc: subprocess.Popen[str]
    started: float
    seconds: float = 0.0
    rc: int | None = None
    ok: bool = False
    note: str = ""


def mirrors_yaml(path: Path, url: str) -> Path:
    path.write_text(f"sources:\n  - name: lan\n    kind: hf\n    endpoint: {url}\n    priority: 10\n")
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def snapshot_hashes(snap: Path) -> dict[str, str]:
    return {p.relative_to(snap).as_posix(): hash_file(p).sha256 for p in sorted(snap.rglob("*")) if p.is_file()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=512, help="total shard size in MiB (the real model: 17.5 GB)")
    ap.add_argument("--pulls", type=int, default=8)
    ap.add_argument("--hf", type=int, default=2)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "tmp" / "fleet")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fleet.md")
    args = ap.parse_args()

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = dict(os.environ, HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               NO_PROXY="127.0.0.1,localhost", PYTHONUNBUFFERED="1")
    for k in ("HF_ENDPOINT", "HF_HUB_CACHE", "HF_TOKEN", "QWEN_FETCH_CONFIG"):
        env.pop(k, None)

    # 1. origin: downloaded once from "outside" (the loopback test hub), pinned.
    store = RepoStore(work / "store")
    commit = add_sharded_repo(store, MODEL, shard_total=args.mib << 20)
    origin, lock = work / "origin-cache", work / "qwen-fetch.lock"
    with HubServer(store) as hub:
        r = subprocess.run([str(VENV_BIN / "qwen-fetch"), "pull", MODEL, "--config", str(mirrors_yaml(work / "hub.yaml", hub.url)),
                            "--cache-dir", str(origin), "--lock", str(lock), "--no-smoke", "--json"],
                           env=env, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr)
        return 1
    pin = read_lock(lock).pins(MODEL)[0]
    expected = {f.path: f.sha256 for f in pin.files}
    model_bytes = sum(f.size for f in pin.files)
    print(f"origin: {MODEL}@{commit[:12]}, {len(pin.files)} files, {model_bytes / 2**20:.0f} MiB")

    # 2. serve, locked.
    serve = subprocess.Popen([str(VENV_BIN / "qwen-fetch"), "serve", "--cache-dir", str(origin), "--port", "0",
                              "--lock", str(lock)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert serve.stdout is not None
    line = serve.stdout.readline()
    if not line.startswith("listening on "):
        serve.kill()
        print("serve did not start:", line, serve.stderr.read() if serve.stderr else "", file=sys.stderr)
        return 1
    url = line.split()[-1]
    lan = mirrors_yaml(work / "lan.yaml", url)
    print(f"serve: {url}")

    def pull_cmd(cache: Path) -> list[str]:
        return [str(VENV_BIN / "qwen-fetch"), "pull", MODEL, "--config", str(lan), "--cache-dir", str(cache),
                "--lock", str(lock), "--frozen", "--no-smoke", "--json"]

    def hf_cmd(cache: Path) -> list[str]:
        return [str(VENV_BIN / "hf"), "download", MODEL, "--cache-dir", str(cache)]

    hf_env = dict(env, HF_ENDPOINT=url)
    # Baseline: each tool alone (includes interpreter start-up, which the fleet pays 10 times on shared cores).
    solo: dict[str, float] = {}
    for name, cmd, e in (("qwen-fetch pull", pull_cmd(work / "solo-pull"), env),
                         ("hf download", hf_cmd(work / "solo-hf"), hf_env)):
        t = time.monotonic()
        rc = subprocess.run(cmd, env=e, capture_output=True, text=True).returncode
        solo[name] = time.monotonic() - t if rc == 0 else float("nan")
        print(f"solo {name}: {solo[name]:.1f}s")

    # 3. the fleet, all at once.
    load_before = os.getloadavg()[0]
    nodes: list[Node] = []
    t0 = time.monotonic()
    for i in range(args.pulls):
        cache = work / f"node{i}"
        nodes.append(Node(f"pull-{i}", "qwen-fetch", cache, subprocess.Popen(
            pull_cmd(cache), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), time.monotonic()))
    for i in range(args.hf):
        cache = work / f"hf{i}"
        nodes.append(Node(f"hf-{i}", "hf", cache, subprocess.Popen(
            hf_cmd(cache), env=hf_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), time.monotonic()))
    pending = list(nodes)
    while pending:
        for n in list(pending):
            if n.proc.poll() is not None:
                n.rc, n.seconds = n.proc.returncode, time.monotonic() - n.started
                pending.remove(n)
        time.sleep(0.05)
    wall = time.monotonic() - t0
    load_after = os.getloadavg()[0]

    # 4. identical, verified bytes on every node.
    for n in nodes:
        _, err = n.proc.communicate()
        if n.rc != 0:
            n.note = (err or "").strip().splitlines()[-1][:120] if err else f"exit {n.rc}"
            continue
        snap = n.cache / "models--Qwen--Qwen3-VL-8B-Instruct" / "snapshots" / pin.commit
        same = snapshot_hashes(snap) == expected
        if n.kind == "qwen-fetch":
            v = subprocess.run([str(VENV_BIN / "qwen-fetch"), "verify", MODEL, "--cache-dir", str(n.cache),
                                "--lock", str(lock)], env=env, capture_output=True, text=True)
            n.ok, n.note = same and v.returncode == 0, "qwen-fetch verify: " + ("ok" if v.returncode == 0 else "FAILED")
        else:
            v = subprocess.run([str(VENV_BIN / "hf"), "cache", "verify", MODEL, "--cache-dir", str(n.cache)],
                               env=dict(env, HF_ENDPOINT=url), capture_output=True, text=True)
            # hf cache verify re-hashes against the tree that serve lists (sha256 / git blob ids)
            n.ok = same and v.returncode == 0
            n.note = f"re-hash vs lock: {'ok' if same else 'DIFFERENT'}; hf cache verify: {'ok' if v.returncode == 0 else 'FAILED'}"
        if not same:
            n.note += " (bytes differ from the pins)"

    serve_cpu = cpu_seconds(serve.pid)
    serve.terminate()
    serve.communicate(timeout=30)
    delivered = model_bytes * sum(1 for n in nodes if n.rc == 0)
    agg = delivered / wall / 2**20
    all_ok = all(n.ok for n in nodes)
    rows = "\n".join(f"| {n.name} | {n.kind} | {n.seconds:.1f} | {model_bytes / n.seconds / 2**20:.0f} | "
                     f"{'yes' if n.ok else 'NO'} | {n.note} |" for n in nodes)
    solo_line = "; ".join(f"`{k}` {v:.1f} s ({model_bytes / v / 2**20:.0f} MiB/s)" for k, v in solo.items())
    host = f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"
    md = f"""# Fleet check: one `qwen-fetch serve`, {args.pulls} `qwen-fetch pull` + {args.hf} `hf download` clients

Command: `.venv/bin/python bench/fleet.py --mib {args.mib} --pulls {args.pulls} --hf {args.hf}`
Host: {host}; everything on loopback (server and all clients share the CPU cores);
1-minute load average {load_before:.1f} before the fleet started, {load_after:.1f} when it finished.
Model: `{MODEL}`-shaped repo, {len(pin.files)} files, {model_bytes / 2**20:.0f} MiB per copy; `serve --lock` (verified pin).

Each tool alone first (same server, one client): {solo_line}

| client | tool | seconds | MiB/s | identical + verified | check |
|---|---|---:|---:|---|---|
{rows}

**Aggregate: {delivered / 2**20:.0f} MiB delivered to {len(nodes)} nodes in {wall:.1f} s = {agg:.0f} MiB/s**
({'all nodes hold identical bytes equal to the lock' if all_ok else 'SOME NODES FAILED'}).

`serve` itself used {serve_cpu:.1f} CPU-seconds for the whole run (start-up verification of the pin and
the solo runs included): {delivered / 2**20 / max(serve_cpu, 1e-9):.0f} MiB delivered per CPU-second, the
bodies going out through `sendfile`; the clients' hashing and writing is what the two cores spend their
time on.
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md)
    print(md)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
