"""Identical content at two paths: fetched once, present at both, in the cache and in a --local-dir."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from qwen_fetch.store.hfcache import RepoCache
from tests.support.repo import RepoStore

MODEL = "Org/twins"
SHARD = hashlib.shake_256(b"twin shard").digest(3 << 20)
SMALL = b'{"same": "bytes"}\n'
FILES = {"a.json": SMALL, "sub/b.json": SMALL, "x/model.safetensors": SHARD, "y/deeper/model.safetensors": SHARD,
         "config.json": b"{}"}


@pytest.fixture
def twins(store: RepoStore) -> str:
    return store.add_commit(MODEL, dict(FILES))


def _pull(cli, mirrors: Path, *extra: str):  # type: ignore[no-untyped-def]
    where = () if "--local-dir" in extra else ("--cache-dir", "cache")  # the two exclude each other
    return cli("pull", MODEL, "--config", str(mirrors), *where, "--lock", "qwen-fetch.lock", "--no-smoke", "--json",
               *extra)


def _shard_bytes_served(hub) -> int:  # type: ignore[no-untyped-def]
    return sum(n for path, n in hub.bytes_sent.items() if "model.safetensors" in path)


@pytest.mark.parametrize("pinned", [False, True])
def test_local_dir_with_the_same_content_in_two_folders(cli, twins, hub, mirrors, pinned) -> None:  # type: ignore[no-untyped-def]
    if pinned:
        assert cli("lock", MODEL, "--config", str(mirrors), "--lock", "qwen-fetch.lock").exit_code == 0
    hub.reset_stats()
    r = _pull(cli, mirrors, "--local-dir", "local")
    assert r.exit_code == 0, r.stdout + r.stderr
    for path, data in FILES.items():
        p = Path("local") / path
        assert p.is_file() and not p.is_symlink() and p.read_bytes() == data, path
    assert _shard_bytes_served(hub) == len(SHARD)  # one download for both paths
    assert not [p for p in Path("local/.cache/qwen-fetch").iterdir() if p.is_file()]  # no partial left
    v = cli("verify", "--local-dir", "local", MODEL, "--lock", "qwen-fetch.lock", "--json")
    assert v.exit_code == 0, v.stdout
    # One copy lost: the rerun puts it back from the other, fetching nothing.
    os.unlink("local/y/deeper/model.safetensors")
    hub.reset_stats()
    r = _pull(cli, mirrors, "--local-dir", "local")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert Path("local/y/deeper/model.safetensors").read_bytes() == SHARD and _shard_bytes_served(hub) == 0


def test_cache_links_both_paths_to_one_blob(cli, twins, hub, mirrors) -> None:  # type: ignore[no-untyped-def]
    hub.reset_stats()
    r = _pull(cli, mirrors)
    assert r.exit_code == 0, r.stdout + r.stderr
    repo = RepoCache(Path("cache"), MODEL)
    snap = repo.snapshot_dir(r.json()["commit"])
    for a, b in (("a.json", "sub/b.json"), ("x/model.safetensors", "y/deeper/model.safetensors")):
        assert os.path.realpath(snap / a) == os.path.realpath(snap / b)
        assert (snap / a).read_bytes() == FILES[a]
    assert _shard_bytes_served(hub) == len(SHARD)
