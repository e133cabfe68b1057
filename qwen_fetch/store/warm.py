"""The warm path: which pinned files already in place can be used, hashing only what a stamp cannot vouch for.

``pull`` asks this first, before any source is built: when every pinned file is
present and verified it needs no network at all.  ``qwen-fetch path`` and the
Python :func:`qwen_fetch.ops.snapshot.path` ask the same question.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from qwen_fetch.core.digests import Digest
from qwen_fetch.core.manifest import PinnedFile
from qwen_fetch.store.placement import Layout
from qwen_fetch.store.stamps import FileStat, StampStore, file_stat, folder_stamps, path_key, repo_stamps, take, vouches


def stamp_store(layout: Layout) -> StampStore:
    """Where the stamps of this layout's files live (see :class:`qwen_fetch.store.stamps.StampStore`)."""
    if layout.meta is not None:
        return folder_stamps(layout.meta)
    return repo_stamps(layout.repo.repo_dir)


def stamp_key(layout: Layout, f: PinnedFile) -> str:
    """The blob name in the cache; in a folder, a digest of the path (one file per path)."""
    return f.blob_name if layout.local_dir is None else path_key(f.path)


@dataclass(frozen=True)
class CacheCheck:
    """Each pinned file, by what was found in its place."""

    trusted: tuple[PinnedFile, ...]  # a stamp vouched for it: not read
    rehashed: tuple[PinnedFile, ...]  # hashed now and matched (stamped)
    bad: tuple[PinnedFile, ...]  # present, but not the pinned bytes
    missing: tuple[PinnedFile, ...]

    @property
    def good(self) -> frozenset[Digest]:
        """Digests of the files that are in place and verified."""
        return frozenset(f.digest for f in self.trusted + self.rehashed)

    @property
    def complete(self) -> bool:
        return not (self.bad or self.missing)


def check_in_place(layout: Layout, files: Sequence[PinnedFile], *, rehash: bool = False) -> CacheCheck:
    """Sort ``files`` by the state of their destination, trusting stamps unless ``rehash``.

    A file a stamp does not vouch for is hashed, and stamped if it matches.  A destination
    that is not a regular file (a link, a device) is bad, and never followed.
    """
    from qwen_fetch.store.placement import verify_many

    store = stamp_store(layout)
    trusted: list[PinnedFile] = []
    bad: list[PinnedFile] = []
    to_hash: list[tuple[PinnedFile, FileStat, int]] = []
    missing: list[PinnedFile] = []
    for f in files:
        dest = layout.dest(f)
        seen_ns = time.time_ns()  # before the stat: a stamp must never look older than what it saw
        st = file_stat(dest)
        if st is None:
            # Not a regular file: absent, or a link or device somebody else put there (never followed).
            (bad if os.path.lexists(dest) else missing).append(f)
        elif not rehash and vouches(store.read(stamp_key(layout, f)), st, f.sha256, f.size):
            trusted.append(f)
        else:
            to_hash.append((f, st, seen_ns))
    ok = verify_many([(layout.dest(f), f) for f, _, _ in to_hash])
    rehashed: list[PinnedFile] = []
    for (f, st, seen_ns), good in zip(to_hash, ok):
        if good:
            rehashed.append(f)
            store.write(stamp_key(layout, f), take(st, f.sha256, now_ns=seen_ns))
        else:
            bad.append(f)
    return CacheCheck(tuple(trusted), tuple(rehashed), tuple(bad), tuple(missing))


def stamp_promoted(layout: Layout, promoted: Sequence[tuple[PinnedFile, os.stat_result]]) -> None:
    """Stamp files this run verified while downloading, given each one's ``fstat`` right after its rename.

    The stamp is recorded only if the file is still in that state now: a change since the
    rename moved its ``ctime``.  A stamp taken within :data:`~qwen_fetch.store.stamps.RACY_NS` of
    the rename is racy, and the next pull re-hashes that file once.
    """
    store = stamp_store(layout)
    for f, baseline in promoted:
        seen_ns = time.time_ns()
        st = file_stat(layout.dest(f))
        if st is not None and st == FileStat.of(baseline) and st.size == f.size:
            store.write(stamp_key(layout, f), take(st, f.sha256, now_ns=seen_ns))


def already_linked(layout: Layout, files: Sequence[PinnedFile], commit: str, revision: str) -> bool:
    """Is the snapshot exposed as :meth:`Layout.finish` would leave it (every link right, the ref naming
    ``commit``)?  Then a pull served from the cache writes nothing and takes no lock."""
    if layout.local_dir is not None:
        return all(os.path.lexists(layout.dest(f)) for f in files)
    repo = layout.repo
    for f in files:
        link = repo.snapshot_file(commit, f.path)
        try:
            if os.readlink(link) != os.path.relpath(repo.blob_path(f.blob_name), link.parent):
                return False
        except OSError:
            return False
    return revision == commit or (".." not in revision and repo.read_ref(revision) == commit)
