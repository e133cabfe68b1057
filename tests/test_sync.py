"""`qwen-fetch sync` into a directory, then `qwen-fetch pull` back from it as a `kind: dir` source and
`qwen-fetch verify` (the S3 side runs against SeaweedFS in test_s3_seaweed.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen_fetch.core.errors import IntegrityError
from qwen_fetch.core.lockfile import Lock
from qwen_fetch.store.backends import DirStore
from tests.serve_helpers import pull_into
from tests.support.fixtures import QWEN3_VL_8B
from tests.support.hub import HubServer
from tests.support.repo import RepoStore


@pytest.fixture
def pulled(tmp_path: Path, store: RepoStore, sharded_repo: str, hub: HubServer) -> tuple[Path, Path, Lock]:
    cache, lock = tmp_path / "cache", tmp_path / "q.lock"
    return cache, lock, pull_into(cache, lock, QWEN3_VL_8B, hub.url)


def _unique_blobs(lock: Lock) -> int:
    return len({f.sha256 for f in lock.pins(QWEN3_VL_8B)[0].files})


def _store_mirrors(path: Path, kind: str, endpoint: str, extra: str = "") -> Path:
    path.write_text(f"sources:\n  - name: private\n    kind: {kind}\n    endpoint: {endpoint}\n{extra}")
    return path


def test_sync_to_directory_then_pull_back_and_verify(tmp_path: Path, cli, pulled) -> None:
    cache, lock_path, lock = pulled
    dest = tmp_path / "nfs" / "models"
    args = ("sync", QWEN3_VL_8B, "--to", str(dest), "--cache-dir", str(cache), "--lock", str(lock_path), "--json")
    r = cli(*args)
    assert r.exit_code == 0, r.stderr
    out = r.json()
    pin = lock.pins(QWEN3_VL_8B)[0]
    assert out["uploaded_blobs"] == _unique_blobs(lock) and out["skipped_blobs"] == 0
    assert out["uploaded_bytes"] == sum({f.sha256: f.size for f in pin.files}.values())
    assert (dest / "models" / QWEN3_VL_8B / "refs" / "main").read_text().strip() == pin.commit
    assert sorted(p.name for p in (dest / "blobs").iterdir()) == sorted({f.sha256 for f in pin.files})

    # The re-run names the store as a `kind: dir` source of mirrors.yaml: nothing to transfer.
    mirrors = _store_mirrors(tmp_path / "dir.yaml", "dir", str(dest))
    again = cli("sync", QWEN3_VL_8B, "--to", "private", "--config", str(mirrors), "--cache-dir", str(cache),
                "--lock", str(lock_path), "--json")
    assert again.exit_code == 0, again.stderr
    assert (again.json()["uploaded_blobs"], again.json()["uploaded_bytes"]) == (0, 0)
    assert again.json()["skipped_blobs"] == _unique_blobs(lock)
    assert not again.json()["manifest_written"] and not again.json()["ref_written"]

    # Bit rot in the store: a plain re-run trusts names and sizes, --recheck re-reads and repairs it.
    shard = next(f for f in pin.files if f.path.endswith("00002-of-00004.safetensors"))
    rotten = dest / "blobs" / shard.sha256
    rotten.write_bytes(b"\0" * shard.size)
    fixed = cli(*args, "--recheck")
    assert fixed.exit_code == 0, fixed.stderr
    assert [u["sha256"] for u in fixed.json()["upload"]] == [shard.sha256]

    p = cli("pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", "node", "--lock", str(lock_path),
            "--frozen", "--no-smoke", "--json")
    assert p.exit_code == 0, p.stderr
    assert p.json()["source"] == "private" and p.json()["downloaded_files"] == len(pin.files)
    v = cli("verify", QWEN3_VL_8B, "--cache-dir", "node", "--lock", str(lock_path))
    assert v.exit_code == 0, v.stdout + v.stderr

    # A store is never trusted either: a blob rotten in it is refused by the puller (exit 3).
    rotten.write_bytes(b"\1" * shard.size)
    bad = cli("pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", "node2", "--lock", str(lock_path),
              "--frozen", "--no-smoke", "--json")
    assert bad.exit_code == 3, bad.stderr
    assert not (tmp_path / "node2" / "models--Qwen--Qwen3-VL-8B-Instruct" / "blobs" / shard.sha256).exists()


def test_sync_refuses_a_corrupted_cache_and_an_unpinned_model(tmp_path: Path, cli, pulled) -> None:
    cache, lock_path, lock = pulled
    pin = lock.pins(QWEN3_VL_8B)[0]
    blob = cache / "models--Qwen--Qwen3-VL-8B-Instruct" / "blobs" / pin.files[-1].sha256
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    dest = tmp_path / "private-store"
    r = cli("sync", QWEN3_VL_8B, "--to", str(dest), "--cache-dir", str(cache), "--lock", str(lock_path))
    assert r.exit_code == 3, r.stderr
    assert "does not match the lock" in r.stderr and pin.files[-1].path in r.stderr
    assert not dest.exists() or not any(dest.rglob("*.json"))
    r = cli("sync", "Other/Model", "--to", str(dest), "--cache-dir", str(cache), "--lock", str(lock_path))
    assert r.exit_code == 3 and "not pinned" in r.stderr


def test_dry_run_changes_nothing(tmp_path: Path, cli, pulled) -> None:
    cache, lock_path, lock = pulled
    dest = tmp_path / "private-store"
    r = cli("sync", QWEN3_VL_8B, "--to", str(dest), "--cache-dir", str(cache), "--lock", str(lock_path), "--dry-run",
            "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["upload_blobs"] == _unique_blobs(lock) and r.json()["write_manifest"]
    assert not dest.exists()


def test_a_blob_that_does_not_verify_after_upload_stops_before_the_manifest(tmp_path: Path, pulled) -> None:
    """The store acknowledges an upload but holds other bytes (a flaky NFS server, a broken gateway)."""
    from qwen_fetch.ops.sync import SyncOptions, SyncResult, run_sync
    from qwen_fetch.store.bucket import manifest_key, ref_key

    class LossyStore(DirStore):
        def put_file(self, key: str, local: Path, *, sha256: str) -> None:
            super().put_file(key, local, sha256=sha256)
            if key.endswith(victim):
                p = self.path(key)
                p.write_bytes(p.read_bytes()[:-1] + b"?")

    cache, lock_path, lock = pulled
    pin = lock.pins(QWEN3_VL_8B)[0]
    victim = next(f for f in pin.files if f.path.endswith("00003-of-00004.safetensors")).sha256
    store = LossyStore(tmp_path / "lossy")
    opts = SyncOptions(model=QWEN3_VL_8B, dest=str(store.root), cache_dir=cache, lock_path=lock_path)
    with pytest.raises(IntegrityError) as exc:
        run_sync(opts, store)
    assert "did not verify after upload" in exc.value.message and "00003-of-00004" in " ".join(exc.value.context)
    assert store.get_bytes(manifest_key(QWEN3_VL_8B, pin.commit)) is None  # never advertised
    assert store.get_bytes(ref_key(QWEN3_VL_8B, "main")) is None
    # The next run replaces only the bad blob (its size is right, so it takes --recheck to notice).
    fixed = run_sync(SyncOptions(model=QWEN3_VL_8B, dest=str(store.root), cache_dir=cache, lock_path=lock_path,
                                 recheck=True), DirStore(store.root))
    assert isinstance(fixed, SyncResult) and [b.sha256 for b in fixed.plan.upload] == [victim]


def test_dir_store_lists_blobs_but_not_temporaries_or_links(tmp_path: Path) -> None:
    """What a large pin's survey sees in a directory store: finished blobs only."""
    store = DirStore(tmp_path / "s")
    store.put_bytes("blobs/" + "a" * 64, b"abc")
    store.put_bytes("blobs/" + "b" * 64, b"")
    (tmp_path / "s" / "blobs" / f".{'c' * 64}.1234.tmp").write_bytes(b"half")  # an upload in flight
    (tmp_path / "s" / "blobs" / ("d" * 64)).symlink_to(tmp_path / "s" / "blobs" / ("a" * 64))
    listed = store.list_prefix("blobs/")
    assert {k: v.size for k, v in listed.items()} == {"a" * 64: 3, "b" * 64: 0}
    assert DirStore(tmp_path / "empty").list_prefix("blobs/") == {}
