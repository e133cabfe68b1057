#!/usr/bin/env python3
"""Proxy benchmark: qwen-fetch pull in scenario (b) over https, direct vs through HTTP CONNECT proxies.

Scenario (b) of ``bench_download.py`` (nginx ``limit_rate 20m`` per connection,
like a CDN), served over TLS with a private CA (trustme) so that the proxied
pulls really tunnel with CONNECT.  Rows, interleaved with alternating order:

* direct: ``qwen-fetch pull`` straight to nginx (``NO_PROXY=*``);
* squid: ``HTTPS_PROXY`` pointing at squid on 127.0.0.1, configured as a plain
  CONNECT relay (no cache);
* tinyproxy: the same through tinyproxy.

Each run gets a fresh cache; the pull verifies every sha256 as usual.  The
proxy's own log is checked after each proxied run to prove the bytes went
through it.

    .venv/bin/python bench/bench_proxy.py [--total-gib 1] [--repeats 3] [--proxies squid,tinyproxy]
        [--out bench/results/proxy-run.md]

Needs nginx, squid and tinyproxy (apt-get install -y nginx squid tinyproxy).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import trustme  # noqa: E402
from bench_download import Nginx, Result, Run, Tool, build_repo, qwen_fetch_tool, run_once  # noqa: E402

from tests.support import proxies  # noqa: E402

SCENARIO = "b-tls"


def via(name: str, ca: Path, proxy: proxies.Proxy | None) -> Tool:
    """qwen-fetch pull with ``proxy`` in HTTPS_PROXY (None: direct), trusting the bench CA."""
    base = qwen_fetch_tool()

    def prepare(endpoint: str, out: Path, served) -> Run:  # type: ignore[no-untyped-def]
        run = base.prepare(endpoint, out, served)
        env = {k: v for k, v in run.env.items() if not k.lower().endswith("_proxy")}
        env["SSL_CERT_FILE"] = str(ca)
        if proxy is None:
            env["NO_PROXY"] = "*"
        else:
            env.update(HTTPS_PROXY=proxy.url, NO_PROXY="")
        return replace(run, env=env)

    return Tool(name, prepare, base.available)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--total-gib", type=float, default=1.0, help="shard bytes in GiB (default 1)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--proxies", default="squid,tinyproxy", help="comma-separated: squid, tinyproxy")
    ap.add_argument("--work", type=Path, default=Path("/tmp/qwen-fetch-bench"))
    ap.add_argument("--run-timeout", type=float, default=300.0)
    ap.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = ap.parse_args()
    for exe in ("nginx", *args.proxies.split(",")):
        if not shutil.which(exe):
            sys.exit(f"{exe} not found: apt-get install -y nginx squid tinyproxy")
    args.work.mkdir(parents=True, exist_ok=True)
    served = build_repo(args.work, int(args.total_gib * 2**30))
    tls_dir = args.work / "tls"
    tls_dir.mkdir(exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tls_dir / "server.pem"))
    ca.cert_pem.write_to_path(str(tls_dir / "ca.pem"))
    nginx = Nginx(args.work, served, tls=(tls_dir / "server.pem", tls_dir / "server.pem"))
    started: list[proxies.Proxy] = []
    results: list[Result] = []
    t0 = time.monotonic()
    try:
        tools = [via("direct", tls_dir / "ca.pem", None)]
        for name in args.proxies.split(","):
            p = proxies.squid(args.work / "squid") if name == "squid" else proxies.tinyproxy(args.work / "tinyproxy")
            started.append(p)
            tools.append(via(f"via {name} (CONNECT)", tls_dir / "ca.pem", p))
        by_tool = dict(zip((t.name for t in tools[1:]), started))
        warm = run_once(tools[0], SCENARIO, nginx, served, args.work / "scratch", args.run_timeout)
        print(f"[warm-up, untimed] direct: {warm.seconds:.1f}s {warm.failure}", flush=True)
        for rep in range(args.repeats):
            for tool in (tools if rep % 2 == 0 else tools[::-1]):
                before = by_tool[tool.name].log_text().count(":" + str(nginx.ports[SCENARIO])) if tool.name in by_tool else 0
                r = run_once(tool, SCENARIO, nginx, served, args.work / "scratch", args.run_timeout)
                if tool.name in by_tool and not r.failure:
                    after = by_tool[tool.name].log_text().count(":" + str(nginx.ports[SCENARIO]))
                    if after <= before:
                        r = replace(r, failure="the proxy's log shows no tunnel to nginx")
                results.append(r)
                print(f"[{rep + 1}/{args.repeats}] {tool.name}: {r.seconds:.1f}s "
                      f"{served.total / 1e6 / r.seconds:.0f} MB/s, CPU {r.cpu:.1f}s, load {r.load:.1f} {r.failure}",
                      flush=True)
    finally:
        for p in started:
            p.stop()
        nginx.stop()
    text = report(results, served, args)
    text += f"\nBench wall time: {time.monotonic() - t0:.0f} s.\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


def report(results: list[Result], served, args: argparse.Namespace) -> str:  # type: ignore[no-untyped-def]
    mb = served.total / 1e6
    direct = [r.seconds for r in results if r.tool == "direct" and not r.failure]
    direct_s = statistics.median(direct) if direct else None
    rows = []
    for tool in dict.fromkeys(r.tool for r in results):
        every = [r for r in results if r.tool == tool]
        ok = [r for r in every if not r.failure]
        failed = "; ".join(sorted({r.failure for r in every if r.failure}))
        if not ok:
            rows.append(f"| {tool} | failed | - | - | - | {failed} |")
            continue
        s = statistics.median(r.seconds for r in ok)
        ratio = f"{direct_s / s:.0%}" if direct_s else "-"
        runs = ", ".join(f"{mb / r.seconds:.0f}" for r in ok) + (f" ({failed})" if failed else "")
        cpu = statistics.median(r.cpu for r in ok)
        rows.append(f"| {tool} | {mb / s:.0f} | {ratio} | {cpu:.1f} | {runs} | {failed or '-'} |")
    loads = sorted(r.load for r in results)
    return "\n".join([
        f"Repo: {len(served.files)} files, {served.total / 2**30:.2f} GiB; scenario (b) over https "
        f"(nginx limit_rate 20m per connection, TLS with a private CA); {args.repeats} interleaved repeat(s), "
        f"median shown. Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}); "
        f"1-minute load average before each run {loads[0]:.1f}-{loads[-1]:.1f}.",
        "",
        "| qwen-fetch pull | MB/s (median) | vs direct | CPU s of qwen-fetch (median) | MB/s per run | failures |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Command: `.venv/bin/python bench/bench_proxy.py {' '.join(sys.argv[1:])}`",
    ]) + "\n"


if __name__ == "__main__":
    main()
