"""A pull's bookkeeping per file stays constant as the file count grows (no timing: counted calls).

Each repo here is pulled in-process with the real engine against the loopback hub, and the
functions whose repetition made a pull of many files quadratic are wrapped and counted:
directory listings of the blobs folder, lock acquisitions, locks held at once.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from qwen_fetch.api import run_pull
from qwen_fetch.net import engine, partstate
from qwen_fetch.net.filetask import FileTask, Ledger, Phase
from qwen_fetch.net.jobs import FetchJob
from qwen_fetch.net.partstate import Leftovers, blob_temporaries, block_sum, state_path
from qwen_fetch.store import flocks
from tests.support.repo import RepoStore

MODEL = "Org/many"


def _repo(store: RepoStore, n: int, *, plain: bool = True) -> str:
    """``n`` small files: LFS-typed ones (the engine fetches them) and plain git files (fetched and hashed
    beside it on a fresh pull, then put in place one by one)."""
    return store.add_commit(MODEL, {f"d/f{i:04d}.{'bin' if i % 2 or not plain else 'txt'}": f"file {i} ".encode() * (8 + i % 5)
                                    for i in range(n)})


class Counts:
    """Wraps the listing, the per-file glob and the lock functions; counts calls and locks held at once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.listings = 0
        self.globs = 0
        self.acquired = 0
        self.held = 0
        self.most_held = 0
        self._lock = threading.Lock()
        real_init, real_glob = Leftovers.__init__, partstate.blob_temporaries
        real_try, real_release = flocks.LockFolder.try_acquire, flocks.HeldLock.release

        def init(obj: Leftovers, folder: Path) -> None:
            self.listings += 1
            real_init(obj, folder)

        def glob(partial: Path) -> list[Path]:
            self.globs += 1
            return real_glob(partial)

        def try_acquire(obj: flocks.LockFolder, name: str) -> flocks.HeldLock | None:
            held = real_try(obj, name)
            if held is not None:
                with self._lock:
                    self.acquired += 1
                    self.held += 1
                    self.most_held = max(self.most_held, self.held)
            return held

        def release(obj: flocks.HeldLock) -> None:
            was = obj._fd >= 0 or obj._fallback is not None
            real_release(obj)
            if was:
                with self._lock:
                    self.held -= 1

        monkeypatch.setattr(Leftovers, "__init__", init)
        monkeypatch.setattr(partstate, "blob_temporaries", glob)
        monkeypatch.setattr(flocks.LockFolder, "try_acquire", try_acquire)
        monkeypatch.setattr(flocks.HeldLock, "release", release)


def _pull(tmp_path: Path, mirrors: Path, connections: int = 4) -> None:
    result = run_pull(MODEL, config=mirrors, cache_dir=tmp_path / "cache", lock=tmp_path / "q.lock",
                      connections=connections)
    assert result.files


@pytest.mark.parametrize("n", [3, 40])
def test_a_pull_lists_the_blobs_folder_a_fixed_number_of_times_and_locks_each_file_twice(
        store: RepoStore, hub, mirrors: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int) -> None:  # type: ignore[no-untyped-def]
    """Listing the folder once per file (to find a killed run's temporaries) made a pull quadratic."""
    _repo(store, n)
    counts = Counts(monkeypatch)
    _pull(tmp_path, mirrors)
    assert counts.globs == 0
    assert counts.listings <= 3  # the engine's pass, the plain files', the snapshot's: whatever the file count
    assert counts.acquired == 2 * n + 1  # fetch, link; and the snapshot lock once
    assert counts.held == 0


