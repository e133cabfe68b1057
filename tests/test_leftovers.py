"""What a killed pull leaves after promotion or mid-save: the rerun clears it, gc collects it at any age."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from qwen_fetch.store.hfcache import RepoCache
from tests.support.repo import RepoStore

MODEL = "Org/tiny"
SHARD = "model.safetensors"


@pytest.fixture
def tiny(store: RepoStore) -> str:
    return store.add_commit(MODEL, {SHARD: hashlib.shake_256(b"shard").digest(2 << 20), "config.json": b'{"a": 1}'})


def _pull(cli, mirrors: Path):  # type: ignore[no-untyped-def]
    return cli("pull", MODEL, "--config", str(mirrors), "--cache-dir", "cache", "--lock", "qwen-fetch.lock",
               "--no-smoke", "--json")


def _plant(repo: RepoCache, sha: str) -> list[Path]:
    """An orphan journal (killed between promotion and its unlink), a state save's and a small write's temporaries."""
    planted = [repo.blobs_dir / f"{sha}.incomplete.parts", repo.blobs_dir / f".{sha}.incomplete.parts.0badf00d.tmp",
               repo.blobs_dir / f".{sha}.1234abcd.tmp"]
    for p in planted:
        p.write_text('{"version":2}\n')
    return planted


def test_rerun_clears_what_a_killed_run_left_and_verify_all_passes(cli, store, tiny, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    assert _pull(cli, mirrors).exit_code == 0
    repo = RepoCache(Path("cache"), MODEL)
    shard = store.file(MODEL, tiny, SHARD)
    cfg = store.file(MODEL, tiny, "config.json")
    assert shard is not None and cfg is not None
    planted = _plant(repo, shard.sha256) + _plant(repo, cfg.sha256)
    not_ours = repo.blobs_dir / ".someone-elses.tmp"
    not_ours.write_text("x")
    r = _pull(cli, mirrors)
    assert r.exit_code == 0, r.stderr
    assert [p for p in planted if p.exists()] == [] and not_ours.exists()
    v = cli("verify", "--all", "--cache-dir", "cache", "--lock", "qwen-fetch.lock", "--json")
    assert v.exit_code == 0, v.stdout


def test_gc_lists_and_removes_leftovers_of_any_age(cli, store, tiny, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    assert _pull(cli, mirrors).exit_code == 0
    repo = RepoCache(Path("cache"), MODEL)
    shard = store.file(MODEL, tiny, SHARD)
    assert shard is not None
    planted = _plant(repo, shard.sha256)
    resumable = repo.blobs_dir / f"{'ab' * 32}.incomplete"  # a young partial of another blob: kept
    resumable.write_bytes(b"x" * 10)
    not_ours = repo.blobs_dir / ".someone-elses.tmp"
    not_ours.write_text("x")
    dry = cli("gc", "--cache-dir", "cache", "--lock", "qwen-fetch.lock", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    doomed = {Path(a["path"]).name for a in dry.json()["plan"]["actions"]}
    assert doomed == {p.name for p in planted}
    r = cli("gc", "--cache-dir", "cache", "--lock", "qwen-fetch.lock", "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    assert [p for p in planted if p.exists()] == [] and resumable.exists() and not_ours.exists()
    assert repo.blob_path(shard.sha256).read_bytes() == shard.disk.read_bytes()
