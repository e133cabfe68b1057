"""Many cores, one run: pull, verify and a no-op pull of the full-size Qwen3-VL-8B layout, side by side.

    python3 bench/host_many_cores.py --out "$OUT"            # the 16-core host: 17.54 GB, about 3-5 minutes
    QF_MANY_GB=2 python bench/host_many_cores.py --out /tmp/x # a rehearsal at a small scale

Everything runs on loopback on one machine, in this order, each command a fresh process:

1. the machine: usable CPUs, sha256 limits in memory (one thread, then one per CPU);
2. the repo: the real 15 files with the shards at their real sizes (scaled by ``QF_MANY_GB``/``--gb``),
   written in parallel (``bench/hubfarm.py``) and served by several hub processes on one port, bodies
   by ``sendfile``; the servers' CPU is reported per step;
3. ``pull`` x2 into a fresh cache with a fresh lock (these record chunk roots), then one ``pull --frozen``
   into a fresh cache against that lock (roots not computed: what every CI run or fleet node does);
4. three traced in-process pulls (``bench/pull_trace.py``): the engine's read-back piece at 256 KiB and
   4 MiB with the default connections, then 4 MiB with 24: per-file hashing timelines, time inside sha256
   ``update`` (wall vs CPU: the GIL's share), GIL lateness;
5. ``verify`` x2 with the roots in the lock and x2 with a copy of the lock without roots (sha256), interleaved;
6. the no-op ``pull --frozen`` x2 (stamps trusted: nothing read), and once with ``--reverify``.

Per command: wall time, rate, CPU-s (user+sys, ``wait4``), peak RSS (``VmHWM``) and the peak of its
anonymous and file-backed parts (``RssAnon``/``RssFile``, sampled every 10 ms): mapped file pages count
in RSS but are page cache, not memory a container limit can run out of.  Results go to
``OUT/many_cores.md`` and ``OUT/many_cores.json``, rewritten after every step.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import pull_trace  # noqa: E402
from hubfarm import MODEL, HubFarm, build  # noqa: E402

QF = [sys.executable, "-m", "qwen_fetch"]


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def sha256_limit(threads: int, seconds: float = 1.5) -> float:
    """GB/s of hashlib.sha256 over 8 MiB in-memory buffers on ``threads`` threads at once."""
    buf = os.urandom(8 << 20)
    done = [0] * threads

    def run(i: int) -> None:
        h = hashlib.sha256()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            h.update(buf)
            done[i] += len(buf)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(done) / (time.perf_counter() - t0) / 1e9


def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def run_cmd(args: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run one command; wall, CPU, peak RSS and its anonymous/file parts, output."""
    t0 = time.perf_counter()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    peaks = {"VmHWM": 0, "RssAnon": 0, "RssFile": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            st = _status(p.pid)
            for k in peaks:
                peaks[k] = max(peaks[k], st.get(k, 0))
            stop.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out: list[bytes] = []
    readers = [threading.Thread(target=lambda s=s: out.append(s.read()), daemon=True)  # type: ignore[misc]
               for s in (p.stdout, p.stderr)]
    for r in readers:
        r.start()
    deadline = time.monotonic() + timeout
    rc, ru = None, None
    while rc is None:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            rc = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            p.kill()
            _, status, ru = os.wait4(p.pid, 0)
            rc = 124
            break
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    for r in readers:
        r.join(5)
    p.returncode = rc
    text = b"".join(out).decode(errors="replace")
    assert ru is not None
    return {"rc": rc, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss": ru.ru_maxrss * 1024,
            "peak_rss": peaks["VmHWM"], "peak_anon": peaks["RssAnon"], "peak_file": peaks["RssFile"],
            "out": text[-4000:]}


def _json_out(text: str) -> Any:
    start = text.find("{")
    try:
        return json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        for line in text.splitlines():
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    pass
        return None


def strip_roots(lock: Path, dest: Path) -> None:
    from qwen_fetch.core.lockfile import Lock, dump_lock, parse_lock
    from qwen_fetch.core.manifest import Pin

    src = parse_lock(lock.read_text())
    models = tuple((mid, tuple(Pin(p.revision, p.commit, p.source, tuple(
        type(f)(f.path, f.size, f.sha256, f.lfs, f.git_oid) for f in p.files), p.sources) for p in pins))
        for mid, pins in src.models)
    dest.write_text(dump_lock(Lock(models=models)))


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.monotonic()
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.res: dict[str, Any] = {"facts": {}, "rows": [], "traces": [], "notes": []}
        home = self.work / "home"
        self.env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                        HOME=str(home), HF_HOME=str(home / "hf"), NO_PROXY="*", HF_HUB_DISABLE_TELEMETRY="1",
                        PYTHONUNBUFFERED="1")
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            self.env.pop(var, None)
        try:
            import truststore  # noqa: F401
        except ImportError:  # a bare host: trust from a CA file instead of the OS store (loopback http anyway)
            try:
                import certifi

                self.env["SSL_CERT_FILE"] = certifi.where()
                os.environ["SSL_CERT_FILE"] = certifi.where()
            except ImportError:
                pass

    def left(self) -> float:
        return self.args.budget - (time.monotonic() - self.t0)

    def save(self) -> None:
        (self.out / "many_cores.json").write_text(json.dumps(self.res, indent=1, default=str))
        (self.out / "many_cores.md").write_text(render(self.res))

    def row(self, step: str, r: dict[str, Any], nbytes: int, farm: HubFarm | None = None,
            server_cpu: float | None = None, **extra: Any) -> dict[str, Any]:
        row = {"step": step, **{k: v for k, v in r.items() if k != "out"}, "bytes": nbytes,
               "gb_per_s": nbytes / r["wall_s"] / 1e9 if nbytes and r["rc"] == 0 else None,
               "load1": os.getloadavg()[0], **extra}
        if server_cpu is not None:
            row["server_cpu_s"] = server_cpu
        if r["rc"] != 0:
            row["error"] = r["out"][-600:]
        self.res["rows"].append(row)
        print(f"{step}: rc={r['rc']} {r['wall_s']:.2f} s "
              f"{(row['gb_per_s'] or 0):.2f} GB/s cpu {r['cpu_s']:.1f} s rss {r['peak_rss'] / 1e6:.0f} MB "
              f"(anon {r['peak_anon'] / 1e6:.0f}, file {r['peak_file'] / 1e6:.0f})", flush=True)
        self.save()
        return row

    def run(self) -> None:
        a = self.args
        n = cpus()
        f = self.res["facts"]
        f.update(python=platform.python_version(), cpus=n, machine=platform.machine(),
                 sha_ni="sha_ni" in Path("/proc/cpuinfo").read_text(), gb=a.gb, server_procs=a.procs,
                 mem_total_gib=round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1),
                 dont_write_bytecode=os.environ.get("PYTHONDONTWRITEBYTECODE"))
        t = time.perf_counter()
        compileall.compile_dir(str(ROOT / "qwen_fetch"), quiet=1)  # as after pip install (bytecode cached)
        f["compile_s"] = time.perf_counter() - t
        f["sha256_1_thread_gb_s"] = sha256_limit(1)
        f[f"sha256_{n}_threads_gb_s"] = sha256_limit(n)
        self.save()
        store = self.work / "store"
        t = time.perf_counter()
        build(store, a.gb)
        f["build_s"] = time.perf_counter() - t
        total = sum(p.stat().st_size for p in (store / MODEL / "commits").rglob("*") if p.is_file())
        f["bytes"] = total
        self.save()
        cache, lock, plain_lock = self.work / "cache", self.work / "qwen-fetch.lock", self.work / "sha256-only.lock"
        with HubFarm(store, a.procs) as farm:
            mirrors = self.work / "mirrors.yaml"
            mirrors.write_text(f"sources:\n  - name: farm\n    kind: hf\n    endpoint: {farm.url}\n")
            pull = QF + ["pull", MODEL, "--config", str(mirrors), "--cache-dir", str(cache), "--lock", str(lock),
                         "--no-smoke", "--json"]
            for i in (1, 2):
                shutil.rmtree(cache, ignore_errors=True)
                lock.unlink(missing_ok=True)
                c0 = farm.cpu_s()
                r = run_cmd(pull, self.env, a.timeout)
                self.row(f"pull #{i} (fresh lock: roots computed)", r, total, server_cpu=farm.cpu_s() - c0)
            roots = lock.read_text().count("root:") if lock.exists() else 0
            f["roots_in_lock"] = roots
            if lock.exists():
                strip_roots(lock, plain_lock)
                shutil.rmtree(cache, ignore_errors=True)
                c0 = farm.cpu_s()
                r = run_cmd(pull[:-4] + ["--lock", str(lock), "--frozen", "--no-smoke", "--json"], self.env,
                            a.timeout)
                self.row("pull --frozen (pinned: no roots)", r, total, server_cpu=farm.cpu_s() - c0)
            # The engine's read-back piece before (256 KiB) and now (4 MiB); then fewer connections, fewer
            # threads contending for the GIL.
            for piece, conns in ((256 << 10, None), (4 << 20, None), (4 << 20, 24)):
                if self.left() < 120:
                    self.res["notes"].append(f"trace with {piece >> 10} KiB pieces, {conns} connections "
                                             "skipped: budget")
                    break
                c0 = farm.cpu_s()
                tr = pull_trace.trace_pull(mirrors, MODEL, self.work, connections=conns, hash_piece=piece)
                tr["server_cpu_s"] = farm.cpu_s() - c0
                shutil.rmtree(self.work / "trace-cache", ignore_errors=True)
                self.res["traces"].append(tr)
                print(pull_trace.summary(tr), flush=True)
                self.save()
        if not lock.exists():
            return
        verify = QF + ["verify", MODEL, "--cache-dir", str(cache), "--json"]
        for i in (1, 2):
            for name, lk in (("roots", lock), ("sha256", plain_lock)):
                r = run_cmd(verify + ["--lock", str(lk)], self.env, a.timeout)
                js = _json_out(r["out"]) or {}
                by = (js.get("targets") or [{}])[0].get("checked_by")
                self.row(f"verify #{i}, lock with {'roots' if name == 'roots' else 'sha256 only'}", r, total,
                         checked_by=by)
        noop = QF + ["pull", MODEL, "--cache-dir", str(cache), "--lock", str(lock), "--frozen", "--no-smoke",
                     "--json", "--config", str(self.work / "nowhere.yaml")]
        (self.work / "nowhere.yaml").write_text("sources:\n  - name: none\n    kind: hf\n"
                                                "    endpoint: http://127.0.0.1:9\n")
        for i in (1, 2):
            self.row(f"no-op pull --frozen #{i}", run_cmd(noop, self.env, a.timeout), 0)
        self.row("no-op pull --frozen --reverify (roots)", run_cmd(noop + ["--reverify"], self.env, a.timeout), total)


