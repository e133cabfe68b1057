"""Where verified bytes go: the HF cache (blobs + snapshot links) or a plain ``--local-dir`` folder."""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import threading
from collections.abc import Sequence
from pathlib import Path

from qwen_fetch.core.digests import root_digest
from qwen_fetch.core.errors import IntegrityError, Ref
from qwen_fetch.core.manifest import PinnedFile
from qwen_fetch.net.partstate import Leftovers, clear_leftovers
from qwen_fetch.net.plainfile import PlainSink
from qwen_fetch.store.flocks import LockFolder
from qwen_fetch.store.hasher import hash_file, hash_files
from qwen_fetch.store.hfcache import RepoCache
from qwen_fetch.store.safefs import create_new, is_regular, join_safe, make_dirs, remove_file


class Layout:
    """Where verified bytes go: the HF cache (blobs + snapshot links) or a plain folder."""

    def __init__(self, cache_dir: Path, model_id: str, local_dir: Path | None) -> None:
        self.repo = RepoCache(cache_dir, model_id)
        self.local_dir = local_dir
        self.meta = local_dir / ".cache" / "qwen-fetch" if local_dir is not None else None
        # Every per-blob lock (and the snapshot lock) lives in this one folder, checked once.
        self.locks = LockFolder(self.repo.locks_dir if self.meta is None else self.meta / "locks", self.root)
        self._listed: Leftovers | None = None  # ``tmp_dir`` as listed for ``place_plain`` (once per layout)
        self._listing = threading.Lock()

    @property
    def root(self) -> Path:
        """The folder below which every directory must be real (see :mod:`qwen_fetch.store.safefs`)."""
        return self.local_dir if self.local_dir is not None else self.repo.cache_dir

    def ensure(self) -> None:
        if self.local_dir is None:
            self.repo.ensure_dirs()
        else:
            assert self.meta is not None
            make_dirs(self.local_dir, self.meta / "locks")

    def ensure_parent(self, f: PinnedFile) -> Path:
        """Create ``f``'s destination folder (real directories only); returns the destination."""
        dest = self.dest(f)
        make_dirs(self.root, dest.parent)
        return dest

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
        return self.locks.path(f"{f.sha256}.lock")  # repo.lock_path, or .cache/qwen-fetch/locks of a --local-dir

    @property
    def tmp_dir(self) -> Path:
        """Where partial files and temporaries go: ``blobs/``, or ``.cache/qwen-fetch`` of a --local-dir
        (never the user's tree); on the file system of the destinations, so a rename promotes."""
        return self.repo.blobs_dir if self.local_dir is None else self.meta  # type: ignore[return-value]

    def place_plain(self, f: PinnedFile, sink: PlainSink) -> bool:
        """Give a verified plain file its place (``sink`` holds exactly ``f``'s bytes); False when an intact
        copy is there already.  Under the blob's lock: no live writer then owns a temporary of this blob, so
        one a killed pull left (``.<sha256>.<random>.tmp``) is removed."""
        dest = self.ensure_parent(f)
        with self._listing:
            if self._listed is None:
                self._listed = Leftovers(self.tmp_dir)
        with self.locks.hold(self.lock(f).name):
            clear_leftovers(self.partial(f), finished=False, listed=self._listed)
            if is_regular(dest) and dest.stat().st_size == f.size and f.matches((h := hash_file(dest)).size, h.sha256):
                return False
            sink.promote(dest, self.tmp_dir)
        return True

    def clear_stale(self, files: Sequence[PinnedFile]) -> None:
        """Remove what killed runs left beside files that are complete and verified (partials, their
        states, temporaries), each under its file's lock.  One directory listing decides whether there
        is anything to do, so a pull answered from the cache stays cheap when there is not."""
        listed = Leftovers(self.tmp_dir)
        done: set[str] = set()
        for f in files:
            if listed.any_for(f.sha256) and f.sha256 not in done:
                done.add(f.sha256)
                with self.locks.hold(self.lock(f).name):
                    clear_leftovers(self.partial(f), finished=True, listed=listed)

    def finish(self, files: Sequence[PinnedFile], commit: str, revision: str) -> Path:
        """Expose verified content: snapshot links + ref (cache), or copies for repeated content (folder)."""
        if self.local_dir is not None:
            assert self.meta is not None
            # Same content at two paths: it was fetched (and verified) once, into one of them.
            by_sha: dict[str, Path] = {}
            for f in files:
                d = self.dest(f)
                if is_regular(d):
                    by_sha.setdefault(f.sha256, d)
            for f in files:
                d = self.dest(f)
                if not is_regular(d):
                    self.ensure_parent(f)
                    copy_into(by_sha[f.sha256], d, tmp_dir=self.meta)
            listed = Leftovers(self.meta)  # listed once: one pass over the files, not one per file
            for sha in sorted(by_sha):
                with self.locks.hold(f"{sha}.lock"):
                    clear_leftovers(self.meta / f"{sha}.incomplete", finished=True, listed=listed)
            return self.local_dir
        # The whole snapshot is linked, then its ref written, under the snapshot lock: `gc` never moves
        # a snapshot whose lock is held, and re-reads the refs under it, so a half-made revision is
        # never taken for an abandoned one.  The ref comes last: a reader (or a crash) never sees a
        # ref naming an incomplete snapshot.
        listed = Leftovers(self.repo.blobs_dir)  # listed once: one pass over the files, not one per file
        with self.locks.hold(self.repo.snapshot_lock_path(commit).name):
            for f in files:
                # Link under the blob's lock: `gc` deletes a blob only while holding that lock and
                # after re-reading the links, so this snapshot can never be left dangling.
                with self.locks.hold(self.lock(f).name):
                    # What a run killed after promotion left.
                    clear_leftovers(self.partial(f), finished=True, listed=listed)
                    if not is_regular(self.repo.blob_path(f.sha256)):
                        raise IntegrityError(f"{f.path}: its verified blob disappeared before it was linked",
                                             hint="a concurrent `qwen-fetch gc` or a manual deletion removed it; "
                                                  "rerun the pull", reference=Ref.BLOB_VANISHED)
                    self.repo.link_snapshot(commit, f.path, f.sha256)
            if not all(os.path.exists(self.repo.snapshot_file(commit, f.path)) for f in files):
                raise IntegrityError(f"snapshot {commit[:12]} changed while it was being linked",
                                     hint="something removed files from it concurrently; rerun the pull "
                                          "(the blobs are kept)", reference=Ref.SNAPSHOT_VANISHED)
            if revision != commit:
                self.repo.write_ref(revision, commit)
        return self.repo.snapshot_dir(commit)


