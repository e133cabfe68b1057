"""Fault campaign, disk full: the cache on a small tmpfs (or a loop-mounted ext4 image).

Mounting needs root (CAP_SYS_ADMIN); where it is not allowed the tests skip
with the reason.  A full disk must give exit 4 with a message that names the
space still needed, keep partial data for resume, never leave a wrong blob or
a snapshot, and a rerun with space must end equal to a clean pull.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_fetch.store.hasher import hash_file
from qwen_fetch.store.hfcache import RepoCache
from tests.conftest import write_mirrors
from tests.support.faultkit import (
    cache_digest,
    mount_small_fs,
    partial_size,
    qf_argv,
    resize_small_fs,
    unmount,
)
from tests.support.fixtures import QWEN3_VL_8B, add_sharded_repo
from tests.support.hub import HubServer
from tests.support.repo import RepoStore

NEEDED = re.compile(r"\d+(\.\d+)? [kMGT]?B still needed")


@pytest.fixture
def small_fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    mnt = tmp_path / "small"
    try:
        how = mount_small_fs(mnt, getattr(request, "param", 8))
    except OSError as exc:
        pytest.skip(str(exc))
    try:
        yield mnt, how
    finally:
        unmount(mnt)


def _pull(cli, mirrors: Path, cache: Path, *extra: str):  # type: ignore[no-untyped-def]
    return cli("pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", str(cache), "--no-smoke", "--json",
               *extra)


def _clean_digest(cli, store: RepoStore, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with HubServer(store) as hub:
        cfg = write_mirrors(tmp_path / "clean.yaml", ("local", hub.url))
        r = cli("pull", QWEN3_VL_8B, "--config", str(cfg), "--cache-dir", str(tmp_path / "clean"),
                "--lock", str(tmp_path / "clean.lock"), "--no-smoke")
        assert r.exit_code == 0, r.stderr
    return cache_digest(tmp_path / "clean")


def _assert_nothing_wrong(cache: Path, commit: str) -> None:
    repo = RepoCache(cache, QWEN3_VL_8B)
    assert not repo.snapshot_dir(commit).exists() or not any(repo.snapshot_dir(commit).iterdir())
    if repo.blobs_dir.exists():
        for b in repo.blobs_dir.iterdir():
            assert not b.name.endswith(".tmp"), f"stray temporary file {b.name}"
            if ".incomplete" not in b.name:
                assert hash_file(b).sha256 == b.name, f"blob {b.name} does not hold its bytes"


def test_cache_too_small_names_the_space_then_resumes(cli, store: RepoStore, tmp_path: Path,
                                                      small_fs: tuple[Path, str]) -> None:  # type: ignore[no-untyped-def]
    mnt, how = small_fs
    commit = add_sharded_repo(store, QWEN3_VL_8B, shard_total=12 << 20)
    with HubServer(store) as hub:
        mirrors = write_mirrors(tmp_path / "mirrors.yaml", ("local", hub.url))
        r = _pull(cli, mirrors, mnt / "cache")
        assert r.exit_code == 4, r.stderr
        assert r.json()["error"] == "disk-full" and NEEDED.search(r.json()["message"]), r.stdout
        _assert_nothing_wrong(mnt / "cache", commit)
        if not resize_small_fs(mnt, 64):
            pytest.skip(f"cannot grow the {how} in place")
        r = _pull(cli, mirrors, mnt / "cache")
        assert r.exit_code == 0, r.stderr
    assert cache_digest(mnt / "cache") == _clean_digest(cli, store, tmp_path)


@pytest.mark.parametrize("small_fs", [24], indirect=True)
def test_disk_fills_up_mid_download_then_resumes(cli, store: RepoStore, tmp_path: Path,
                                                 small_fs: tuple[Path, str]) -> None:  # type: ignore[no-untyped-def]
    """Another process eats the free space while the shards are arriving."""
    mnt, _how = small_fs
    commit = add_sharded_repo(store, QWEN3_VL_8B, shard_total=12 << 20)
    total = sum(f.size for f in store.files(QWEN3_VL_8B, commit))
    cache = mnt / "cache"
    with HubServer(store) as hub:
        mirrors = write_mirrors(tmp_path / "mirrors.yaml", ("local", hub.url))
        assert cli("lock", QWEN3_VL_8B, "--config", str(mirrors)).exit_code == 0
        hub.faults.rate = 600_000
        proc = subprocess.Popen(qf_argv("pull", QWEN3_VL_8B, "--config", str(mirrors), "--cache-dir", str(cache),
                                        "--no-smoke", "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            deadline = time.monotonic() + 60
            # blocks are written whole (1 MiB): wait until one has landed in an unfinished file
            while not any(partial_size(p) >= 1 << 20 for p in cache.glob("models--*/blobs/*.incomplete")):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the pull never wrote a partial"
                time.sleep(0.02)
            with open(mnt / "filler", "wb", buffering=0) as f:  # fill every free byte
                try:
                    while True:
                        f.write(b"\0" * 65536)
                except OSError:
                    pass
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 4, out + err
        assert NEEDED.search(json.loads(out)["message"]), out  # see test_state_file_enospc_does_not_hide_the_disk_full_error
        partials = [p for p in cache.glob("models--*/blobs/*.incomplete") if p.stat().st_size > 0]
        assert partials, "partial data is kept for the resume"
        _assert_nothing_wrong(cache, commit)
        (mnt / "filler").unlink()
        hub.faults.rate = None
        hub.reset_stats()
        r = _pull(cli, mirrors, cache)
        assert r.exit_code == 0, r.stderr
        assert hub.total_bytes() < total  # resumed, not started over
    assert cache_digest(cache) == _clean_digest(cli, store, tmp_path)
    assert cli("verify", QWEN3_VL_8B, "--cache-dir", str(cache)).exit_code == 0


def test_no_room_even_for_the_small_files(cli, store: RepoStore, tmp_path: Path,
                                          small_fs: tuple[Path, str]) -> None:  # type: ignore[no-untyped-def]
    """Unpinned pulls write the small git files before the engine runs: the space check must cover them."""
    mnt, _how = small_fs
    commit = add_sharded_repo(store, QWEN3_VL_8B, shard_total=1 << 20)
    free = shutil.disk_usage(mnt).free
    with open(mnt / "filler", "wb") as f:
        f.truncate(0)
        f.write(b"\0" * (free - 24 * 1024))
        f.flush()
        os.fsync(f.fileno())
    with HubServer(store) as hub:
        mirrors = write_mirrors(tmp_path / "mirrors.yaml", ("local", hub.url))
        r = _pull(cli, mirrors, mnt / "cache")
        assert r.exit_code == 4, r.stdout
        assert NEEDED.search(r.json()["message"]), r.stdout
        _assert_nothing_wrong(mnt / "cache", commit)
        (mnt / "filler").unlink()
        r = _pull(cli, mirrors, mnt / "cache")
        assert r.exit_code == 0, r.stderr


def test_state_file_enospc_does_not_hide_the_disk_full_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the disk is full, the partial's writes *and* the .parts state's rewrite fail with ENOSPC: the
    error must still be the engine's DiskFullError naming the space needed (the campaign's tmpfs runs
    once got a bare 'disk full while writing a file' from the cleanup's state save)."""
    import errno

    from qwen_fetch.core.errors import DiskFullError
    from qwen_fetch.core.progress import NullProgress
    from qwen_fetch.net import engine, filetask
    from qwen_fetch.net.engine import fetch_all
    from tests.test_engine_support import FAST, make_jobs, make_repo

    store, commit, data = make_repo(tmp_path / "repo", {"a.safetensors": 3_000_000, "b.safetensors": 2_000_000})
    full = [False]
    written = [0]
    real_pwrite, real_save = filetask.os.pwrite, filetask.save_state

    def pwrite(fd: int, buf: object, offset: int) -> int:
        if written[0] > 1_000_000:
            full[0] = True
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real_pwrite(fd, buf, offset)  # type: ignore[arg-type]
        written[0] += n
        return n

    def save_state(path: Path, state: object) -> int:
        if full[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(path, state)  # type: ignore[arg-type]

    monkeypatch.setattr(filetask.os, "pwrite", pwrite)
    monkeypatch.setattr(filetask, "save_state", save_state)
    monkeypatch.setattr(engine, "COMPACT_AFTER", 0)  # every cleanup save really writes, as when a task is dirty
    with HubServer(store) as hub:
        jobs = make_jobs(tmp_path / "cache", commit, data, [("hub", hub.url)])
        with pytest.raises(DiskFullError) as info:
            fetch_all(jobs, FAST, NullProgress())
    assert NEEDED.search(info.value.message), info.value.message
    for j in jobs:
        assert not j.dest.exists() or j.dest.read_bytes() == data[j.path]


def test_state_save_on_a_full_disk_leaves_no_temporary(small_fs: tuple[Path, str]) -> None:
    import errno

    from qwen_fetch.net.partstate import PartState, save_state

    mnt, _how = small_fs
    with open(mnt / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    state = PartState(size=10 << 20, sha256="a" * 64, block_size=1 << 20, sums=(None,) * 10)
    with pytest.raises(OSError) as info:
        save_state(mnt / ("a" * 64 + ".incomplete.parts"), state)
    assert info.value.errno == errno.ENOSPC
    assert sorted(p.name for p in mnt.iterdir()) == ["filler"]
