"""Where verified bytes go: the HF cache (blobs + snapshot links) or a plain ``--local-dir`` folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from qwen_fetch.cache import RepoCache
from qwen_fetch.errors import IntegrityError
from qwen_fetch.fsutil import atomic_write_bytes
from qwen_fetch.hasher import hash_files
from qwen_fetch.manifest import PinnedFile
from qwen_fetch.paths import join_safe


class Layout:
    """Where verified bytes go: the HF cache (blobs + snapshot links) or a plain folder."""

    def __init__(self, cache_dir: Path, model_id: str, local_dir: Path | None) -> None:
        self.repo = RepoCache(cache_dir, model_id)
        self.local_dir = local_dir
        self.meta = local_dir / ".cache" / "qwen-fetch" if local_dir is not None else None

    def ensure(self) -> None:
        if self.local_dir is None:
            self.repo.ensure_dirs()
        else:
            assert self.meta is not None
            (self.meta / "locks").mkdir(parents=True, exist_ok=True)

    def dest(self, f: PinnedFile) -> Path:
        if self.local_dir is None:
            return self.repo.blob_path(f.sha256)
        return join_safe(self.local_dir, f.path)

    def partial(self, f: PinnedFile) -> Path:
        if self.local_dir is None:
            return self.repo.partial_path(f.sha256)
        assert self.meta is not None
        return self.meta / f"{f.sha256}.incomplete"

    def lock(self, f: PinnedFile) -> Path:
        if self.local_dir is None:
            return self.repo.lock_path(f.sha256)
        assert self.meta is not None
        return self.meta / "locks" / f"{f.sha256}.lock"

    def write_verified(self, f: PinnedFile, data: bytes) -> None:
        """Write bytes already checked against the pin (small git files hashed in memory)."""
        dest = self.dest(f)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # The temporary goes where partials go, never into the user's --local-dir tree.
        tmp_dir = self.partial(f).parent
        if self.local_dir is not None:
            atomic_write_bytes(dest, data, tmp_dir=tmp_dir)
            return
        # In the cache, under the blob's lock: a pull killed while writing this blob left its temporary
        # (``.<sha256>.<random>.tmp``) in blobs/, and with the lock held no live writer owns one.
        from filelock import FileLock  # imported when needed: a pull answered from the cache may take no lock

        self.lock(f).parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.lock(f))):
            for stale in tmp_dir.glob(f".{f.sha256}.*.tmp"):
                stale.unlink(missing_ok=True)
            atomic_write_bytes(dest, data, tmp_dir=tmp_dir)

    def finish(self, files: Sequence[PinnedFile], commit: str, revision: str) -> Path:
        """Expose verified content: snapshot links + ref (cache), or copies for repeated content (folder)."""
        from filelock import FileLock

        if self.local_dir is not None:
            assert self.meta is not None
            # Same content at two paths: the engine fetched it once.
            by_sha: dict[str, Path] = {}
            for f in files:
                d = self.dest(f)
                if d.exists():
                    by_sha.setdefault(f.sha256, d)
            for f in files:
                d = self.dest(f)
                if not d.exists():
                    d.parent.mkdir(parents=True, exist_ok=True)
                    tmp = self.meta / f"{f.sha256}.copy"
                    shutil.copyfile(by_sha[f.sha256], tmp)
                    os.replace(tmp, d)
            return self.local_dir
        # The whole snapshot is linked, then its ref written, under the snapshot lock: `gc` never moves
        # a snapshot whose lock is held, and re-reads the refs under it, so a half-made revision is
        # never taken for an abandoned one.  The ref comes last: a reader (or a crash) never sees a
        # ref naming an incomplete snapshot.
        self.repo.locks_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.repo.snapshot_lock_path(commit))):
            for f in files:
                # Link under the blob's lock: `gc` deletes a blob only while holding that lock and
                # after re-reading the links, so this snapshot can never be left dangling.
                with FileLock(str(self.lock(f))):
                    if not self.repo.blob_path(f.sha256).is_file():
                        raise IntegrityError(f"{f.path}: its verified blob disappeared before it was linked",
                                             hint="a concurrent `qwen-fetch gc` or a manual deletion removed it; "
                                                  "rerun the pull", reference="blob-vanished")
                    self.repo.link_snapshot(commit, f.path, f.sha256)
            if not all(os.path.exists(self.repo.snapshot_file(commit, f.path)) for f in files):
                raise IntegrityError(f"snapshot {commit[:12]} changed while it was being linked",
                                     hint="something removed files from it concurrently; rerun the pull "
                                          "(the blobs are kept)", reference="snapshot-vanished")
            if revision != commit:
                self.repo.write_ref(revision, commit)
        return self.repo.snapshot_dir(commit)


def verify_many(pairs: Sequence[tuple[Path, PinnedFile]]) -> list[bool]:
    """Whether each path holds exactly its pinned bytes, hashed from the page cache as ``verify`` does.

    One parallel hasher run for all of them (a big file's sha256 moves between threads, so the
    threads finish together); a file of the wrong size is not read at all.
    """
    sized: list[Path] = []
    for path, f in pairs:
        try:
            if path.stat().st_size == f.size:
                sized.append(path)
        except OSError:
            pass
    hashes = hash_files(sized)
    out = []
    for path, f in pairs:
        r = hashes.get(path)
        out.append(r is not None and r.error is None and r.size == f.size and r.sha256 == f.sha256)
    return out


def quarantine(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