def _mb(v: Any) -> str:
    return f"{v / 1e6:.0f} MB" if v else "-"


def render(res: dict[str, Any]) -> str:
    f = res["facts"]
    n = f.get("cpus")
    lines = [f"Machine: {n} usable CPUs ({f.get('machine')}, SHA extensions: {f.get('sha_ni')}), "
             f"{f.get('mem_total_gib')} GiB, Python {f.get('python')}. "
             f"sha256 in memory: {f.get('sha256_1_thread_gb_s', 0):.2f} GB/s on one thread, "
             f"{f.get(f'sha256_{n}_threads_gb_s', 0):.2f} GB/s on {n}.",
             f"Repo: {f.get('bytes', 0) / 1e9:.2f} GB (the real 15 files, shards scaled to {f.get('gb')} GB in all), "
             f"built in {f.get('build_s', 0):.1f} s, served by {f.get('server_procs')} hub processes on one "
             f"loopback port (sendfile). Roots in the lock: {f.get('roots_in_lock', '-')}.", "",
             "| step | wall s | GB/s | CPU-s | peak RSS | peak anon | peak file-backed | server CPU-s | load | notes |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in res["rows"]:
        note = f"checked by {r['checked_by']}" if r.get("checked_by") else ""
        if r.get("rc"):
            note = f"exit {r['rc']}"
        gbs = f"{r['gb_per_s']:.2f}" if r.get("gb_per_s") else "-"
        srv = f"{r['server_cpu_s']:.1f}" if r.get("server_cpu_s") is not None else "-"
        lines.append(f"| {r['step']} | {r['wall_s']:.2f} | {gbs} | {r['cpu_s']:.1f} | {_mb(r['peak_rss'])} | "
                     f"{_mb(r['peak_anon'])} | {_mb(r['peak_file'])} | {srv} | {r['load1']:.1f} | {note} |")
    for tr in res["traces"]:
        lines += ["", f"Traced pull, read-back piece {tr['hash_piece'] >> 10} KiB, {tr['connections']} connections "
                      f"(server CPU "
                      f"{tr.get('server_cpu_s', 0):.1f} s):", "", pull_trace.summary(tr)]
    for note in res["notes"]:
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "bench" / "results" / "tmp"))
    ap.add_argument("--work", default="/tmp/qf-many")
    ap.add_argument("--gb", type=float, default=float(os.environ.get("QF_MANY_GB", "17.54")))
    ap.add_argument("--procs", type=int, default=4, help="hub processes serving the repo")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per command")
    ap.add_argument("--budget", type=float, default=450.0, help="skip the traces with less than 2 minutes left")
    args = ap.parse_args()
    bench = Bench(args)
    try:
        bench.run()
    finally:
        bench.save()
        print(render(bench.res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
