#!/usr/bin/env python3
"""Fan-out: one `sync` into a real S3 server, then N nodes `pull --frozen` from it, then N from `serve`.

    .venv/bin/python bench/fleet.py [--mib 1024] [--nodes 16] [--hf 0] [--out bench/results/fleet.md]

1. Builds a repo shaped like Qwen3-VL-8B-Instruct (4 shards in the real size ratios,
   ``--mib`` MiB of shards, small files at 1 % of their real size), serves it from the
   loopback test hub, and pulls it once into an "origin" cache with a lockfile: the
   machine that downloaded from outside.
2. Starts SeaweedFS (``weed server -s3``, private bucket, no anonymous access) and runs
   ``qwen-fetch sync --to s3://...`` signed as its admin identity.
3. Store phase: ``--nodes`` concurrent ``qwen-fetch pull --frozen`` through a ``kind: s3``
   source (presigned GETs, read-only identity), each into its own cache.
4. Serve phase: ``qwen-fetch serve --lock`` over the origin cache and ``--nodes``
   concurrent ``pull --frozen`` through a ``kind: hf`` source (plus ``--hf`` stock
   ``hf download`` clients).
5. Every node: the sha256 of every file of its snapshot equals the pins, and its snapshot
   tree (paths, link targets) equals every other node's.  The weed and serve processes'
   CPU time (from /proc) is reported per phase, with aggregate throughput.

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

from qwen_fetch.store.hasher import hash_file  # noqa: E402
from qwen_fetch.store.lockio import read_lock  # noqa: E402
from tests.support.fixtures import QWEN3_VL_8B, add_sharded_repo  # noqa: E402
from tests.support.hub import HubServer  # noqa: E402
from tests.support.repo import RepoStore  # noqa: E402
from tests.support.seaweed import SeaweedS3  # noqa: E402

VENV_BIN = Path(sys.executable).parent
MODEL = QWEN3_VL_8B
BUCKET = "models"


@dataclass
class Node:
    name: str
    kind: str  # "store", "serve" or "hf"
    cache: Path
    proc: subprocess.Popen[str]
    started: float
    seconds: float = 0.0
    rc: int | None = None
    ok: bool = False
    note: str = ""


@dataclass
class Phase:
    name: str
    server: str
    nodes: list[Node]
    wall: float
    server_cpu: float
    load: tuple[float, float]
    tree: dict[str, str] | None = None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def snapshot_tree(snap: Path) -> dict[str, str]:
    """path -> sha256 of every file, and path -> "-> target" of every link (the tree users see)."""
    out: dict[str, str] = {}
    for p in sorted(snap.rglob("*")):
        rel = p.relative_to(snap).as_posix()
        if p.is_symlink():
            out[rel + "@link"] = os.readlink(p).split("/blobs/")[-1]
        if p.is_file():
            out[rel] = hash_file(p).sha256
    return out


def run_phase(name: str, server: str, cmds: list[tuple[str, str, Path, list[str], dict[str, str]]],
              server_pid: int, commit: str, expected: dict[str, str]) -> Phase:
    cpu0, load0 = cpu_seconds(server_pid), os.getloadavg()[0]
    nodes: list[Node] = []
    t0 = time.monotonic()
    for node_name, kind, cache, cmd, env in cmds:
        nodes.append(Node(node_name, kind, cache, subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), time.monotonic()))
    pending = list(nodes)
    while pending:
        for n in list(pending):
            if n.proc.poll() is not None:
                n.rc, n.seconds = n.proc.returncode, time.monotonic() - n.started
                pending.remove(n)
        time.sleep(0.05)
    wall = time.monotonic() - t0
    phase = Phase(name, server, nodes, wall, cpu_seconds(server_pid) - cpu0, (load0, os.getloadavg()[0]))
    for n in nodes:
        out, err = n.proc.communicate()
        (n.cache.parent / f"{n.name}.out").write_text((out or "") + (err or ""))
        if n.rc != 0:
            n.note = (err or "").strip().splitlines()[-1][:120] if (err or "").strip() else f"exit {n.rc}"
            continue
        tree = snapshot_tree(n.cache / "models--Qwen--Qwen3-VL-8B-Instruct" / "snapshots" / commit)
        files = {k: v for k, v in tree.items() if not k.endswith("@link")}
        if n.kind == "hf":  # hf names a small file's blob by its git blob id: compare contents only
            n.ok = files == expected
        else:
            phase.tree = phase.tree or tree
            n.ok = files == expected and tree == phase.tree
        n.note = "sha256 of every file = pins" + (", tree identical" if n.kind != "hf" else "") if n.ok \
            else "BYTES OR TREE DIFFER"
        shutil.rmtree(n.cache)  # 2 x nodes copies would not fit a small disk
    print(f"{name}: {len(nodes)} nodes in {wall:.1f}s, {server} CPU {phase.server_cpu:.1f}s, "
          f"{sum(n.ok for n in nodes)} ok", flush=True)
    return phase


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=1024, help="total shard size in MiB (the real model: 17.5 GB)")
    ap.add_argument("--nodes", type=int, default=16, help="concurrent pulls per phase")
    ap.add_argument("--hf", type=int, default=0, help="stock `hf download` clients added to the serve phase")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "tmp" / "fleet")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fleet.md")
    ap.add_argument("--machine", default="", help="words for the results file, e.g. 'a 2 vCPU VM, loaded'")
    args = ap.parse_args()

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = dict(os.environ, HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               NO_PROXY="127.0.0.1,localhost", PYTHONUNBUFFERED="1")
    for k in ("HF_ENDPOINT", "HF_HUB_CACHE", "HF_TOKEN", "QWEN_FETCH_CONFIG", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
              "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        env.pop(k, None)
    # `python -m qwen_fetch` from this tree: works in a venv and where the package is only on PYTHONPATH.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    qf = [sys.executable, "-m", "qwen_fetch"]

    # 1. origin: downloaded once from "outside" (the loopback test hub), pinned.
    repo_store = RepoStore(work / "hub")
    commit = add_sharded_repo(repo_store, MODEL, shard_total=args.mib << 20)
    origin, lock = work / "origin-cache", work / "qwen-fetch.lock"
    with HubServer(repo_store) as hub:
        (work / "hub.yaml").write_text(f"sources:\n  - name: hub\n    kind: hf\n    endpoint: {hub.url}\n")
        r = subprocess.run([*qf, "pull", MODEL, "--config", str(work / "hub.yaml"), "--cache-dir", str(origin),
                            "--lock", str(lock), "--no-smoke", "--json"], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr)
        return 1
    shutil.rmtree(work / "hub")
    pin = read_lock(lock).pins(MODEL)[0]
    expected = {f.path: f.sha256 for f in pin.files}
    model_bytes = sum(f.size for f in pin.files)
    print(f"origin: {MODEL}@{commit[:12]}, {len(pin.files)} files, {model_bytes / 2**20:.0f} MiB", flush=True)

    phases: list[Phase] = []
    with SeaweedS3(work / "seaweed", buckets=(BUCKET,)) as sw:
        # 2. one sync, signed as the admin identity.
        dest = f"s3://{BUCKET}/mirror"
        cpu0, t = sw.cpu_seconds(), time.monotonic()
        r = subprocess.run([*qf, "sync", MODEL, "--to", dest, "--s3-endpoint-url", sw.endpoint, "--cache-dir",
                            str(origin), "--lock", str(lock), "--json"], env=dict(env, **sw.admin.env()),
                           capture_output=True, text=True)
        sync_s, sync_cpu = time.monotonic() - t, sw.cpu_seconds() - cpu0
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 1
        print(f"sync: {sync_s:.1f}s, weed CPU {sync_cpu:.1f}s", flush=True)
        anon = sw.anonymous_get(BUCKET, f"mirror/blobs/{pin.files[0].sha256}").status_code

        # 3. store phase: kind: s3 source, presigned GETs, read-only identity.
        s3_yaml = work / "s3.yaml"
        s3_yaml.write_text(f"sources:\n  - name: store\n    kind: s3\n    endpoint: {dest}\n"
                           f"    s3_endpoint_url: {sw.endpoint}\n")
        node_env = dict(env, **sw.reader.env())
        cmds = [(f"store-{i}", "store", work / f"s{i}", [*qf, "pull", MODEL, "--config", str(s3_yaml), "--cache-dir",
                 str(work / f"s{i}"), "--lock", str(lock), "--frozen", "--no-smoke", "--json"], node_env)
                for i in range(args.nodes)]
        phases.append(run_phase("S3 store (SeaweedFS), presigned GETs", "weed", cmds, sw.proc.pid if sw.proc else 0,
                                commit, expected))

    # 4. serve phase.
    serve = subprocess.Popen([*qf, "serve", "--cache-dir", str(origin), "--port", "0", "--lock", str(lock)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert serve.stdout is not None
    line = serve.stdout.readline()
    if not line.startswith("listening on "):
        serve.kill()
        print("serve did not start:", line, serve.stderr.read() if serve.stderr else "", file=sys.stderr)
        return 1
    url = line.split()[-1]
    lan = work / "lan.yaml"
    lan.write_text(f"sources:\n  - name: lan\n    kind: hf\n    endpoint: {url}\n")
    cmds = [(f"serve-{i}", "serve", work / f"v{i}", [*qf, "pull", MODEL, "--config", str(lan), "--cache-dir",
             str(work / f"v{i}"), "--lock", str(lock), "--frozen", "--no-smoke", "--json"], env)
            for i in range(args.nodes)]
    hf_env = dict(env, HF_ENDPOINT=url)
    hf_bin = shutil.which("hf") or str(VENV_BIN / "hf")
    cmds += [(f"hf-{i}", "hf", work / f"h{i}", [hf_bin, "download", MODEL, "--cache-dir",
              str(work / f"h{i}")], hf_env) for i in range(args.hf)]
    try:
        phases.append(run_phase("`qwen-fetch serve --lock`", "serve", cmds, serve.pid, commit, expected))
    finally:
        serve.terminate()
        serve.communicate(timeout=30)

    trees = [p.tree for p in phases if p.tree is not None]
    same_everywhere = len(trees) == len(phases) and all(t == trees[0] for t in trees)
    all_ok = same_everywhere and all(n.ok for p in phases for n in p.nodes)
    host = args.machine or f"{platform.machine()}, {os.cpu_count()} CPU cores"
    sections = []
    for p in phases:
        done = [n for n in p.nodes if n.rc == 0]
        delivered = model_bytes * len(done)
        secs = sorted(n.seconds for n in p.nodes)
        sections.append(
            f"| {p.name} | {len(p.nodes)} | {sum(n.ok for n in p.nodes)} | {p.wall:.1f} | "
            f"{secs[0]:.1f} / {secs[len(secs) // 2]:.1f} / {secs[-1]:.1f} | "
            f"{delivered / p.wall / 2**20:.0f} | {p.server_cpu:.1f} | "
            f"{delivered / 2**20 / max(p.server_cpu, 1e-9):.0f} | {p.load[0]:.1f} → {p.load[1]:.1f} |")
    failures = "\n".join(f"- {n.name}: {n.note}" for p in phases for n in p.nodes if not n.ok) or "- none"
    md = f"""# Fan-out: one `sync` into an S3 store, then {args.nodes} nodes from the store and {args.nodes} from `serve`

