"""Fault-campaign cases for planted files: links in the cache or a --local-dir, leftovers of killed
runs, and the same content at two paths.  Called by ``bench/fault_campaign.py`` with its ``Campaign``.

Every trial starts from its own folder; a "victim" file and folder live beside the cache, outside it,
and must be byte-for-byte unchanged afterwards, with nothing new written outside the target.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qwen_fetch.core.ranges import block_count
from qwen_fetch.net.partstate import PartState, save_state, state_path
from qwen_fetch.store.hfcache import RepoCache
from tests.support.faultkit import Trial, cache_digest, new_outside, run_qf, tree_state
from tests.support.fixtures import QWEN3_VL_8B
from tests.support.hub import HubServer

SHARD1 = "model-00001-of-00004.safetensors"
TWINS = "Org/twins"
BLOCK = 1 << 20


def _partial_link(repo: RepoCache, sha: str, size: int, victim: Path, _dir: Path) -> None:
    os.symlink(victim, repo.partial_path(sha))
    state = PartState(size=size, sha256=sha, block_size=BLOCK, sums=(None,) * block_count(size, BLOCK))
    os.close(save_state(state_path(repo.partial_path(sha)), state))


def _dir_link(target: Callable[[RepoCache], Path]) -> Callable[[RepoCache, str, int, Path, Path], None]:
    def plant(repo: RepoCache, _sha: str, _size: int, _victim: Path, victim_dir: Path) -> None:
        p = target(repo)
        if p.is_dir():
            shutil.rmtree(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(victim_dir, p)
    return plant


# name -> (plant(repo, shard sha256, shard size, victim file, victim dir), exit code wanted)
PLANTS: dict[str, tuple[Callable[[RepoCache, str, int, Path, Path], None], int]] = {
    "partial -> victim, with a valid .parts": (_partial_link, 0),
    ".parts -> victim": (lambda r, sha, _n, v, _d: os.symlink(v, state_path(r.partial_path(sha))), 0),
    "lock file -> victim": (lambda r, sha, _n, v, _d: os.symlink(v, r.lock_path(sha)), 0),
    "blob -> look-alike copy": (lambda r, sha, _n, v, _d: os.symlink(v.parent / "lookalike", r.blob_path(sha)), 0),
    "blobs/ -> victim dir": (_dir_link(lambda r: r.blobs_dir), 3),
    "refs/ -> victim dir": (_dir_link(lambda r: r.refs_dir), 3),
    ".locks/<repo> -> victim dir": (_dir_link(lambda r: r.locks_dir), 3),
    "models--<repo> -> victim dir": (_dir_link(lambda r: r.repo_dir), 3),
}


def _victims(d: Path, lookalike: Path) -> tuple[Path, Path]:
    out = d / "outside"
    (out / "dir").mkdir(parents=True)
    victim = out / "victim.txt"
    victim.write_bytes(b"precious bytes, not the cache's\n")
    shutil.copyfile(lookalike, out / "lookalike")
    return victim, out / "dir"


def planted_links(camp: Any) -> None:
    """A link planted where a pull writes: written through never; file links replaced, directory links refused."""
    shard = next(f for f in camp.store.files(QWEN3_VL_8B, camp.commit) if f.path == SHARD1)
    with HubServer(camp.store) as hub:
        c = camp.fresh("planted-clean")
        camp.pull(c, camp.mirrors(c, hub.url))
        want = cache_digest(c / "cache")
        for name, (plant, code) in PLANTS.items():
            for pinned in (False, True):
                t = Trial(name)
                d = camp.fresh("planted")
                victim, victim_dir = _victims(d, shard.disk)
                cfg = camp.mirrors(d, hub.url)
                if pinned:
                    shutil.copyfile(c / "qwen-fetch.lock", d / "qwen-fetch.lock")
                repo = RepoCache(d / "cache", QWEN3_VL_8B)
                repo.ensure_dirs()
                plant(repo, shard.sha256, shard.size, victim, victim_dir)
                before = tree_state(d)
                marks = {victim: victim.read_bytes(), d / "outside" / "lookalike": shard.disk.read_bytes()}
                r = camp.pull(d, cfg)
                after = tree_state(d)
                if r.returncode != code or (code == 3 and "unsafe-cache-entry" not in r.stderr and
                                            "refusing to write through" not in r.stderr):
                    t.notes.append(f"exit {r.returncode} (want {code}): {r.stderr.strip()[-200:]}")
                t.corrupt += [f"changed outside the cache: {p}" for p in new_outside(before, after, ["cache",
                                                                                                     "qwen-fetch.lock"])]
                t.corrupt += [f"victim {p.name} changed" for p, b in marks.items() if p.read_bytes() != b]
                t.corrupt += [f"written into the victim dir: {p.name}" for p in victim_dir.iterdir()]
                if code == 0:
                    got = cache_digest(d / "cache")
                    t.lost += sorted(set(want) - set(got))
                    t.corrupt += [p for p in sorted(set(want) & set(got)) if want[p] != got[p]]
                    t.notes += [f"extra {p}" for p in sorted(set(got) - set(want))]
                t.passed = not (t.lost or t.corrupt or t.notes)
                camp.record("planted link in the cache: " + name, t)
                shutil.rmtree(d, ignore_errors=True)
        for sub in (".cache", ".cache/qwen-fetch", ".cache/qwen-fetch/locks"):
            t = Trial("local-dir link")
            d = camp.fresh("planted-local")
            victim, victim_dir = _victims(d, shard.disk)
            link = d / "local" / sub
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(victim_dir, link)
            cfg = camp.mirrors(d, hub.url)
            before = tree_state(d)
            r = camp.pull(d, cfg, "--local-dir", str(d / "local"))
            after = tree_state(d)
            if r.returncode != 3:
                t.notes.append(f"exit {r.returncode} (want 3): {r.stderr.strip()[-200:]}")
            t.corrupt += [f"changed outside the target: {p}" for p in new_outside(before, after,
                                                                                 ["local", "qwen-fetch.lock"])]
            t.corrupt += [f"written into the victim dir: {p.name}" for p in victim_dir.iterdir()]
            t.passed = not (t.corrupt or t.notes)
            camp.record("planted link in a --local-dir (.cache and below)", t)
            shutil.rmtree(d, ignore_errors=True)


def planted_leftovers(camp: Any) -> None:
    """What a pull killed after promotion or mid-save leaves, planted in a clean cache: the rerun (or gc)
    clears it, verify --all passes, and the cache ends equal to a clean pull."""
    files = camp.store.files(QWEN3_VL_8B, camp.commit)
    with HubServer(camp.store) as hub:
        c = camp.fresh("leftover-clean")
        camp.pull(c, camp.mirrors(c, hub.url))
        want = cache_digest(c / "cache")
        for then in ("pull", "gc"):
            for f in [f for f in files if f.lfs][:2] + [next(f for f in files if not f.lfs)]:
                t = Trial("leftover")
                d = camp.fresh("leftover")
                shutil.copytree(c / "cache", d / "cache", symlinks=True)
                shutil.copyfile(c / "qwen-fetch.lock", d / "qwen-fetch.lock")
                repo = RepoCache(d / "cache", QWEN3_VL_8B)
                for p in (state_path(repo.partial_path(f.sha256)), repo.blobs_dir / f".{f.sha256}.incomplete.parts.0badf00d.tmp",
                          repo.blobs_dir / f".{f.sha256}.5eed1e55.tmp"):
                    p.write_text('{"version":2}\n')
                if then == "pull":
                    r = camp.pull(d, camp.mirrors(d, hub.url))
                else:
                    r = run_qf("gc", "--cache-dir", str(d / "cache"), "--lock", str(d / "qwen-fetch.lock"), "--yes")
                if r.returncode != 0:
                    t.notes.append(f"{then} exit {r.returncode}: {r.stderr.strip()[-200:]}")
                v = run_qf("verify", "--all", "--cache-dir", str(d / "cache"), "--lock", str(d / "qwen-fetch.lock"))
                if v.returncode != 0:
                    t.notes.append(f"verify --all exit {v.returncode}: {v.stdout.strip()[-200:]}")
                got = cache_digest(d / "cache")
                t.lost += sorted(set(want) - set(got))
                t.corrupt += [p for p in sorted(set(want) & set(got)) if want[p] != got[p]]
                t.notes += [f"extra {p}" for p in sorted(set(got) - set(want))]
                t.passed = not (t.lost or t.corrupt or t.notes)
                camp.record(f"planted orphan .parts and temporaries, then {then}", t)
                shutil.rmtree(d, ignore_errors=True)


def duplicate_content(camp: Any) -> None:
    """One content at two paths (small files and LFS shards, in different folders): one download, every path."""
    shard = hashlib.shake_256(b"twin shard").digest(3 << 20)
    small = b'{"same": "bytes"}\n'
    layout = {"a.json": small, "sub/b.json": small, "x/model.safetensors": shard,
              "y/deeper/model.safetensors": shard, "config.json": b"{}"}
    camp.store.add_commit(TWINS, dict(layout))
    with HubServer(camp.store) as hub:
        for local in (True, False):
            for pinned in (False, True):
                t = Trial("duplicates")
                d = camp.fresh("twins")
                cfg = camp.mirrors(d, hub.url)
                if pinned:
                    run_qf("lock", TWINS, "--config", str(cfg), "--lock", str(d / "qwen-fetch.lock"))
                hub.reset_stats()
                where = ["--local-dir", str(d / "local")] if local else ["--cache-dir", str(d / "cache")]
                r = run_qf("pull", TWINS, "--config", str(cfg), *where, "--lock", str(d / "qwen-fetch.lock"),
                           "--no-smoke")
                if r.returncode != 0:
                    t.notes.append(f"exit {r.returncode}: {r.stderr.strip()[-200:]}")
                root = d / "local" if local else RepoCache(d / "cache", TWINS).snapshots_dir
                for path, data in layout.items():
                    hits = list(root.glob(path)) if local else list(root.glob("*/" + path))
                    if not hits:
                        t.lost.append(path)
                    elif any(h.read_bytes() != data for h in hits):
                        t.corrupt.append(path)
                served = sum(n for p, n in hub.bytes_sent.items() if "model.safetensors" in p)
                if served != len(shard):
                    t.notes.append(f"{served} shard bytes served for {len(shard)} bytes of content")
                t.passed = not (t.lost or t.corrupt or t.notes)
                camp.record("same content at two paths (" + ("--local-dir" if local else "cache") + ")", t)
                shutil.rmtree(d, ignore_errors=True)
