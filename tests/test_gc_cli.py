"""`qwen-fetch gc` on caches laid out directly: locks, interruption, confirmation, bytes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from filelock import FileLock
from huggingface_hub import scan_cache_dir
from typer.testing import CliRunner

from qwen_fetch.cli.app import app
from qwen_fetch.cli.gc_cmd import build_policy, make_plan
from qwen_fetch.core.gc import BLOB, PARTIAL, REVISION
from qwen_fetch.core.manifest import Pin
from qwen_fetch.store.gc_disk import TRASH_DIR, execute
from qwen_fetch.store.hfcache import RepoCache
from tests.support.repo import RepoStore
from tests.verify_gc_cache import disk_bytes, install, write_pins

MODEL = "Org/Model"
OLD = time.time() - 3 * 86400


class Cache:
    """Four revisions: p1 (pinned), p2 (pinned, main), x (ref exp), d1/d2 (detached, not pinned)."""

    def __init__(self, tmp: Path, store: RepoStore) -> None:
        self.dir = tmp / "cache"
        self.repo = RepoCache(self.dir, MODEL)
        base = {"config.json": b"{}", "shard-1.bin": os.urandom(50_000), "shard-2.bin": os.urandom(60_000)}
        self.commits: dict[str, str] = {}
        self.pins: dict[str, Pin] = {}
        variants = {"p1": {}, "p2": {"shard-2.bin": os.urandom(61_000)}, "x": {"extra.bin": os.urandom(7_000)},
                    "d1": {"shard-2.bin": os.urandom(62_000)}, "d2": {"shard-1.bin": os.urandom(63_000),
                                                                     "d2.bin": os.urandom(1_000)}}
        refs = {"p1": None, "p2": "main", "x": "exp", "d1": None, "d2": None}
        for name, change in variants.items():
            c = store.add_commit(MODEL, {**base, **change}, revision=name)
            self.commits[name] = c
            self.pins[name] = install(self.dir, store, MODEL, c, ref=refs[name])
        self.lock = write_pins(tmp / "qwen-fetch.lock", {MODEL: [self.pins["p2"], self.pins["p1"]]})

    def blob(self, rev: str, path: str) -> Path:
        return self.repo.blob_path(self.pins[rev].by_path()[path].sha256)

    def gc(self, *args: str) -> tuple[int, dict]:
        res = CliRunner().invoke(app, ["gc", "--cache-dir", str(self.dir), "--lock", str(self.lock), "--json", *args])
        return res.exit_code, (json.loads(res.stdout) if res.stdout.strip().startswith("{") else {"out": res.output})


@pytest.fixture
def cache(tmp_path: Path, store: RepoStore) -> Cache:
    return Cache(tmp_path, store)


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): (os.readlink(p) if p.is_symlink() else str(p.stat().st_size))
            for p in sorted(root.rglob("*")) if p.name != "" and not p.is_dir()}


def consistent(cache_dir: Path) -> None:
    """What huggingface_hub and loaders need: no dangling snapshot link, every ref names a snapshot."""
    info = scan_cache_dir(cache_dir)
    assert info.warnings == []
    for p in cache_dir.glob("models--*/snapshots/**/*"):
        if p.is_symlink():
            assert p.exists(), f"dangling {p}"


def test_dry_run_deletes_nothing_and_plans_the_right_things(cache: Cache) -> None:
    before = tree(cache.dir)
    code, out = cache.gc("--dry-run")
    assert code == 0, out
    assert tree(cache.dir) == before
    plan = out["plan"]
    revs = sorted(Path(a["path"]).name for a in plan["actions"] if a["kind"] == REVISION)
    assert revs == sorted([cache.commits["d1"], cache.commits["d2"]])
    blobs = sorted(Path(a["path"]).name for a in plan["actions"] if a["kind"] == BLOB)
    assert blobs == sorted(cache.blob(r, p).name for r, p in
                           [("d1", "shard-2.bin"), ("d2", "shard-1.bin"), ("d2", "d2.bin")])
    kept = {k["name"]: k["why"] for k in plan["kept"] if k["kind"] == REVISION}
    assert kept[cache.commits["p1"]] == "pinned by a lockfile" and kept[cache.commits["x"]] == "target of ref exp"
    assert plan["bytes"] == 62_000 + 63_000 + 1_000


def test_gc_frees_what_it_reported_and_keeps_the_cache_usable(cache: Cache) -> None:
    before = disk_bytes(cache.dir)
    code, out = cache.gc("--yes")
    assert code == 0, out
    assert out["result"]["freed"] == out["plan"]["bytes"] == before - disk_bytes(cache.dir) == 126_000
    consistent(cache.dir)
    assert set(cache.repo.snapshot_commits()) == {cache.commits[r] for r in ("p1", "p2", "x")}
    assert not (cache.repo.repo_dir / TRASH_DIR).exists()
    res = CliRunner().invoke(app, ["verify", "--all", "--cache-dir", str(cache.dir), "--lock", str(cache.lock)])
    assert res.exit_code == 0, res.output
    code, out = cache.gc("--yes")  # idempotent
    assert code == 0 and out["plan"]["actions"] == []


def test_keep_last_keeps_the_newest_detached_revision(cache: Cache) -> None:
    snap = cache.repo.snapshot_dir
    for p in cache.repo.blobs_dir.iterdir():
        os.utime(p, (OLD, OLD))
    newest = cache.blob("d2", "d2.bin")
    os.utime(newest, None)  # d2 was modified just now
    code, out = cache.gc("--yes", "--keep-last", "1")
    assert code == 0, out
    assert snap(cache.commits["d2"]).is_dir() and not snap(cache.commits["d1"]).exists()
    code, out = cache.gc("--dry-run", "--older-than", "1d")
    assert [a for a in out["plan"]["actions"] if a["kind"] == REVISION] == []


def test_locked_blob_is_left_alone(cache: Cache) -> None:
    doomed = cache.blob("d2", "shard-1.bin")
    with FileLock(str(cache.repo.lock_path(doomed.name))):  # a pull is (re)writing this blob
        code, out = cache.gc("--yes")
    assert code == 0, out
    assert doomed.exists()
    skipped = out["result"]["skipped"]
    assert [(Path(s["path"]).name, s["skipped_because"]) for s in skipped] == [
        (doomed.name, "a running pull holds its lock")]
    assert out["result"]["freed"] == 126_000 - 63_000
    consistent(cache.dir)


def test_partials_respect_age_and_locks(cache: Cache) -> None:
    blobs = cache.repo.blobs_dir
    stale, fresh, held = blobs / ("a" * 64 + ".incomplete"), blobs / ("b" * 64 + ".incomplete"), blobs / ("c" * 64 + ".incomplete")
    parts = blobs / ("a" * 64 + ".incomplete.parts")
    for p in (stale, fresh, held, parts):
        p.write_bytes(b"x" * 100)
    for p in (stale, parts, held):
        os.utime(p, (OLD, OLD))
    with FileLock(str(cache.repo.lock_path("c" * 64))):
        code, out = cache.gc("--yes")
    assert code == 0, out
    gone = sorted(Path(a["path"]).name for a in out["result"]["done"] if a["kind"] == PARTIAL)
    assert gone == sorted([stale.name, parts.name])
    assert fresh.exists() and held.exists() and not stale.exists() and not parts.exists()


def test_orphan_blob_needs_to_be_old(cache: Cache) -> None:
    orphan = cache.repo.blobs_dir / ("e" * 64)
    orphan.write_bytes(b"o" * 500)
    _code, out = cache.gc("--dry-run")
    assert orphan.name not in [Path(a["path"]).name for a in out["plan"]["actions"]]
    os.utime(orphan, (OLD, OLD))
    code, out = cache.gc("--yes")
    assert code == 0, out
    assert not orphan.exists() and out["result"]["freed"] == 126_500


def test_interrupted_gc_leaves_a_consistent_cache(cache: Cache) -> None:
    policy = build_policy([cache.lock], False, 0, None, "1d")
    plan = make_plan(cache.dir, policy)
    assert [a.kind for a in plan.actions][:2] == [REVISION, REVISION]

    def stop(_a: object) -> None:
        raise KeyboardInterrupt

    runs = 0
    while plan.actions:  # interrupt every run right after its first step
        with pytest.raises(KeyboardInterrupt):
            execute(plan, on_done=stop)
        consistent(cache.dir)
        runs += 1
        assert runs < 20
        plan = make_plan(cache.dir, policy)
    assert runs >= 4
    consistent(cache.dir)
    assert not any((cache.repo.repo_dir / TRASH_DIR).glob("*"))
    assert set(cache.repo.snapshot_commits()) == {cache.commits[r] for r in ("p1", "p2", "x")}
    assert sorted(p.name for p in cache.repo.blobs_dir.iterdir()) == sorted(
        {f.sha256 for r in ("p1", "p2", "x") for f in cache.pins[r].files})


def test_confirmation_and_lockfile_guards(cache: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    before = tree(cache.dir)
    res = CliRunner().invoke(app, ["gc", "--cache-dir", str(cache.dir), "--lock", str(cache.lock)])
    assert res.exit_code == 2 and "--yes" in res.output  # not a TTY: refuse
    res = CliRunner().invoke(app, ["gc", "--cache-dir", str(cache.dir), "--lock", str(tmp_path / "nope.lock")])
    assert res.exit_code == 2
    res = CliRunner().invoke(app, ["gc", "--cache-dir", str(cache.dir), "--yes"], catch_exceptions=False)
    assert res.exit_code == 2 and "--no-lock" in res.output  # no ./qwen-fetch.lock in cwd
    res = CliRunner().invoke(app, ["gc", "--cache-dir", str(cache.dir), "--lock", str(cache.lock),
                                   "--older-than", "soon"])
    assert res.exit_code == 2
    assert tree(cache.dir) == before
    res = CliRunner().invoke(app, ["gc", "--cache-dir", str(cache.dir), "--no-lock", "--dry-run"])
    assert res.exit_code == 0 and cache.commits["p1"][:12] in res.output  # only refs protect now


def test_corrupted_repo_is_left_alone(cache: Cache) -> None:
    cache.blob("p1", "config.json").unlink()  # dangling links: huggingface_hub flags the repo
    before = tree(cache.dir)
    code, out = cache.gc("--yes")
    assert code == 0
    assert out["plan"]["actions"] == [] and out["plan"]["skipped"]
    assert tree(cache.dir) == before