Command: `.venv/bin/python bench/fleet.py --mib {args.mib} --nodes {args.nodes} --hf {args.hf}`
Machine: {host}; Python {platform.python_version()}; SeaweedFS `weed server -s3`
({subprocess.run([sw.binary, 'version'], capture_output=True, text=True).stdout.strip().splitlines()[0]}).
Everything runs on loopback: the server and all nodes share the CPU cores, so these are the
machine's limits, not a network's.
Model: `{MODEL}`-shaped repo, {len(pin.files)} files, {model_bytes / 2**20:.0f} MiB per copy.

`sync` of the origin cache into the private bucket: {sync_s:.1f} s, weed {sync_cpu:.1f} CPU-s.
Anonymous GET of a blob: HTTP {anon}. Nodes read the store with a read-only identity through presigned URLs.

| phase | nodes | identical + verified | wall s | node s (min / median / max) | aggregate MiB/s | server CPU-s | MiB per server CPU-s | load avg (1 min) |
|---|---:|---:|---:|---|---:|---:|---:|---|
{chr(10).join(sections)}

Every node: sha256 of every file equal to the lock's pins, and the snapshot tree (paths, link targets)
identical {'on every node of both phases' if same_everywhere else '— NOT identical across phases'}.
Failures:
{failures}
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md)
    print(md)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
