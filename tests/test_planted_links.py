"""Links planted in the cache or a --local-dir: nothing is ever written through them, verify reports them."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from qwen_fetch.core.ranges import block_count
from qwen_fetch.net.partstate import PartState, save_state, state_path
from qwen_fetch.store.hfcache import RepoCache
from tests.support.repo import RepoStore

MODEL = "Org/tiny"
SHARD = "model.safetensors"
BLOCK = 1 << 20


@pytest.fixture
def tiny(store: RepoStore) -> str:
    shard = hashlib.shake_256(b"shard").digest(3 * BLOCK + 123)
    return store.add_commit(MODEL, {SHARD: shard, "config.json": b'{"a": 1}', "sub/tok.json": b'{"t": 2}'})


def _pull(cli, mirrors: Path, *extra: str):  # type: ignore[no-untyped-def]
    where = () if "--local-dir" in extra else ("--cache-dir", "cache")  # the two exclude each other
    return cli("pull", MODEL, "--config", str(mirrors), *where, "--lock", "qwen-fetch.lock", "--no-smoke", "--json",
               *extra)


def _victim(tmp_path: Path) -> tuple[Path, bytes]:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious, not ours\n")
    return victim, victim.read_bytes()


def test_planted_partial_symlink_with_a_valid_state_is_never_written_through(cli, store, tiny, hub, mirrors,  # type: ignore[no-untyped-def]
                                                                              tmp_path) -> None:
    shard = store.file(MODEL, tiny, SHARD)
    assert shard is not None
    repo = RepoCache(Path("cache"), MODEL)
    repo.ensure_dirs()
    victim, before = _victim(tmp_path)
    partial = repo.partial_path(shard.sha256)
    os.symlink(victim, partial)
    # A resume state that matches the file: the old code reopened the "partial" (the link) and filled the victim.
    state = PartState(size=shard.size, sha256=shard.sha256, block_size=BLOCK,
                      sums=(None,) * block_count(shard.size, BLOCK))
    os.close(save_state(state_path(partial), state))
    r = _pull(cli, mirrors)
    assert r.exit_code == 0, r.stderr
    assert victim.read_bytes() == before
    blob = repo.blob_path(shard.sha256)
    assert not blob.is_symlink() and blob.read_bytes() == shard.disk.read_bytes()


def test_planted_lock_symlink_is_not_truncated(cli, store, tiny, hub, mirrors, tmp_path) -> None:  # type: ignore[no-untyped-def]
    shard = store.file(MODEL, tiny, SHARD)
    assert shard is not None
    repo = RepoCache(Path("cache"), MODEL)
    repo.ensure_dirs()
    victim, before = _victim(tmp_path)
    os.symlink(victim, repo.lock_path(shard.sha256))
    r = _pull(cli, mirrors)
    assert r.exit_code == 0, r.stderr
    assert victim.read_bytes() == before
    assert not repo.lock_path(shard.sha256).is_symlink()


def test_planted_blob_symlink_is_replaced_by_the_real_file(cli, store, tiny, hub, mirrors, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A blob that is a link to a file with the right bytes today: its target may change tomorrow."""
    shard = store.file(MODEL, tiny, SHARD)
    assert shard is not None
    repo = RepoCache(Path("cache"), MODEL)
    repo.ensure_dirs()
    lookalike = tmp_path / "lookalike"
    lookalike.write_bytes(shard.disk.read_bytes())
    os.symlink(lookalike, repo.blob_path(shard.sha256))
    r = _pull(cli, mirrors)
    assert r.exit_code == 0, r.stderr
    blob = repo.blob_path(shard.sha256)
    assert not blob.is_symlink() and blob.read_bytes() == shard.disk.read_bytes()
    assert lookalike.read_bytes() == shard.disk.read_bytes()


@pytest.mark.parametrize("where", ["snapshot", "refs", "snapshot-subdir"])
def test_planted_symlinked_directory_is_refused(cli, store, tiny, hub, mirrors, tmp_path, where) -> None:  # type: ignore[no-untyped-def]
    repo = RepoCache(Path("cache"), MODEL)
    repo.ensure_dirs()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if where == "snapshot":
        os.symlink(elsewhere, repo.snapshot_dir(tiny))
    elif where == "refs":
        os.rmdir(repo.refs_dir)
        os.symlink(elsewhere, repo.refs_dir)
    else:
        repo.snapshot_dir(tiny).mkdir(parents=True)
        os.symlink(elsewhere, repo.snapshot_dir(tiny) / "sub")
    r = _pull(cli, mirrors)
    assert r.exit_code == 3, r.stdout + r.stderr
    assert r.json()["error"] in ("unsafe-cache-entry", "unsafe-path") and "Traceback" not in r.stderr
    assert list(elsewhere.iterdir()) == []


def test_symlinked_folder_inside_a_local_dir_is_refused(cli, store, tiny, hub, mirrors, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``.cache`` inside the --local-dir holds partials and locks: a link there would take them elsewhere."""
    local = tmp_path / "local"
    local.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, local / ".cache")
    r = _pull(cli, mirrors, "--local-dir", str(local))
    assert r.exit_code == 3, r.stdout + r.stderr
    assert "unsafe-cache-entry" in r.stdout + r.stderr
    assert list(elsewhere.iterdir()) == []


def test_verify_reports_a_blob_that_is_a_symlink(cli, store, tiny, hub, mirrors, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert _pull(cli, mirrors).exit_code == 0
    shard = store.file(MODEL, tiny, SHARD)
    assert shard is not None
    repo = RepoCache(Path("cache"), MODEL)
    blob = repo.blob_path(shard.sha256)
    lookalike = tmp_path / "lookalike"
    os.replace(blob, lookalike)
    os.symlink(lookalike, blob)
    for extra in ([MODEL], ["--all"]):
        r = cli("verify", *extra, "--cache-dir", "cache", "--lock", "qwen-fetch.lock", "--json")
        assert r.exit_code == 3, (extra, r.stdout, r.stderr)
        bad = r.json()["bad_links"] + [b for t in r.json()["targets"] for b in t["bad_links"]]
        assert any(b["path"].endswith(SHARD) and b["problem"] == "outside-blobs" for b in bad), bad


def test_verify_reports_a_snapshot_whose_links_leave_the_cache(cli, store, tiny, hub, mirrors, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``snapshots/<commit>`` swapped for a link to a look-alike tree: its relative links land elsewhere."""
    assert _pull(cli, mirrors).exit_code == 0
    repo = RepoCache(Path("cache"), MODEL)
    fake = tmp_path / "fake" / "models--Org--tiny"
    (fake / "snapshots").mkdir(parents=True)
    shutil.copytree(repo.blobs_dir, fake / "blobs")
    snap = repo.snapshot_dir(tiny)
    os.replace(snap, fake / "snapshots" / tiny)
    os.symlink(fake / "snapshots" / tiny, snap)
    r = cli("verify", MODEL, "--cache-dir", "cache", "--lock", "qwen-fetch.lock", "--json")
    assert r.exit_code == 3, r.stdout
    bad = [b for t in r.json()["targets"] for b in t["bad_links"]]
    assert {b["problem"] for b in bad} == {"outside-blobs"} and len(bad) == 3
