"""The fault campaign: hostile mirrors, hostile config, crashes, disk full, concurrency, tokens, TLS.

    python bench/fault_campaign.py [--kills 50] [--quick] [--seed N]

Runs each case as many trials against loopback hubs (127.0.0.1 only), counts
passes, and writes ``bench/results/faults.md``: case, trials, passed, SIGKILLs,
lost, corrupt.  "Lost" is a file a clean run has that the run under test does
not; "corrupt" is a wrong byte anywhere, including any moment at which a
snapshot held a file whose sha256 differs from its pin (a watcher thread polls
the snapshots during every run).  Each trial's verdict is computed by the same
helpers the tests use (``tests/support/faultkit.py``).  Disk-full trials
need root to mount a small tmpfs; without it they are reported as skipped.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fault_planted import duplicate_content, planted_leftovers, planted_links
from tests.support.faultkit import (
    HOSTILE_LISTINGS,
    HOSTILE_LOCKS,
    HOSTILE_MIRRORS,
    CrashLab,
    Trial,
    cache_digest,
    diff_digests,
    mount_small_fs,
    new_outside,
    partial_size,
    qf_argv,
    resize_small_fs,
    run_qf,
    tree_state,
    unmount,
)
from tests.support.fixtures import QWEN3_VL_8B, add_sharded_repo
from tests.support.hub import Faults, HubServer
from tests.support.repo import RepoStore

RESULTS = Path(__file__).resolve().parent / "results" / "faults.md"
SHARD1 = "model-00001-of-00004.safetensors"


@dataclass
class Row:
    case: str
    trials: list[Trial] = field(default_factory=list)
    skipped: str = ""

    @property
    def passed(self) -> int:
        return sum(t.passed for t in self.trials)


class Campaign:
    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.rows: dict[str, Row] = {}
        self.store = RepoStore(root / "store")
        self.old = add_sharded_repo(self.store, QWEN3_VL_8B, shard_total=2 << 20, seed=1, revision="old")
        self.commit = add_sharded_repo(self.store, QWEN3_VL_8B, shard_total=6 << 20)
        self.n = 0

    def record(self, case: str, t: Trial) -> None:
        self.rows.setdefault(case, Row(case)).trials.append(t)
        mark = "ok" if t.passed else "FAIL " + "; ".join(t.lost + t.corrupt + t.notes)[:300]
        print(f"  {case}: {mark}" + (f" ({t.kills} kill)" if t.kills else ""), flush=True)

    def skip(self, case: str, why: str) -> None:
        self.rows.setdefault(case, Row(case)).skipped = why
        print(f"  {case}: skipped ({why})", flush=True)

    def fresh(self, name: str) -> Path:
        self.n += 1
        d = self.root / f"{name}-{self.n}"
        d.mkdir(parents=True)
        return d

    @staticmethod
    def mirrors(d: Path, url: str, extra: str = "") -> Path:
        cfg = d / "mirrors.yaml"
        cfg.write_text(f"sources:\n  - name: local\n    kind: hf\n    endpoint: {url}\n{extra}")
        return cfg

    def pull(self, d: Path, cfg: Path, *extra: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
        # --local-dir and --cache-dir exclude each other
        where = () if "--local-dir" in extra else ("--cache-dir", str(d / "cache"))
        return run_qf("pull", QWEN3_VL_8B, "--config", str(cfg), *where,
                      "--lock", str(d / "qwen-fetch.lock"), "--no-smoke", *extra, env=env)

    # -- hostile listings and bodies ---------------------------------------------------
    def hostile_listings(self) -> None:
        with HubServer(self.store) as hub:
            for name, (listing, needle) in sorted(HOSTILE_LISTINGS.items()):
                for local in (False, True):
                    t = Trial(name)
                    d = self.fresh("listing")
                    hub.faults.listing[QWEN3_VL_8B] = listing
                    hub.reset_stats()
                    cfg = self.mirrors(d, hub.url)
                    before = tree_state(self.root, skip=[self.store.root])
                    extra = ("--local-dir", str(d / "plain")) if local else ()
                    r = self.pull(d, cfg, *extra)
                    after = tree_state(self.root, skip=[self.store.root])
                    target = os.path.relpath(d / ("plain" if local else "cache"), self.root)
                    outside = new_outside(before, after, [target])
                    inside = [p for p, k in after.items() if p.startswith(target + os.sep) and k != "dir"]
                    if r.returncode != 3 or needle not in r.stderr:
                        t.notes.append(f"exit {r.returncode}: {r.stderr.strip()[:200]}")
                    t.corrupt += [f"written outside the target: {p}" for p in outside]
                    t.corrupt += [f"written inside the target: {p}" for p in inside]
                    if hub.total_bytes():
                        t.notes.append(f"{hub.total_bytes()} file bytes fetched from a hostile listing")
                    t.passed = not (t.notes or t.corrupt)
                    kind = ("nested VCS folder" if name.startswith(("vcs-", "reserved-git")) else
                            "digest/size conflict" if name.startswith("digest-") else "hostile listing")
                    self.record(f"{kind} ({'--local-dir' if local else 'cache'})", t)
                    shutil.rmtree(d, ignore_errors=True)
            hub.faults.listing.clear()

    def hostile_bodies(self) -> None:
        files = {f.path: f for f in self.store.files(QWEN3_VL_8B, self.commit)}
        clean: dict[str, str] | None = None
        cases: list[tuple[str, Faults, int]] = [
            ("Content-Length below the listing (shard)", Faults(content_length={SHARD1: files[SHARD1].size - 1000}), 4),
            ("Content-Length above the listing (shard)", Faults(content_length={SHARD1: files[SHARD1].size + 1000}), 4),
            ("Content-Length below the listing (small file)",
             Faults(content_length={"config.json": files["config.json"].size - 10}), 3),
            ("Content-Length above the listing (small file)",
             Faults(content_length={"config.json": files["config.json"].size + 10}), 3),
            ("body 1 MiB longer than announced (shard)",
             Faults(content_length={SHARD1: files[SHARD1].size}, extra_body={SHARD1: b"EVIL" * (1 << 18)}), 0),
            ("body 1 MiB longer than announced (small file)",
             Faults(content_length={"config.json": files["config.json"].size},
                    extra_body={"config.json": b"EVIL" * (1 << 18)}), 0),
        ]
        for case, faults, code in cases:
            with HubServer(self.store, faults) as hub:
                t = Trial(case)
                d = self.fresh("body")
                r = self.pull(d, self.mirrors(d, hub.url))
                if r.returncode != code:
                    t.notes.append(f"exit {r.returncode} (want {code}): {r.stderr.strip()[:200]}")
                got = cache_digest(d / "cache")
                if code == 0:
                    if clean is None:
                        with HubServer(self.store) as good:
                            c = self.fresh("clean")
                            self.pull(c, self.mirrors(c, good.url))
                            clean = cache_digest(c / "cache")
                    t.lost += sorted(set(clean) - set(got))
                    t.corrupt += [p for p in sorted(set(clean) & set(got)) if clean[p] != got[p]]
                    t.notes += [f"extra {p}" for p in sorted(set(got) - set(clean))]
                else:
                    snaps = [p for p in got if "/snapshots/" in p]
                    t.corrupt += [f"snapshot after a refusal: {p}" for p in snaps]
                    if (d / "qwen-fetch.lock").exists():
                        t.notes.append("lockfile written after a refusal")
                t.passed = not (t.lost or t.corrupt or t.notes)
                self.record("hostile body / length", t)

    # -- hostile configuration ---------------------------------------------------------
    def hostile_config(self) -> None:
        for name, (text, needle) in sorted(HOSTILE_MIRRORS.items()):
            t = Trial(name)
            d = self.fresh("config")
            (d / "mirrors.yaml").write_text(text)
            r = subprocess.run(qf_argv("pull", QWEN3_VL_8B, "--config", "mirrors.yaml", "--cache-dir", "cache",
                                       "--no-smoke"), capture_output=True, text=True, cwd=d, timeout=120, check=False)
            if r.returncode != 2 or needle not in r.stderr or "Traceback" in r.stderr:
                t.notes.append(f"exit {r.returncode}: {r.stderr.strip()[:200]}")
            if (d / "PWNED").exists() or (d / "cache").exists():
                t.corrupt.append("the config ran code or wrote the cache")
            t.passed = not (t.notes or t.corrupt)
            self.record("hostile mirrors.yaml", t)
        for name, spec in sorted(HOSTILE_LOCKS.items()):
            if spec is None:
                continue
            text, needle = spec
            for cmd in (("pull", QWEN3_VL_8B, "--config", "mirrors.yaml", "--cache-dir", "cache", "--no-smoke"),
                        ("verify", QWEN3_VL_8B, "--cache-dir", "cache"), ("gc", "--cache-dir", "cache", "--yes")):
                t = Trial(name)
                d = self.fresh("lock")
                self.mirrors(d, "http://127.0.0.1:9")
                (d / "qwen-fetch.lock").write_text(text)
                r = subprocess.run(qf_argv(*cmd), capture_output=True, text=True, cwd=d, timeout=120, check=False)
                if r.returncode != 2 or needle not in r.stderr:
                    t.notes.append(f"{cmd[0]} exit {r.returncode}: {r.stderr.strip()[:200]}")
                if (d / "qwen-fetch.lock").read_text() != text or (d / "PWNED").exists():
                    t.corrupt.append("lockfile rewritten or code run")
                t.passed = not (t.notes or t.corrupt)
                self.record("hostile lockfile", t)

    def wrong_hash(self, lab: CrashLab) -> None:
        """A verified cache, then a hand-edited pin: verify must say so, pull must refuse, nothing changes."""
        pin_text = lab.ref_lock
        shas = [ln.split()[-1] for ln in pin_text.splitlines() if "sha256:" in ln]
        for sha in self.rng.sample(shas, min(4, len(shas))):
            t = Trial("wrong hash")
            d = lab._copy(lab.ref, "wronghash")
            (d / "qwen-fetch.lock").write_text(pin_text.replace(sha, "d" * 64))
            before = cache_digest(d / "cache")
            v = subprocess.run(lab.verify(d), capture_output=True, text=True, timeout=120, check=False)
            p = subprocess.run(lab.pull(d, "--frozen"), capture_output=True, text=True, timeout=120, check=False)
            if v.returncode != 3:
                t.notes.append(f"verify exit {v.returncode}")
            if p.returncode != 3:
                t.notes.append(f"pull exit {p.returncode}")
            # A small git file's pin can only be checked against its bytes: the pull fetches it and
            # refuses it; the (reset) partial it leaves is gc's business.  Nothing else may change.
            after = {k: v for k, v in cache_digest(d / "cache").items() if ".incomplete" not in k}
            t.corrupt += diff_digests(before, after)
            t.passed = not (t.notes or t.corrupt)
            self.record("hand-edited wrong hash in the lockfile", t)
            shutil.rmtree(d, ignore_errors=True)

    # -- crashes, concurrency ------------------------------------------------------------
    def crashes(self, lab: CrashLab, kills: int) -> None:
        budget = {"pull": round(kills * 0.6), "verify": round(kills * 0.2)}
        budget["gc"] = kills - budget["pull"] - budget["verify"]
        runners: dict[str, Callable[[], Trial]] = {
            "pull": lambda: lab.trial_pull(self.rng, kills=self.rng.randint(1, 3), pinned=self.rng.random() < 0.5),
            "verify": lambda: lab.trial_verify(self.rng),
            "gc": lambda: lab.trial_gc(self.rng),
        }
        for kind, want in budget.items():
            got = tries = 0
            while got < want and tries < want * 4:
                tries += 1
                t = runners[kind]()
                got += t.kills
                self.record(f"SIGKILL during {kind}, then rerun", t)

    def concurrency(self, lab: CrashLab, hub: HubServer, rounds: int) -> None:
        for _ in range(rounds):
            for n in (2, 4):
                self.record(f"{n} concurrent pulls + gc (pinned)", lab.trial_concurrent(hub, n))
            self.record("4 concurrent pulls + gc --no-lock (unpinned)", lab.trial_concurrent(hub, 4, pinned=False))

    # -- disk full ---------------------------------------------------------------------
    def disk_full(self, rounds: int) -> None:
        case = "disk full (tmpfs), then rerun with space"
        big = RepoStore(self.root / "big-store")
        add_sharded_repo(big, QWEN3_VL_8B, shard_total=12 << 20)
        with HubServer(big) as clean_hub:
            c = self.fresh("disk-clean")
            self.pull(c, self.mirrors(c, clean_hub.url))
            clean = cache_digest(c / "cache")
        for i in range(rounds):
            mid = i % 2 == 1
            d = self.fresh("disk")
            mnt = d / "small"
            try:
                how = mount_small_fs(mnt, 24 if mid else 8)
            except OSError as exc:
                self.skip(case, str(exc))
                return
            t = Trial(case)
            try:
                with HubServer(big, Faults(rate=600_000 if mid else None)) as hub:
                    cfg = self.mirrors(d, hub.url)
                    argv = qf_argv("pull", QWEN3_VL_8B, "--config", str(cfg), "--cache-dir", str(mnt / "cache"),
                                   "--lock", str(d / "qwen-fetch.lock"), "--no-smoke")
                    if mid:
                        run_qf("lock", QWEN3_VL_8B, "--config", str(cfg), "--lock", str(d / "qwen-fetch.lock"))
                        err = self._fill_mid_download(argv, mnt, t)
                    else:
                        r = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
                        err = r.stderr
                        if r.returncode != 4:
                            t.notes.append(f"exit {r.returncode}, want 4")
                    if "still needed" not in err:
                        t.notes.append(f"the message does not name the space needed: {err.strip()[:160]}")
                    t.corrupt += [p for p in cache_digest(mnt / "cache") if "/snapshots/" in p]
                    if mid:
                        (mnt / "filler").unlink()
                    elif not resize_small_fs(mnt, 64):
                        t.notes.append(f"cannot grow the {how}")
                    hub.faults.rate = None
                    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
                    if r.returncode != 0:
                        t.notes.append(f"rerun with space exited {r.returncode}: {r.stderr.strip()[:200]}")
                got = cache_digest(mnt / "cache")
                t.lost += sorted(set(clean) - set(got))
                t.corrupt += [p for p in sorted(set(clean) & set(got)) if clean[p] != got[p]]
                t.notes += [f"extra {p}" for p in sorted(set(got) - set(clean))]
                t.passed = not (t.lost or t.corrupt or t.notes)
            finally:
                unmount(mnt)
            self.record(case + (" (filled mid-download)" if mid else " (too small from the start)"), t)

    @staticmethod
    def _fill_mid_download(argv: list[str], mnt: Path, t: Trial) -> str:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not any(partial_size(p) >= 1 << 20 for p in mnt.glob("cache/models--*/blobs/*.incomplete")):
            if proc.poll() is not None or time.monotonic() > deadline:
                t.notes.append("the pull never wrote a block")
                break
            time.sleep(0.02)
        with open(mnt / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        _out, err = proc.communicate(timeout=300)
        if proc.returncode != 4:
            t.notes.append(f"exit {proc.returncode}, want 4")
        if not [p for p in mnt.glob("cache/models--*/blobs/*.incomplete") if p.stat().st_size > 0]:
            t.notes.append("no partial data kept")
        return err

    # -- dripping sources ----------------------------------------------------------------
    def dripping(self) -> None:
        """A first source that drips (API answers at a byte a second, file bodies at a byte every 5 s,
        response headers that never end) and a healthy second one: the pull must end via the second,
        equal to a clean pull; a lone dripping source must fail (exit 4) instead of hanging."""
        from tests.support.drip import DripHeadersServer

        env = {"QWEN_FETCH_TIMEOUT": "10", "QWEN_FETCH_MIN_RATE": "1000", "QWEN_FETCH_RATE_WINDOW": "2"}
        clean = self.fresh("drip-clean")
        with HubServer(self.store) as good:
            self.pull(clean, self.mirrors(clean, good.url))
            want = cache_digest(clean / "cache")
            cases: list[tuple[str, Faults | None, bool]] = [
                ("API answers at 1 byte/s", Faults(drip={"api": 1.0}), True),
                ("file bodies at 1 byte per 5 s", Faults(drip={"*": 5.0}), True),
                ("response headers a byte at a time, never ending", None, True),
                ("file bodies at 1 byte per 5 s, no second source", Faults(drip={"*": 5.0}), False),
            ]
            for case, faults, fallback in cases:
                t = Trial(case)
                d = self.fresh("drip")
                with HubServer(self.store, faults) if faults else DripHeadersServer() as bad:
                    cfg = d / "mirrors.yaml"
                    cfg.write_text("sources:\n" + f"  - {{name: dripping, kind: hf, endpoint: '{bad.url}', priority: 1}}\n"
                                   + (f"  - {{name: good, kind: hf, endpoint: '{good.url}', priority: 2}}\n"
                                      if fallback else ""))
                    try:
                        r = self.pull(d, cfg, env=env)
                    except subprocess.TimeoutExpired:
                        t.notes.append("the pull was still waiting when the campaign gave up on it")
                        r = None
                if r is not None and fallback:
                    if r.returncode != 0:
                        t.notes.append(f"exit {r.returncode}: {r.stderr.strip()[-200:]}")
                    got = cache_digest(d / "cache")
                    t.lost += sorted(set(want) - set(got))
                    t.corrupt += [p for p in sorted(set(want) & set(got)) if want[p] != got[p]]
                elif r is not None and (r.returncode != 4 or "too slow" not in r.stderr):
                    t.notes.append(f"exit {r.returncode} (want 4, 'too slow'): {r.stderr.strip()[-200:]}")
                t.passed = not (t.lost or t.corrupt or t.notes)
                self.record(f"dripping source: {case}", t)

    # -- tokens and TLS ------------------------------------------------------------------
    def tokens(self) -> None:
        tok, priv = "hf_CampaignCanary_" + os.urandom(8).hex(), "priv_CampaignCanary_" + os.urandom(8).hex()
        with HubServer(self.store) as cdn, HubServer(self.store) as origin, HubServer(self.store) as env_hub:
            origin.faults.redirect_base = cdn.url.replace("127.0.0.1", "localhost")
            env_hub.faults.redirect_base = cdn.url
            t = Trial("tokens")
            d = self.fresh("tokens")
            cfg = self.mirrors(d, origin.url, "    token_env: QF_PRIVATE\n")
            env = {"HF_TOKEN": tok, "QF_PRIVATE": priv, "HF_ENDPOINT": env_hub.url}
            outs = [self.pull(d, cfg, "--json", env=env), self.pull(d, cfg, "--source", "local", env=env),
                    run_qf("verify", QWEN3_VL_8B, "--cache-dir", str(d / "cache"), "--lock",
                           str(d / "qwen-fetch.lock"), "--json", env=env),
                    run_qf("mirrors", "--config", str(cfg), "--probe", "--json", env=env)]
            t.notes += [f"exit {r.returncode}" for r in outs if r.returncode != 0]
            text = "".join(r.stdout + r.stderr for r in outs)
            for dirpath, _dirs, files in os.walk(d):
                for name in files:
                    p = Path(dirpath) / name
                    if p.is_file() and not p.is_symlink():
                        text += p.read_bytes().decode("latin-1")
            t.notes += [f"token found ({n[:6]}...)" for n in (tok, priv) if n in text]
            t.notes += [f"Authorization sent to the CDN: {e['path']}" for e in cdn.log if "Authorization" in e["headers"]]
            if not cdn.log:
                t.notes.append("no redirect was followed")
            t.passed = not t.notes
            self.record("token hygiene (outputs, lockfile, cache; CDN redirects)", t)

    def tls(self) -> None:
        import trustme

        ca = trustme.CA()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
        with HubServer(self.store, ssl_context=ctx) as hub:
            for trusted in (False, True):
                t = Trial("tls")
                d = self.fresh("tls")
                ca_file = d / "ca.pem"
                ca.cert_pem.write_to_path(str(ca_file))
                r = self.pull(d, self.mirrors(d, hub.url), env={"SSL_CERT_FILE": str(ca_file)} if trusted else {})
                want = 0 if trusted else 4
                if r.returncode != want:
                    t.notes.append(f"exit {r.returncode}, want {want}: {r.stderr.strip()[:200]}")
                if not trusted and "SSL_CERT_FILE" not in r.stderr:
                    t.notes.append("the error does not point at SSL_CERT_FILE")
                t.passed = not t.notes
                self.record("self-signed HTTPS mirror " + ("with SSL_CERT_FILE: accepted" if trusted else
                                                           "by default: refused"), t)

    # -- report --------------------------------------------------------------------------
    def table(self, seconds: float, args: argparse.Namespace) -> str:
        lines = ["| case | trials | passed | SIGKILLs | lost | corrupt |", "|---|---:|---:|---:|---:|---:|"]
        tot = [0, 0, 0, 0, 0]
        for row in self.rows.values():
            if row.skipped:
                lines.append(f"| {row.case} | skipped: {row.skipped} | | | | |")
                continue
            vals = [len(row.trials), row.passed, sum(t.kills for t in row.trials),
                    sum(len(t.lost) for t in row.trials), sum(len(t.corrupt) for t in row.trials)]
            tot = [a + b for a, b in zip(tot, vals)]
            lines.append(f"| {row.case} | " + " | ".join(map(str, vals)) + " |")
        lines.append("| **total** | " + " | ".join(f"**{v}**" for v in tot) + " |")
        failures = [f"- {row.case}: " + "; ".join(t.lost + t.corrupt + t.notes)[:400]
                    for row in self.rows.values() for t in row.trials if not t.passed]
        head = (f"Fault campaign: `python bench/fault_campaign.py --kills {args.kills}"
                f"{' --quick' if args.quick else ''} --seed {args.seed}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                f"{seconds / 60:.1f} min on {os.cpu_count()} cores.\n\n")
        return head + "\n".join(lines) + "\n" + ("\nFailed trials:\n" + "\n".join(failures) + "\n" if failures else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=50, help="SIGKILLs that must hit a running pull/verify/gc")
    ap.add_argument("--quick", action="store_true", help="fewer rounds of everything (and at most 12 kills)")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.kills = min(args.kills, 12)
    t0 = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="qwen-fetch-faults-"))
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    for var in ("HF_TOKEN", "HF_ENDPOINT", "SSL_CERT_FILE", "QWEN_FETCH_CONFIG", "HF_HUB_CACHE"):
        os.environ.pop(var, None)
    os.environ["HF_HOME"] = str(root / "hf-home")
    camp = Campaign(root, args.seed)
    print(f"seed {args.seed}, work in {root}", flush=True)
    try:
        print("hostile listings", flush=True)
        camp.hostile_listings()
        print("hostile bodies", flush=True)
        camp.hostile_bodies()
        print("hostile configuration", flush=True)
        camp.hostile_config()
        print("TLS and tokens", flush=True)
        camp.tls()
        camp.tokens()
        print("dripping sources", flush=True)
        camp.dripping()
        print("planted links, leftovers, duplicate content", flush=True)
        planted_links(camp)
        planted_leftovers(camp)
        duplicate_content(camp)
        print("disk full", flush=True)
        camp.disk_full(2 if args.quick else 4)
        with HubServer(camp.store, Faults(rate=1_000_000)) as hub:
            lab = CrashLab(root / "lab", camp.store, QWEN3_VL_8B, camp.commit, camp.old, hub.url)
            lab.hub = hub
            camp.wrong_hash(lab)
            print("concurrency", flush=True)
            camp.concurrency(lab, hub, 1 if args.quick else 3)
            print(f"crashes ({args.kills} SIGKILLs)", flush=True)
            camp.crashes(lab, args.kills)
    finally:
        report = camp.table(time.monotonic() - t0, args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        print("\n" + report + f"\nwritten to {args.out}")
    ok = all(row.passed == len(row.trials) for row in camp.rows.values())
    if ok:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
