#!/usr/bin/env python3
"""Before/after in one run: another tree's qwen-fetch against this one, interleaved, on one machine state.

    python3 bench/ab_trees.py --baseline DIR --gb 17.54 --rounds 3 --out "$OUT"

``DIR`` holds an older tree's ``qwen_fetch`` package (e.g. ``git worktree add --detach /tmp/old <commit>``,
then point at it, or a copy of its ``qwen_fetch/`` folder).  The repo is the Qwen3-VL-8B-Instruct layout of
``bench/hubfarm.py`` scaled to ``--gb``, served by several hub processes on one loopback port.  This tree
writes the lock once (``qwen-fetch lock``: plain sha256 pins, which every version reads); then, per round and
in alternating order, each tree runs ``pull --frozen`` into a fresh cache and ``verify`` of that cache.
Each command is a fresh interpreter started with ``-P`` (no working directory on ``sys.path``) and
``PYTHONPATH`` naming only its tree, so neither tree can import the other.  Reported: median wall, GB/s,
CPU-s and peak RSS per tree and step, and every run; ``OUT/ab_trees.md``.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from host_many_cores import cpus, run_cmd, strip_roots  # noqa: E402
from hubfarm import MODEL, HubFarm, build  # noqa: E402


def qf() -> list[str]:
    return [sys.executable, "-P", "-m", "qwen_fetch"]


def env_for(tree: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy") and not k.startswith(("HF_", "QWEN_FETCH"))}
    env.update(PYTHONPATH=str(tree), HOME=str(home), HF_HOME=str(home / "hf"), NO_PROXY="*",
               HF_HUB_DISABLE_TELEMETRY="1")
    if "truststore" not in sys.modules:
        try:
            import truststore  # noqa: F401
        except ImportError:  # a bare host: a CA file instead of the OS store (loopback http anyway)
            try:
                import certifi

                env["SSL_CERT_FILE"] = certifi.where()
            except ImportError:
                pass
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", type=Path, required=True, help="folder holding the other tree's qwen_fetch/")
    ap.add_argument("--gb", type=float, default=float(os.environ.get("QF_AB_GB", "2")))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--procs", type=int, default=4, help="hub processes")
    ap.add_argument("--work", type=Path, default=Path("/tmp/qf-ab-trees"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/qf-ab-out"))
    ap.add_argument("--timeout", type=float, default=240.0)
    a = ap.parse_args()
    trees = {"before": a.baseline.resolve(), "after": ROOT}
    if not (trees["before"] / "qwen_fetch" / "__init__.py").is_file():
        sys.exit(f"{trees['before']}: no qwen_fetch package there")
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    a.out.mkdir(parents=True, exist_ok=True)
    for t in trees.values():  # as after pip install: bytecode cached, so neither pays compilation
        compileall.compile_dir(str(t / "qwen_fetch"), quiet=1)
    store = a.work / "store"
    build(store, a.gb)
    total = sum(p.stat().st_size for p in (store / MODEL / "commits").rglob("*") if p.is_file())
    runs: list[dict[str, Any]] = []
    with HubFarm(store, a.procs) as farm:
        mirrors = a.work / "mirrors.yaml"
        mirrors.write_text(f"sources:\n  - name: farm\n    kind: hf\n    endpoint: {farm.url}\n")
        lock, plain = a.work / "written.lock", a.work / "qwen-fetch.lock"
        r = run_cmd(qf() + ["lock", MODEL, "--config", str(mirrors), "--lock", str(lock)],
                    env_for(ROOT, a.work / "home"), a.timeout)
        if r["rc"] != 0:
            sys.exit("lock failed: " + r["out"][-800:])
        strip_roots(lock, plain)  # sha256 pins only: the form every version reads
        for rnd in range(a.rounds):
            order = list(trees) if rnd % 2 == 0 else list(reversed(trees))
            for step in ("pull --frozen", "verify"):
                for name in order:
                    tree = trees[name]
                    cache = a.work / f"cache-{name}"
                    env = env_for(tree, a.work / f"home-{name}")
                    if step == "pull --frozen":
                        shutil.rmtree(cache, ignore_errors=True)
                        argv = qf() + ["pull", MODEL, "--config", str(mirrors), "--cache-dir", str(cache),
                                           "--lock", str(plain), "--frozen", "--no-smoke", "--json"]
                    else:
                        argv = qf() + ["verify", MODEL, "--cache-dir", str(cache), "--lock", str(plain),
                                           "--json"]
                    res = run_cmd(argv, env, a.timeout)
                    res.update(tree=name, step=step, round=rnd + 1, load1=os.getloadavg()[0])
                    runs.append(res)
                    print(f"round {rnd + 1} {step} {name}: rc={res['rc']} {res['wall_s']:.2f} s "
                          f"cpu {res['cpu_s']:.1f} s rss {res['peak_rss'] / 1e6:.0f} MB", flush=True)
                    if res["rc"] != 0:
                        print(res["out"][-800:], flush=True)
    lines = [f"{time.strftime('%Y-%m-%d')}: {cpus()} usable CPUs, Python {sys.version.split()[0]}, "
             f"{total / 1e9:.2f} GB layout, {a.rounds} rounds, interleaved; before = `{trees['before']}`, "
             "after = this tree.", "",
             "| step | tree | median wall s | GB/s | median CPU-s | peak RSS | runs (wall s) |",
             "|---|---|---:|---:|---:|---:|---|"]
    for step in ("pull --frozen", "verify"):
        for name in trees:
            rs = [r for r in runs if r["step"] == step and r["tree"] == name and r["rc"] == 0]
            if not rs:
                lines.append(f"| {step} | {name} | failed | | | | |")
                continue
            wall = statistics.median(r["wall_s"] for r in rs)
            lines.append(f"| {step} | {name} | {wall:.2f} | {total / wall / 1e9:.2f} | "
                         f"{statistics.median(r['cpu_s'] for r in rs):.1f} | "
                         f"{max(r['peak_rss'] for r in rs) / 1e6:.0f} MB | "
                         f"{', '.join('%.2f' % r['wall_s'] for r in rs)} |")
    text = "\n".join(lines) + "\n"
    (a.out / "ab_trees.md").write_text(text)
    print(text)
    return 0 if all(r["rc"] == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