def test_the_engine_holds_a_bounded_window_of_files_open(store: RepoStore, hub, mirrors: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file was locked and opened up front: a repo of more files than the open-file limit failed
    with 'Too many open files'.  Now at most ``open_limit`` files are open at once."""
    n = 3 * engine.open_limit(2)
    _repo(store, n, plain=False)  # all through the engine (plain files are put in place by their own threads)
    counts = Counts(monkeypatch)
    _pull(tmp_path, mirrors, connections=2)
    assert 1 <= counts.most_held <= engine.open_limit(2) + 1  # the window, plus the snapshot lock at the end
    assert counts.acquired == 2 * n + 1


def test_the_window_fits_the_open_file_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda what: (1024, 1024))
    assert engine.open_limit(48) == 96
    assert engine.open_limit(256) * engine.FDS_PER_FILE + 256 + 64 <= 1024
    monkeypatch.setattr(resource, "getrlimit", lambda what: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert engine.open_limit(256) == 512


NAMES = ["{b}.incomplete", "{b}.incomplete.parts", ".{b}.incomplete.parts.0badf00d.tmp", ".{b}.1234abcd.tmp",
         ".{b}..tmp", ".{b}.tmp", "{b}", ".{b}", ".{b}.x.tmp.y", ".{b}x.1.tmp", ".{c}.1.tmp", "{c}.incomplete",
         ".someone-elses.tmp", ".a.b.c.tmp"]


def test_one_listing_finds_what_the_per_file_glob_found(tmp_path: Path) -> None:
    b, c = "ab" * 32, "cd" * 32
    for name in NAMES:
        (tmp_path / name.format(b=b, c=c)).write_text("x")
    listed = Leftovers(tmp_path)
    for blob in (b, c, "ef" * 32):
        partial = tmp_path / f"{blob}.incomplete"
        want = set(blob_temporaries(partial)) | {p for p in (partial, state_path(partial)) if p.exists()}
        assert set(listed.of(partial)) == want
        assert listed.any_for(blob) == bool(want)
    assert {p.name for p in listed.of(tmp_path / f"{b}.incomplete")} == {
        f"{b}.incomplete", f"{b}.incomplete.parts", f".{b}.incomplete.parts.0badf00d.tmp", f".{b}.1234abcd.tmp",
        f".{b}..tmp"}


def test_clearing_from_the_listing_keeps_a_resumable_partial_and_removes_a_finished_ones(tmp_path: Path) -> None:
    b = "ab" * 32
    for name in NAMES:
        (tmp_path / name.format(b=b, c="cd" * 32)).write_text("x")
    partial = tmp_path / f"{b}.incomplete"
    partstate.clear_leftovers(partial, finished=False, listed=Leftovers(tmp_path))
    assert partial.exists() and state_path(partial).exists() and not blob_temporaries(partial)
    partstate.clear_leftovers(partial, finished=True, listed=Leftovers(tmp_path))
    assert not partial.exists() and not state_path(partial).exists()
    assert (tmp_path / ".someone-elses.tmp").exists() and (tmp_path / f"{'cd' * 32}.incomplete").exists()


def test_the_ledger_counts_the_missing_bytes_of_active_files(tmp_path: Path) -> None:
    """The disk-space check's need, kept as blocks land instead of summed over every file per file."""
    from qwen_fetch.core.paths import safe_relpath

    ledger = Ledger()
    cond = threading.Condition()
    tasks = []
    for i, size in enumerate((25, 40)):
        data = os.urandom(size)
        job = FetchJob(path=safe_relpath(f"f{i}"), size=size, sha256=hashlib.sha256(data).hexdigest(),
                       dest=tmp_path / f"f{i}", partial=tmp_path / f"f{i}.incomplete", lock=tmp_path / f"f{i}.lock",
                       locations=())
        t = FileTask(job, i, 10, ledger)
        t.open_partial()
        tasks.append((t, data))
    (a, da), (b, db) = tasks
    with cond:
        a.phase = Phase.ACTIVE
    assert ledger.missing == 25
    with cond:
        b.phase = Phase.ACTIVE
    assert ledger.missing == 65
    assert a.write_block(a.gen, 2, memoryview(da)[20:], block_sum(da[20:]), cond)
    assert b.write_block(b.gen, 0, memoryview(db)[:10], block_sum(db[:10]), cond)
    assert b.write_block(b.gen, 0, memoryview(db)[:10], block_sum(db[:10]), cond)  # twice: counted once
    assert (a.missing, b.missing, ledger.missing) == (a.missing_bytes(), b.missing_bytes(), 20 + 30)
    with cond:
        a.gen += 1
        assert a.forget() == 5
        assert ledger.missing == 25 + 30
        b.phase = Phase.DONE
    assert ledger.missing == 25 and ledger.take_finished() == [b] and ledger.finished == []
    for t, _ in tasks:
        t.release_files()


def test_a_lock_file_held_elsewhere_is_busy_and_a_planted_link_is_replaced(tmp_path: Path) -> None:
    import filelock

    folder = flocks.LockFolder(tmp_path / "locks", tmp_path)
    other = filelock.FileLock(str(folder.path("x.lock")))
    folder.path("x.lock").parent.mkdir(parents=True, exist_ok=True)
    other.acquire()
    assert folder.try_acquire("x.lock") is None  # the same flock filelock (gc, huggingface_hub) takes
    other.release()
    held = folder.try_acquire("x.lock")
    assert held is not None
    with pytest.raises(filelock.Timeout):
        filelock.FileLock(str(folder.path("x.lock"))).acquire(timeout=0)
    held.release()
    target = tmp_path / "target"
    target.write_text("keep")
    os.symlink(target, folder.path("y.lock"))
    held = folder.try_acquire("y.lock")
    assert held is not None and not folder.path("y.lock").is_symlink() and target.read_text() == "keep"
    held.release()
