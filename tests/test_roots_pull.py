"""Chunk roots end to end: a pull records them in the lock, verify checks them on every core.

In process (the CLI through Typer's runner) so the chunk size can be made small: the shards of the
test repo then span several chunks each, as the real shards span dozens of 64 MiB chunks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qwen_fetch.cli.app import app
from qwen_fetch.core import digests
from qwen_fetch.core.digests import ROOT_ALGORITHM, chunk_root
from qwen_fetch.core.lockfile import dump_lock, parse_lock
from qwen_fetch.core.manifest import Pin
from qwen_fetch.store.hfcache import RepoCache
from tests.support.fixtures import QWEN3_VL_8B

CHUNK = 256 * 1024
SHARD = "model-00002-of-00004.safetensors"


@pytest.fixture
def pulled(tmp_path: Path, mirrors: Path, sharded_repo: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(digests, "CHUNK", CHUNK)
    r = CliRunner().invoke(app, ["pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", "cache",
                                 "--no-smoke", "--json"])
    assert r.exit_code == 0, r.output
    return tmp_path / "qwen-fetch.lock"


def _pin(lock: Path) -> Pin:
    pin = parse_lock(lock.read_text()).current(QWEN3_VL_8B)
    assert pin is not None
    return pin


def _verify(*extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    r = CliRunner().invoke(app, ["verify", QWEN3_VL_8B, "--cache-dir", "cache", "--json", *extra])
    return r.exit_code, json.loads(r.stdout)


def test_pull_records_the_roots_of_the_verified_bytes(pulled: Path) -> None:
    text = pulled.read_text()
    assert "\nversion: 2\n" in text
    pin = _pin(pulled)
    repo = RepoCache(Path("cache"), QWEN3_VL_8B)
    rooted = [f for f in pin.files if f.root is not None]
    assert rooted and all(f.size > CHUNK for f in rooted)  # the shards: more than one chunk
    assert all(f.root is None for f in pin.files if f.size <= CHUNK)  # one chunk: the sha256 says it all
    for f in rooted:
        assert f.root is not None and f.root.algorithm == ROOT_ALGORITHM
        assert f.root.value == chunk_root(repo.blob_path(f.sha256).read_bytes(), CHUNK)
    assert text.count("root:") == len(rooted)


def test_verify_checks_roots_and_says_so(pulled: Path) -> None:
    code, report = _verify()
    assert code == 0, report
    rooted = sum(1 for f in _pin(pulled).files if f.root is not None)
    t = report["targets"][0]
    assert t["checked_by"] == {ROOT_ALGORITHM: rooted, "sha256": t["files_checked"] - rooted}


def test_a_damaged_chunk_is_reported_in_the_three_lists(pulled: Path) -> None:
    pin = _pin(pulled)
    f = pin.by_path()[SHARD]
    blob = RepoCache(Path("cache"), QWEN3_VL_8B).blob_path(f.sha256)
    data = bytearray(blob.read_bytes())
    data[2 * CHUNK + 5] ^= 0x01  # one bit of the third chunk
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    code, report = _verify()
    assert code == 3
    t = report["targets"][0]
    assert t["missing"] == [] and t["extra"] == []
    (m,) = t["mismatched"]
    assert m["path"] == SHARD and m["fields"] == ["root"]
    assert m["expected"]["root"] == str(f.root)
    assert m["actual"]["root"] == f"{ROOT_ALGORITHM}:{chunk_root(bytes(data), CHUNK)}"
    r = CliRunner().invoke(app, ["verify", QWEN3_VL_8B, "--cache-dir", "cache"])
    assert f"expected size={f.size} root={f.root}" in r.output
    import qwen_fetch
    from qwen_fetch.core.errors import IntegrityError

    with pytest.raises(IntegrityError) as ei:
        qwen_fetch.verify(QWEN3_VL_8B, cache_dir="cache")
    assert any(c.startswith(f"mismatched  {SHARD} (root): expected root {f.root}, actual ") for c in ei.value.context)


def test_a_lock_without_roots_is_checked_by_sha256(pulled: Path) -> None:
    """A version 1 lock (or one a pull wrote with roots turned off) verifies as before."""
    lock = parse_lock(pulled.read_text())
    pin = _pin(pulled)
    bare = Pin(pin.revision, pin.commit, pin.source,
               tuple(type(f)(f.path, f.size, f.sha256, f.lfs, f.git_oid) for f in pin.files), pin.sources)
    pulled.write_text(dump_lock(lock.with_pin(QWEN3_VL_8B, bare)))
    assert "\nversion: 1\n" in pulled.read_text()
    code, report = _verify()
    assert code == 0
    t = report["targets"][0]
    assert t["checked_by"] == {ROOT_ALGORITHM: 0, "sha256": t["files_checked"]}


def test_roots_are_computed_only_for_a_pin_the_pull_writes(pulled: Path, mirrors: Path) -> None:
    """A pull against an existing pin (``--frozen`` in CI, every node of a fleet) spends no core on roots."""
    import shutil

    from qwen_fetch.api import run_pull

    shutil.rmtree("cache")
    before = pulled.read_text()
    result = run_pull(QWEN3_VL_8B, config=mirrors, cache_dir="cache", lock=pulled, frozen=True)
    fetched = [x for x in result.outcomes if not x.reused]
    assert fetched and all(x.root is None for x in fetched)
    assert pulled.read_text() == before
    code, _ = _verify()
    assert code == 0
    # A fresh pin does compute them.
    pulled.unlink()
    shutil.rmtree("cache")
    result = run_pull(QWEN3_VL_8B, config=mirrors, cache_dir="cache", lock=pulled)
    assert {x.path for x in result.outcomes if x.root is not None} == {
        f.path for f in _pin(pulled).files if f.root is not None} != set()


def test_a_pull_that_rechecks_the_cache_uses_the_roots(pulled: Path, mirrors: Path) -> None:
    """``pull --reverify`` checks rooted files by their chunks: a damaged chunk is caught and fetched again."""
    from qwen_fetch.api import run_pull

    f = _pin(pulled).by_path()[SHARD]
    blob = RepoCache(Path("cache"), QWEN3_VL_8B).blob_path(f.sha256)
    good = blob.read_bytes()
    data = bytearray(good)
    data[-1] ^= 0x80  # the last byte of the last chunk
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    result = run_pull(QWEN3_VL_8B, config=mirrors, cache_dir="cache", lock=pulled, frozen=True, reverify=True)
    assert [x.path for x in result.outcomes if not x.reused] == [SHARD]
    assert blob.read_bytes() == good


def test_the_recheck_reads_the_root_not_the_sha256(pulled: Path, mirrors: Path) -> None:
    """Intact bytes against a root that does not describe them fail the check: the root is what was compared."""
    from dataclasses import replace

    from qwen_fetch.api import run_pull
    from qwen_fetch.core.digests import Digest

    lock = parse_lock(pulled.read_text())
    pin = _pin(pulled)
    wrong = Digest(ROOT_ALGORITHM, "0" * 64)
    pin = replace(pin, files=tuple(replace(f, root=wrong) if f.path == SHARD else f for f in pin.files))
    pulled.write_text(dump_lock(lock.with_pin(QWEN3_VL_8B, pin)))
    result = run_pull(QWEN3_VL_8B, config=mirrors, cache_dir="cache", lock=pulled, frozen=True, reverify=True)
    assert [x.path for x in result.outcomes if not x.reused] == [SHARD]
