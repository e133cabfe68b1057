#!/usr/bin/env python3
"""Download benchmark: qwen-fetch pull vs hf download vs aria2c vs modelscope download.

Serves a repo shaped like Qwen3-VL-8B-Instruct (four shards in the real size
ratios, about 2 GiB, plus the small files at their real sizes) from nginx on
127.0.0.1 with sendfile, laid out so the HF protocol works:

    /{org}/{name}/resolve/{main|commit}/{path}     static files + X-Repo-Commit / X-Linked-* headers
    /api/models/{org}/{name}/revision/{rev}        static JSON (repo_info)
    /api/models/{org}/{name}/tree/{rev}            static JSON (list_repo_tree, our listing)

Two nginx servers share that root: (a) unthrottled, (b) ``limit_rate 20m``
per connection, like a CDN.  Tools run interleaved and repeated; each run gets
a fresh cache, its wall time and peak RSS (``wait4``) are recorded, the median
is reported.  Then a pull is SIGKILLed halfway and resumed, and the bytes nginx
sent (access log) are compared with an uninterrupted pull.

    .venv/bin/python bench/bench_download.py [--total-gib 2] [--repeats 2] [--out bench/results/download.md]

Needs nginx and aria2c (apt-get install -y nginx aria2).  Adding a tool is one
more ``Tool`` in ``TOOLS``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qwen_fetch.store.hasher import hash_file  # noqa: E402
from tests.support.fixtures import QWEN3_VL_8B, build_sharded_files  # noqa: E402
from tests.support.repo import is_lfs  # noqa: E402

VENV_BIN = Path(sys.executable).parent
RATE = "20m"  # nginx limit_rate for scenario (b): 20 MB/s per connection
SCENARIOS = {"a": "unthrottled", "b": f"limit_rate {RATE} per connection"}


# -- the served repo --------------------------------------------------------------

@dataclass(frozen=True)
class Served:
    www: Path
    commit: str
    files: dict[str, tuple[int, str, str]]  # path -> (size, sha256, git blob oid)

    @property
    def total(self) -> int:
        return sum(s for s, _, _ in self.files.values())


def build_repo(work: Path, total_bytes: int) -> Served:
    src = work / "src"
    meta = work / "meta.json"
    if meta.exists() and json.loads(meta.read_text()).get("total") == total_bytes:
        raw = json.loads(meta.read_text())
        files = {p: tuple(v) for p, v in raw["files"].items()}
    else:
        print(f"building a {total_bytes / 2**30:.1f} GiB repo in {src} ...", flush=True)
        paths = build_sharded_files(src, total_bytes, seed=1, small_scale=1.0)
        files = {}
        for p, disk in sorted(paths.items()):
            h = hash_file(disk, with_git_oid=True)
            files[p] = (h.size, h.sha256, h.git_oid or "")
        meta.write_text(json.dumps({"total": total_bytes, "files": files}))
    commit = hashlib.sha1(json.dumps(sorted(files.items())).encode()).hexdigest()
    www = work / "www"
    shutil.rmtree(www, ignore_errors=True)
    repo = QWEN3_VL_8B
    for rev in ("main", commit):
        for p in files:
            dst = www / repo / "resolve" / rev / p
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(src / p, dst)
    api = www / "api" / "models" / repo
    siblings, tree = [], []
    for p, (size, sha, oid) in sorted(files.items()):
        lfs = is_lfs(p, size)
        s: dict[str, object] = {"rfilename": p, "size": size, "blobId": oid}
        e: dict[str, object] = {"type": "file", "path": p, "size": size, "oid": oid}
        if lfs:
            s["lfs"] = {"sha256": sha, "size": size, "pointerSize": 134}
            e["lfs"] = {"oid": sha, "size": size, "pointerSize": 134}
        siblings.append(s)
        tree.append(e)
    info = {"id": repo, "modelId": repo, "sha": commit, "siblings": siblings, "private": False, "gated": False,
            "disabled": False, "tags": [], "downloads": 0, "likes": 0}
    for rev in ("main", commit):
        for kind, body in (("revision", info), ("tree", tree)):
            f = api / kind / rev
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(body))
    return Served(www=www, commit=commit, files=files)  # type: ignore[arg-type]


# -- nginx -------------------------------------------------------------------------

class Nginx:
    """Scenarios (a) and (b); with ``tls`` (certificate and key files) also "b-tls": (b) over https."""

    def __init__(self, work: Path, served: Served, tls: tuple[Path, Path] | None = None) -> None:
        self.dir = work / "nginx"
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "tmp").mkdir(parents=True)
        self.ports = {"a": _free_port(), "b": _free_port()}
        if tls:
            self.ports["b-tls"] = _free_port()
        self.logs = {k: self.dir / f"{k}.log" for k in self.ports}
        locs = ["location /api/ { default_type application/json; }"]
        for rev in ("main", served.commit):
            for p, (size, sha, oid) in served.files.items():
                tag = sha if is_lfs(p, size) else oid
                hdr = [f"add_header X-Repo-Commit {served.commit} always;"]
                if is_lfs(p, size):
                    hdr += [f'add_header X-Linked-Etag \'"{tag}"\' always;', f"add_header X-Linked-Size {size} always;"]
                locs.append(f"location = /{QWEN3_VL_8B}/resolve/{rev}/{p} {{ {' '.join(hdr)} }}")
        (self.dir / "locations.conf").write_text("\n".join(locs) + "\n")
        servers = []
        for k, port in self.ports.items():
            limit = f"limit_rate {RATE};" if k.startswith("b") else ""
            listen = f"listen 127.0.0.1:{port};"
            if k == "b-tls" and tls:
                listen = f"listen 127.0.0.1:{port} ssl; ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]};"
            servers.append(f"server {{ {listen} root {served.www}; access_log {self.logs[k]} bench;"
                           f" {limit} include {self.dir}/locations.conf; }}")
        d = self.dir
        conf = f"""
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format bench '$status $body_bytes_sent "$request" "$http_range" $remote_port $msec $request_time';
    sendfile on; tcp_nopush on; keepalive_requests 100000; keepalive_timeout 120;
    default_type application/octet-stream;
    client_body_temp_path {d}/tmp/body; proxy_temp_path {d}/tmp/proxy; fastcgi_temp_path {d}/tmp/fcgi;
    uwsgi_temp_path {d}/tmp/uwsgi; scgi_temp_path {d}/tmp/scgi;
    {' '.join(servers)}
}}
"""
        (d / "nginx.conf").write_text(conf)
        user = "user root;\n" if os.geteuid() == 0 else ""
        (d / "nginx.conf").write_text(user + conf)
        self.proc = subprocess.Popen(["nginx", "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"])
        for port in self.ports.values():
            _wait_port(port)

    def url(self, scenario: str) -> str:
        if scenario == "b-tls":  # the certificate names localhost
            return f"https://localhost:{self.ports[scenario]}"
        return f"http://127.0.0.1:{self.ports[scenario]}"

    def log_offset(self, scenario: str) -> int:
        p = self.logs[scenario]
        return p.stat().st_size if p.exists() else 0

    def bytes_since(self, scenario: str, offset: int) -> int:
        time.sleep(0.5)  # nginx logs a request when it ends; give killed connections a moment
        with open(self.logs[scenario], "rb") as f:
            f.seek(offset)
            return sum(int(line.split()[1]) for line in f.read().decode().splitlines() if line.strip())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int) -> None:
    import socket

    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nginx did not come up on port {port}")


# -- tools -------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    argv: list[str]
    env: dict[str, str]
    check: Callable[[], None]  # raises when the files are not all there


@dataclass(frozen=True)
class Tool:
    name: str
    prepare: Callable[[str, Path, Served], Run]  # (endpoint, fresh output dir, served) -> Run
    available: Callable[[], bool]


def _base_env(out: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE", "QWEN_FETCH"))}
    env.update(HOME=str(out / "home"), HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    return env


def _blobs_complete(cache: Path, served: Served) -> Callable[[], None]:
    def check() -> None:
        blobs = list(cache.glob("models--*/blobs/*"))
        big = {sha for p, (size, sha, _) in served.files.items() if is_lfs(p, size)}
        have = {b.name for b in blobs if not b.name.endswith(".incomplete")}
        missing = big - have
        if missing:
            raise RuntimeError(f"{len(missing)} LFS blob(s) missing in {cache}")
    return check


def qwen_fetch_tool(connections: int | None = None, baseline: Path | None = None) -> Tool:
    """``baseline``: a folder holding another tree's ``qwen_fetch`` package, run in place of this one (before/after)."""
    def prepare(endpoint: str, out: Path, served: Served) -> Run:
        cfg = out / "mirrors.yaml"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(f"sources:\n  - name: bench\n    kind: hf\n    endpoint: {endpoint}\n    priority: 1\n")
        cache = out / "cache"
        cli = [str(VENV_BIN / "qwen-fetch")] if baseline is None else [str(VENV_BIN / "python"), "-m", "qwen_fetch"]
        argv = [*cli, "pull", QWEN3_VL_8B, "--config", str(cfg), "--cache-dir", str(cache),
                "--lock", str(out / "qwen-fetch.lock"), "--source", "bench", "--json", "--smoke", "off"]
        if connections:
            argv += ["--connections", str(connections)]
        env = _base_env(out)
        if baseline is not None:
            env["PYTHONPATH"] = str(baseline)  # ahead of the editable install of this tree
        return Run(argv, env, _blobs_complete(cache, served))

    name = "qwen-fetch pull" + (f" -c {connections}" if connections else "") + (
        f" ({baseline.name} tree)" if baseline is not None else "")
    return Tool(name, prepare, lambda: (VENV_BIN / "qwen-fetch").exists())


