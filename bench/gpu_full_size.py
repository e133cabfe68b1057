"""Full-size benchmark: pull + verify + smoke-load a random-weight Qwen3-VL-8B-Instruct on a GPU,
and ``hf download`` of the same repo for comparison, all over a loopback hub.

    python3 bench/gpu_full_size.py --work /tmp/qfbench --out results/   [--tiny] [--budget 540]

Steps (each timed; results are written after every step, so a run cut short still reports):
1. build the model (random bf16 weights from the real config, 4 shards like the real repo;
   ``--tiny`` builds the tiny model instead, to rehearse the script on a CPU box);
2. add it to a ``RepoStore`` and serve it with ``HubServer`` on 127.0.0.1 (hashes warmed first,
   so the hub's own hashing is not billed to the client);
3. ``qwen-fetch pull`` (no smoke) into a fresh HF cache, with a fresh lock;
4. ``qwen-fetch verify`` of that snapshot (offline re-hash against the lock);
5. ``qwen-fetch smoke`` onto the GPU (``--device cuda``; ``cpu`` with ``--tiny``);
6. ``hf download`` of the same repo through ``HF_ENDPOINT`` into another cache (the pull's
   cache is deleted first to keep disk use at two copies), if the time budget allows.

Files are hot in the page cache on the serving side, so the transfer numbers measure the
client (hashing, writing, connection handling), not a remote network.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout, installed or not
MODEL = "Qwen/Qwen3-VL-8B-Instruct"


def _run(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float) -> tuple[int, float, str, str]:
    t0 = time.perf_counter()
    full = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **(env or {}))
    try:
        p = subprocess.run(cmd, check=False, capture_output=True, text=True, env=full, timeout=timeout, cwd=ROOT)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = 124, str(exc.stdout or ""), f"timed out after {timeout:.0f}s"
    return rc, time.perf_counter() - t0, out, err


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _dir_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def _env_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    for mod in ("torch", "transformers", "huggingface_hub"):
        try:
            facts[mod] = __import__(mod).__version__
        except ImportError:
            facts[mod] = None
    try:
        import torch

        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
            facts["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    except ImportError:
        pass
    return facts


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work)
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.start = time.monotonic()
        self.results: dict[str, Any] = {"env": _env_facts(), "steps": {}}

    def left(self) -> float:
        return float(self.args.budget) - (time.monotonic() - self.start)

    def record(self, step: str, **data: Any) -> None:
        self.results["steps"][step] = data
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2, sort_keys=True, default=str))
        print(f"[{time.monotonic() - self.start:6.1f}s] {step}: "
              + json.dumps({k: v for k, v in data.items() if k not in ("stdout", "report")}, default=str),
              flush=True)

    def build(self) -> Path:
        model_dir = self.work / "model"
        shutil.rmtree(model_dir, ignore_errors=True)
        kind = "tiny" if self.args.tiny else "full"
        code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from pathlib import Path; "
                "from tests.support import tiny_model as t; "
                + ("t.build_tiny_qwen3_vl(Path(sys.argv[1]), shards=4)" if self.args.tiny
                   else "t.build_full_size_qwen3_vl(Path(sys.argv[1]))"))
        # A child process: the GPU memory used to initialise the weights is gone before the smoke-load.
        rc, secs, _out, err = _run([sys.executable, "-c", code, str(model_dir)], timeout=max(60, self.left()))
        files = sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else []
        self.record("build", rc=rc, seconds=round(secs, 1), kind=kind, files=files,
                    bytes=_dir_bytes(model_dir) if model_dir.is_dir() else 0, stderr_tail=err[-1500:] if rc else "")
        if rc != 0:
            raise SystemExit(f"build failed: {err[-3000:]}")
        return model_dir

    def step(self, name: str, cmd: list[str], *, nbytes: int, env: dict[str, str] | None = None,
             parse: bool = True) -> Any:
        rc, secs, out, err = _run(cmd, env=env, timeout=max(30, self.left()))
        data = _json(out) if parse else None
        self.record(name, rc=rc, seconds=round(secs, 2), bytes=nbytes,
                    gb_per_s=round(nbytes / secs / 1e9, 3) if secs > 0 else None,
                    stderr_tail=err[-1500:] if rc else "", report=data)
        return data

    def run(self) -> None:
        from tests.support.hub import HubServer
        from tests.support.repo import RepoStore
        from tests.support.tiny_model import tiny_model_files

        self.work.mkdir(parents=True, exist_ok=True)
        model_dir = self.build()
        total = _dir_bytes(model_dir)

        t0 = time.perf_counter()
        store = RepoStore(self.work / "store")
        files: dict[str, bytes | Path] = dict(tiny_model_files(model_dir))
        commit = store.add_commit(MODEL, files)
        store.files(MODEL, commit)  # warm the hub's hash cache (same process as the server)
        self.record("store", seconds=round(time.perf_counter() - t0, 1), commit=commit, bytes=total)

        cache = self.work / "cache"
        lock = self.work / "qwen-fetch.lock"
        shutil.rmtree(cache, ignore_errors=True)
        lock.unlink(missing_ok=True)
        qf = [sys.executable, "-m", "qwen_fetch"]
        with HubServer(store) as hub:
            mirrors = self.work / "mirrors.yaml"
            mirrors.write_text(f"sources:\n  - name: loopback\n    kind: hf\n    endpoint: {hub.url}\n    priority: 10\n")
            self.step("pull", qf + ["pull", MODEL, "--config", str(mirrors), "--cache-dir", str(cache),
                                    "--lock", str(lock), "--no-smoke", "--json"], nbytes=total)
            self.step("verify", qf + ["verify", MODEL, "--cache-dir", str(cache), "--lock", str(lock), "--json"],
                      nbytes=total)
            device = "cpu" if self.args.tiny else "cuda"
            smoke = self.step("smoke", qf + ["smoke", MODEL, "--cache-dir", str(cache), "--lock", str(lock),
                                             "--device", device, "--json"], nbytes=total)
            if smoke:
                self.results["smoke_report"] = smoke
            # hf download: the same bytes, from the same hub, into an empty cache.
            if self.left() < self.args.hf_reserve:
                self.record("hf_download", skipped=f"only {self.left():.0f}s of the budget left")
                return
            shutil.rmtree(cache, ignore_errors=True)
            hf_cache = self.work / "hf-cache"
            shutil.rmtree(hf_cache, ignore_errors=True)
            hf = shutil.which("hf") or str(Path(sys.executable).with_name("hf"))
            self.step("hf_download", [hf, "download", MODEL, "--cache-dir", str(hf_cache)], nbytes=total,
                      env={"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_TELEMETRY": "1",
                           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}, parse=False)
            got = _dir_bytes(hf_cache / "models--Qwen--Qwen3-VL-8B-Instruct" / "blobs") if hf_cache.is_dir() else 0
            self.results["steps"]["hf_download"]["downloaded_bytes"] = got
            self.record("hf_download_check", complete=got == total, downloaded_bytes=got)
            shutil.rmtree(hf_cache, ignore_errors=True)


def render_markdown(results: dict[str, Any]) -> str:
    env, steps = results["env"], results["steps"]
    lines = [(f"Device: {env.get('gpu', 'no GPU')} ({env.get('gpu_memory_gib', '?')} GiB), {env.get('cpus')} CPUs; "
              f"torch {env.get('torch')}, transformers {env.get('transformers')}, "
              f"huggingface_hub {env.get('huggingface_hub')}, Python {env.get('python')}."), ""]
    b = steps.get("build", {})
    lines += [(f"Model: random-weight Qwen3-VL-8B-Instruct ({b.get('kind')}), {b.get('bytes', 0) / 1e9:.2f} GB, "
               f"files: {', '.join(b.get('files', []))}."), "",
              "| step | seconds | GB/s | result |", "| --- | ---: | ---: | --- |"]
    for name in ("pull", "verify", "smoke", "hf_download"):
        s = steps.get(name)
        if not s:
            continue
        if "skipped" in s:
            lines.append(f"| {name} | - | - | skipped: {s['skipped']} |")
            continue
        ok = "ok" if s.get("rc") == 0 else f"exit {s.get('rc')}"
        lines.append(f"| {name} | {s['seconds']:.1f} | {s.get('gb_per_s') or 0:.2f} | {ok} |")
    sm = results.get("smoke_report")
    if sm:
        peak = sm.get("peak_gpu_memory_bytes")
        peak_s = f"{peak / 2**30:.2f} GiB" if peak else "n/a"
        rate = sm["weight_bytes"] / sm["load_seconds"] / 1e9 if sm["load_seconds"] else 0.0
        lines += ["", (f"Smoke-load: {sm['model_class']} on {sm['device_name']} ({sm['dtype']}): "
                      f"load {sm['load_seconds']:.1f} s ({rate:.2f} GB/s), peak GPU memory {peak_s}, "
                      f"{sm['new_tokens']} new tokens after a {sm['prompt_tokens']}-token {sm['inputs']} prompt "
                      f"in {sm['generate_seconds']:.2f} s ({sm['tokens_per_second']:.1f} tok/s), "
                      f"inputs via {sm['processor']}.")]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/qfbench")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "tmp"))
    ap.add_argument("--tiny", action="store_true", help="rehearse with the tiny model on CPU")
    ap.add_argument("--budget", type=float, default=540.0, help="seconds for the whole run")
    ap.add_argument("--hf-reserve", type=float, default=90.0, help="skip hf download with less time than this left")
    args = ap.parse_args()
    bench = Bench(args)
    try:
        bench.run()
    finally:
        (Path(args.out) / "gpu.md").write_text(render_markdown(bench.results))
        print(render_markdown(bench.results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