def verify_many(pairs: Sequence[tuple[Path, PinnedFile]]) -> list[bool]:
    """Whether each path holds exactly its pinned bytes, hashed from the page cache as ``verify`` does.

    One parallel hasher run for all of them (a big file's sha256 moves between threads, so the
    threads finish together; a file whose pin has a chunk root is checked by its chunks, on every
    thread); a file of the wrong size is not read at all.
    """
    sized: list[Path] = []
    rooted: set[Path] = set()
    for path, f in pairs:
        try:
            st = path.lstat()  # a link is never taken for the file: its target may change under us
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size == f.size:
            sized.append(path)
            if f.root is not None:
                rooted.add(path)
    hashes = hash_files(sized, chunked=rooted)
    out = []
    for path, f in pairs:
        r = hashes.get(path)
        observed = root_digest(r.root) if r is not None and f.root is not None and r.root is not None else None
        out.append(r is not None and r.error is None and f.matches(r.size, observed or r.sha256))
    return out


def copy_into(src: Path, dest: Path, *, tmp_dir: Path) -> None:
    """Copy the verified file ``src`` to ``dest`` atomically (a temporary in ``tmp_dir``, fsync, rename)."""
    tmp = tmp_dir / f".{dest.name}.{secrets.token_hex(4)}.tmp"
    try:
        with open(src, "rb") as fi, os.fdopen(create_new(tmp), "wb") as fo:
            shutil.copyfileobj(fi, fo, 1 << 20)
            fo.flush()
            os.fsync(fo.fileno())
        os.replace(tmp, dest)
    except BaseException:
        remove_file(tmp)
        raise


def quarantine(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