def hf_tool() -> Tool:
    def prepare(endpoint: str, out: Path, served: Served) -> Run:
        cache = out / "cache"
        env = _base_env(out) | {"HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(cache), "HF_HUB_DISABLE_XET": "1",
                                "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        argv = [str(VENV_BIN / "hf"), "download", QWEN3_VL_8B, "--max-workers", "8", "--quiet"]
        return Run(argv, env, _blobs_complete(cache, served))

    return Tool("hf download --max-workers 8", prepare, lambda: (VENV_BIN / "hf").exists())


def aria2_tool() -> Tool:
    def prepare(endpoint: str, out: Path, served: Served) -> Run:
        target = out / "files"
        target.mkdir(parents=True, exist_ok=True)
        lines = [f"{endpoint}/{QWEN3_VL_8B}/resolve/main/{p}\n  out={p}\n" for p in served.files]
        (out / "aria2.txt").write_text("".join(lines))
        argv = ["aria2c", "-x16", "-s16", "-j5", "-i", str(out / "aria2.txt"), "-d", str(target),
                "--console-log-level=warn", "--summary-interval=0", "--quiet=true"]

        def check() -> None:
            for p, (size, _, _) in served.files.items():
                if (target / p).stat().st_size != size:
                    raise RuntimeError(f"aria2c: {p} has the wrong size")
        return Run(argv, _base_env(out), check)

    return Tool("aria2c -x16 -s16 -j5", prepare, lambda: shutil.which("aria2c") is not None)


# ModelScope's API in front of the same nginx: JSON listing here, bytes by 302 to nginx (as ModelScope 302s to
# object storage), so `modelscope download` reads exactly the bytes, rate limit and access log the others do.
_MS_FACADE = r"""
import json, os, subprocess, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit
listing, files_base, argv = open(sys.argv[1], "rb").read(), sys.argv[2], sys.argv[3:]
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_HEAD(self): self.do_GET()
    def do_GET(self):
        u = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        if u.path.endswith("/repo/files"):
            self.send_response(200); self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(listing))); self.end_headers()
            if self.command == "GET": self.wfile.write(listing)
        elif u.path.endswith("/repo") and "FilePath" in q:
            self.send_response(302); self.send_header("Location", files_base + quote(q["FilePath"]))
            self.send_header("Content-Length", "0"); self.end_headers()
        else:
            self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers()
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
threading.Thread(target=srv.serve_forever, daemon=True).start()
env = dict(os.environ, MODELSCOPE_DOMAIN=f"http://127.0.0.1:{srv.server_address[1]}")
sys.exit(subprocess.run(argv, env=env).returncode)
"""


def modelscope_tool(parallels: int | None = None) -> Tool:
    """`modelscope download` (the official client), default settings unless ``parallels`` is given."""
    cli = VENV_BIN / "modelscope"

    def prepare(endpoint: str, out: Path, served: Served) -> Run:
        entries = [{"Name": p.rsplit("/", 1)[-1], "Path": p, "Type": "blob", "Size": size, "Sha256": sha,
                    "Revision": served.commit, "CommittedDate": 1_750_000_000, "IsLFS": is_lfs(p, size)}
                   for p, (size, sha, _) in sorted(served.files.items())]
        listing = out / "ms-files.json"
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text(json.dumps({"Code": 200, "Success": True, "Message": "success",
                                       "Data": {"Files": entries}}))
        target = out / "files"
        env = _base_env(out) | {"MODELSCOPE_CACHE": str(out / "ms-cache"), "MODELSCOPE_HOME": str(out / "ms-home"),
                                "MODELSCOPE_DOWNLOAD_INTRA_CLOUD": "false", "PYTHONWARNINGS": "ignore"}
        if parallels:
            env["MODELSCOPE_DOWNLOAD_PARALLELS"] = str(parallels)
        argv = [sys.executable, "-c", _MS_FACADE, str(listing), f"{endpoint}/{QWEN3_VL_8B}/resolve/main/",
                str(cli), "download", QWEN3_VL_8B, "--revision", "master", "--local-dir", str(target),
                "--max-workers", "8"]

        def check() -> None:
            for p, (size, _, _) in served.files.items():
                if (target / p).stat().st_size != size:
                    raise RuntimeError(f"modelscope: {p} has the wrong size")
        return Run(argv, env, check)

    name = "modelscope download --max-workers 8" + (f" (PARALLELS={parallels})" if parallels else "")
    return Tool(name, prepare, cli.exists)


TOOLS: list[Tool] = [qwen_fetch_tool(), hf_tool(), aria2_tool(), modelscope_tool()]
BASELINE = "hf download --max-workers 8"


# -- running -----------------------------------------------------------------------

@dataclass(frozen=True)
class Result:
    tool: str
    scenario: str
    seconds: float
    peak_rss: int  # bytes
    failure: str = ""  # non-empty: the run failed or timed out (seconds is then meaningless)
    cpu: float = 0.0  # user + system seconds of the tool's process tree
    load: float = 0.0  # 1-minute load average just before the run (other work on the machine)
    sent: int = 0  # body bytes nginx sent during the run (its access log): what the tool made the server send


def run_once(tool: Tool, scenario: str, nginx: Nginx, served: Served, scratch: Path, timeout: float) -> Result:
    out = scratch / "run"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    run = tool.prepare(nginx.url(scenario), out, served)
    subprocess.run(["sync"], check=False)
    load = os.getloadavg()[0]
    log_off = nginx.log_offset(scenario)
    t0 = time.monotonic()
    proc = subprocess.Popen(run.argv, env=run.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # its own process group: a timeout kills helpers too
    failure = ""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - t0 > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            failure = f"timed out after {timeout:.0f} s"
            break
        time.sleep(0.05)
    seconds = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if not failure and proc.returncode != 0:
        failure = f"exit {proc.returncode}: {err.strip().splitlines()[-1][:160] if err.strip() else ''}"
    if not failure:
        try:
            run.check()
        except (OSError, RuntimeError) as exc:
            failure = f"incomplete: {exc}"
    shutil.rmtree(out, ignore_errors=True)
    sent = nginx.bytes_since(scenario, log_off)
    return Result(tool.name, scenario, seconds, usage.ru_maxrss * 1024, failure, usage.ru_utime + usage.ru_stime,
                  load, sent)


def sha256_rate() -> float:
    """MB/s of hashlib.sha256 on one core right now: the floor every verifying downloader pays."""
    buf = os.urandom(64 << 20)
    t0 = time.perf_counter()
    hashlib.sha256(buf).digest()
    return len(buf) / 1e6 / (time.perf_counter() - t0)


def resume_check(nginx: Nginx, served: Served, scratch: Path, scenario: str = "b",
                 connections: int | None = None) -> tuple[int, int, float]:
    """Bytes nginx sent for an uninterrupted pull, and for one SIGKILLed halfway and rerun."""
    tool = qwen_fetch_tool(connections)
    out = scratch / "resume"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    run = tool.prepare(nginx.url(scenario), out, served)
    off = nginx.log_offset(scenario)
    subprocess.run(run.argv, env=run.env, check=True, stdout=subprocess.DEVNULL)
    clean = nginx.bytes_since(scenario, off)
    shutil.rmtree(out / "cache")
    (out / "qwen-fetch.lock").unlink(missing_ok=True)

    off = nginx.log_offset(scenario)
    proc = subprocess.Popen(run.argv, env=run.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = out / "cache"
    half = served.total // 2
    while proc.poll() is None and _bytes_on_disk(cache) < half:
        time.sleep(0.05)
    killed_at = _bytes_on_disk(cache) / served.total
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run(run.argv, env=run.env, check=True, stdout=subprocess.DEVNULL)
    run.check()
    resumed = nginx.bytes_since(scenario, off)
    shutil.rmtree(out, ignore_errors=True)
    return clean, resumed, killed_at


def _bytes_on_disk(cache: Path) -> int:
    total = 0
    for p in cache.glob("models--*/blobs/*"):
        try:
            total += p.stat().st_blocks * 512
        except FileNotFoundError:
            pass
    return total


def report(results: list[Result], resume: list[tuple[int, int, float]] | None, served: Served, repeats: int,
           sha_rates: list[float]) -> str:
    mb = served.total / 1e6
    rows = []
    for scenario in SCENARIOS:
        base = [r.seconds for r in results if r.scenario == scenario and r.tool == BASELINE and not r.failure]
        base_s = statistics.median(base) if base else None
        for tool in dict.fromkeys(r.tool for r in results):
            every = [r for r in results if r.scenario == scenario and r.tool == tool]
            rs = [r for r in every if not r.failure]
            failed = "; ".join(sorted({r.failure for r in every if r.failure}))
            if not rs:
                if failed:
                    rows.append(f"| {tool} | ({scenario}) {SCENARIOS[scenario]} | failed | - | - | - | - | {failed} |")
                continue
            s = statistics.median(r.seconds for r in rs)
            ratio = f"{base_s / s:.2f}x" if base_s else "-"
            rss = max(r.peak_rss for r in rs) / 2**20
            runs = ", ".join(f"{mb / r.seconds:.0f}" for r in rs) + (f" ({failed})" if failed else "")
            cpu = statistics.median(r.cpu for r in rs)
            extra = max(r.sent for r in rs) / served.total - 1
            rows.append(f"| {tool} | ({scenario}) {SCENARIOS[scenario]} | {mb / s:.0f} | {ratio} | {rss:.0f} MiB "
                        f"| {cpu:.1f} | {extra:+.1%} | {runs} |")
    lines = [
        f"Repo: {len(served.files)} files, {served.total / 2**30:.2f} GiB (4 shards in the real ratios + real-size "
        f"small files), nginx {_nginx_version()} on 127.0.0.1 with sendfile. {repeats} interleaved repeat(s); "
        f"median shown. Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"shared with other work: 1-minute load average before each run {_load_range(results)}.",
        "",
        ("| tool | scenario | MB/s (median) | vs hf download | peak RSS | CPU s (median) "
         "| server sent vs repo size (max) | MB/s per run |"),
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    lines += ["", f"hashlib.sha256 on one core of this machine during the bench: "
                  f"{', '.join(f'{r:.0f}' for r in sha_rates)} MB/s ({_sha_ni()}). qwen-fetch hashes every byte while "
                  "downloading (and xxh3-sums it for resume); hf download and aria2c hash nothing, modelscope "
                  "download hashes after downloading."]
    if resume:
        trials = [f"{clean / 1e6:.1f} MB uninterrupted vs {resumed / 1e6:.1f} MB killed at {at:.0%} and rerun "
                  f"(+{(resumed - clean) / clean:.2%})" for clean, resumed, at in resume]
        extra = statistics.median((resumed - clean) / clean for clean, resumed, _ in resume)
        lines += ["", f"Resume (scenario b, default connections, bytes nginx sent): median +{extra:.2%} over "
                      f"{len(resume)} trial(s): " + "; ".join(trials) + "."]
    return "\n".join(lines) + "\n"


def _sha_ni() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "SHA-NI unknown"
    return "SHA-NI" if re.search(r"\bsha_ni\b", flags) else "no SHA-NI"


def _load_range(results: list[Result]) -> str:
    loads = sorted(r.load for r in results)
    return f"{loads[0]:.1f}-{loads[-1]:.1f} (median {statistics.median(loads):.1f})" if loads else "-"


def _nginx_version() -> str:
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    m = re.search(r"nginx/(\S+)", out)
    return m.group(1) if m else "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--total-gib", type=float, default=2.0, help="shard bytes in GiB (default 2)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scenarios", default="a,b")
    ap.add_argument("--tools", default="", help="comma-separated substrings of tool names to run (default: all)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/qwen-fetch-bench"))
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--resume-trials", type=int, default=3, help="kill-and-resume trials (the overhead is noisy)")
    ap.add_argument("--no-warmup", action="store_true",
                    help="skip the untimed warm-up run of each tool (scenario a) before the timed rounds")
    ap.add_argument("--run-timeout", type=float, default=240.0, help="seconds before a tool's run is killed")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "download.md")
    ap.add_argument("--qf-connections", default="", help="extra qwen-fetch rows with --connections N (comma-separated)")
    ap.add_argument("--qf-baseline", type=Path, default=None,
                    help="a folder with another tree's qwen_fetch package (e.g. a git worktree of an older commit): "
                         "adds its pull as a row, interleaved with this tree's, for before/after in one run")
    args = ap.parse_args()
    if args.qf_baseline is not None:
        TOOLS.insert(1, qwen_fetch_tool(baseline=args.qf_baseline.resolve()))
    for n in filter(None, args.qf_connections.split(",")):
        TOOLS.insert(1, qwen_fetch_tool(int(n)))
    if not shutil.which("nginx"):
        sys.exit("nginx not found: apt-get install -y nginx aria2")
    args.work.mkdir(parents=True, exist_ok=True)
    served = build_repo(args.work, int(args.total_gib * 2**30))
    wanted = [t for t in TOOLS if t.available() and (not args.tools or any(s in t.name for s in args.tools.split(",")))]
    nginx = Nginx(args.work, served)
    results: list[Result] = []
    resume: list[tuple[int, int, float]] | None = None
    sha_rates = [sha256_rate()]
    t0 = time.monotonic()
    try:
        if not args.no_warmup:
            # On a fresh VM the first writes into never-touched guest memory cost ~10x (the hypervisor backs
            # pages on first touch: a 2 GB dd took 4.8 s of system time, then 0.4 s), and imports are cold.
            for tool in wanted:
                r = run_once(tool, "a", nginx, served, args.work / "scratch", args.run_timeout)
                print(f"[warm-up, untimed] (a) {tool.name}: {r.seconds:.1f}s {r.failure}", flush=True)
        for rep in range(args.repeats):
            for scenario in args.scenarios.split(","):
                for tool in (wanted if rep % 2 == 0 else wanted[::-1]):  # interleaved, order alternating
                    r = run_once(tool, scenario, nginx, served, args.work / "scratch", args.run_timeout)
                    results.append(r)
                    print(f"[{rep + 1}/{args.repeats}] ({scenario}) {tool.name}: {r.seconds:.1f}s "
                          f"{served.total / 1e6 / r.seconds:.0f} MB/s, RSS {r.peak_rss / 2**20:.0f} MiB "
                          f"{r.failure}", flush=True)
        if not args.no_resume:
            resume = []
            for _ in range(args.resume_trials):
                resume.append(resume_check(nginx, served, args.work / "scratch"))
                print(f"resume: clean {resume[-1][0]} B, killed+resumed {resume[-1][1]} B", flush=True)
    finally:
        nginx.stop()
    sha_rates.append(sha256_rate())
    text = report(results, resume, served, args.repeats, sha_rates)
    text += f"\nBench wall time: {time.monotonic() - t0:.0f} s. Command: `.venv/bin/python bench/bench_download.py " \
            f"{' '.join(sys.argv[1:])}`.\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("# Download benchmark\n\n" + text)


if __name__ == "__main__":
    main()
