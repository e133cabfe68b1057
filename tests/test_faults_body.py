"""Fault campaign, hostile bodies: lengths that disagree with the listing, bodies longer than announced.

A refused file must leave no blob, no snapshot and no lockfile; an accepted
one must be byte-identical to the store (the extra bytes never land anywhere).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen_fetch.store.hfcache import RepoCache
from tests.support.faultkit import cache_digest, new_outside, tree_state
from tests.support.fixtures import QWEN3_VL_8B
from tests.support.hub import HubServer, _tree_entries

SHARD1 = "model-00001-of-00004.safetensors"


def _pull(cli, mirrors: Path, *extra: str):  # type: ignore[no-untyped-def]
    return cli("pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", "cache", "--no-smoke", *extra)


def _size(store, commit: str, path: str) -> int:  # type: ignore[no-untyped-def]
    return next(f.size for f in store.files(QWEN3_VL_8B, commit) if f.path == path)


def _assert_refused_cleanly(tmp_path: Path, before: dict[str, str], commit: str) -> None:
    repo = RepoCache(Path("cache"), QWEN3_VL_8B)
    assert not repo.snapshot_dir(commit).exists()
    assert repo.read_ref("main") is None
    assert not Path("qwen-fetch.lock").exists()
    blobs = [p.name for p in repo.blobs_dir.iterdir()] if repo.blobs_dir.exists() else []
    assert not [b for b in blobs if len(b) == 64 and "." not in b and _is_bad_blob(repo.blobs_dir / b)]
    after = tree_state(tmp_path, skip=[tmp_path / "store"])
    assert new_outside(before, after, allowed=["cache"]) == []


def _is_bad_blob(p: Path) -> bool:
    from qwen_fetch.store.hasher import hash_file

    return hash_file(p).sha256 != p.name


@pytest.mark.parametrize("delta", [-1000, +1000])
def test_shard_content_length_disagreeing_with_listing_is_refused(delta: int, cli, store, sharded_repo,
                                                                  hub: HubServer, mirrors: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    size = _size(store, sharded_repo, SHARD1)
    hub.faults.content_length[SHARD1] = size + delta
    before = tree_state(tmp_path, skip=[tmp_path / "store"])
    r = _pull(cli, mirrors)
    assert r.exit_code == 4, r.stderr
    assert f"Content-Length {size + delta} disagrees" in r.stderr and SHARD1 in r.stderr
    _assert_refused_cleanly(tmp_path, before, sharded_repo)
    assert not RepoCache(Path("cache"), QWEN3_VL_8B).blob_path(
        next(f.sha256 for f in store.files(QWEN3_VL_8B, sharded_repo) if f.path == SHARD1)).exists()


@pytest.mark.parametrize("delta", [-10, +10])
def test_small_file_content_length_disagreeing_is_refused_at_once(delta: int, cli, store, sharded_repo,
                                                                  hub: HubServer, mirrors: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The small git files are fetched in memory to hash them: a longer Content-Length used to hang
    until the 30 s read timeout and then read as 'unreachable'; it is a hostile mirror (exit 3)."""
    size = _size(store, sharded_repo, "config.json")
    hub.faults.content_length["config.json"] = size + delta
    before = tree_state(tmp_path, skip=[tmp_path / "store"])
    r = _pull(cli, mirrors)
    assert r.exit_code == 3, r.stderr
    assert f"Content-Length {size + delta}" in r.stderr and "config.json" in r.stderr
    _assert_refused_cleanly(tmp_path, before, sharded_repo)


def test_listing_that_understates_a_shard_is_refused(cli, store, sharded_repo, hub: HubServer, mirrors: Path,
                                                     tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    entries = _tree_entries(store.files(QWEN3_VL_8B, sharded_repo), "")
    for e in entries:
        if e["path"] == SHARD1:
            e["size"] = e["lfs"]["size"] = e["size"] // 2
    hub.faults.listing[QWEN3_VL_8B] = entries
    before = tree_state(tmp_path, skip=[tmp_path / "store"])
    r = _pull(cli, mirrors)
    assert r.exit_code in (3, 4), r.stderr
    assert SHARD1 in r.stderr and "Traceback" not in r.stderr
    _assert_refused_cleanly(tmp_path, before, sharded_repo)


@pytest.mark.parametrize("path", [SHARD1, "config.json"])
def test_body_longer_than_announced_never_lands(path: str, cli, store, sharded_repo, hub: HubServer, mirrors: Path,
                                                tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Content-Length is right but 1 MiB of junk follows the body: only the announced bytes are read,
    the poisoned keep-alive connection is dropped, and the cache equals a clean pull's."""
    hub.faults.content_length[path] = _size(store, sharded_repo, path)
    hub.faults.extra_body[path] = b"\x00EVIL" * (1 << 18)
    r = _pull(cli, mirrors, "--json")
    assert r.exit_code == 0, r.stderr
    got = cache_digest(Path("cache"))
    with HubServer(store) as clean:
        cfg = tmp_path / "clean.yaml"
        cfg.write_text(f"sources:\n  - name: local\n    kind: hf\n    endpoint: {clean.url}\n")
        r2 = cli("pull", QWEN3_VL_8B, "--config", str(cfg), "--cache-dir", "clean-cache", "--lock", "clean.lock",
                 "--no-smoke")
        assert r2.exit_code == 0, r2.stderr
    assert got == cache_digest(Path("clean-cache"))
    assert cli("verify", QWEN3_VL_8B, "--cache-dir", "cache").exit_code == 0
