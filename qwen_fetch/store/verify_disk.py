"""The disk side of ``verify``: observe snapshots and folders, hash, diff.

Reads only.  Every target's files are hashed in one parallel batch (so ``--all``
keeps every core busy across snapshots), then each target is diffed by the pure
:func:`qwen_fetch.core.verify.compare`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from qwen_fetch.core.manifest import Pin, PinnedFile
from qwen_fetch.core.progress import ProgressSink
from qwen_fetch.core.verify import (
    BLOB_NOT_A_FILE,
    BadLink,
    BadRef,
    Observed,
    Partial,
    TargetReport,
    VerifyReport,
    check_link,
    check_refs,
    classify_partial,
    compare,
    matches,
)
from qwen_fetch.store.hasher import HashResult, hash_files
from qwen_fetch.store.hfcache import INCOMPLETE, RepoCache, repo_id_from_folder
from qwen_fetch.store.safefs import is_regular, join_safe
from qwen_fetch.store.stamps import FileStat, StampStore, file_stat, folder_stamps, path_key, repo_stamps, take

# Folders a --local-dir download may hold that are not part of the model.
FOLDER_SKIP = frozenset({".git", ".cache", ".qwen-fetch"})


@dataclass(frozen=True)
class Target:
    """One pinned revision to check against one snapshot dir or folder."""

    model: str
    pin: Pin
    root: Path
    snapshot: bool  # a cache snapshot (links into ../../blobs) or a plain folder
    blobs_dir: Path | None = None


def list_entries(root: Path, *, skip_top: frozenset[str] = frozenset()) -> dict[str, Path]:
    """Every non-directory entry under ``root`` (links not followed), by POSIX relative path."""
    out: dict[str, Path] = {}
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        d, prefix = stack.pop()
        try:
            it = list(os.scandir(d))
        except OSError:
            continue
        for e in it:
            rel = prefix + e.name
            if not prefix and e.name in skip_top:
                continue
            if e.is_dir(follow_symlinks=False):
                stack.append((Path(e.path), rel + "/"))
            else:
                out[rel] = Path(e.path)
    return out


def _link_info(entry: Path, blobs_dir: Path) -> tuple[str, str | None, bool]:
    """(raw target, blob name if it lands directly in ``blobs_dir``, target exists)."""
    raw = os.readlink(entry)
    target = os.path.normpath(os.path.join(os.path.dirname(entry), raw))
    blob = os.path.basename(target) if os.path.dirname(target) == os.path.normpath(blobs_dir) else None
    # The text may name blobs/<sha256> and still lead elsewhere: through a symlinked snapshot dir, a
    # symlinked blobs/, or a blob that is itself a link.  What a loader reads is where it really ends.
    real_blobs = os.path.join(os.path.realpath(os.path.dirname(os.path.normpath(blobs_dir))), "blobs")
    if blob is not None and os.path.realpath(entry) != os.path.join(real_blobs, blob):
        if os.path.exists(target) or os.path.islink(target):
            blob = None
    return raw, blob, os.path.exists(target)


def _observe(target: Target, entries: dict[str, Path], hashes: dict[Path, HashResult]) -> dict[str, Observed]:
    out: dict[str, Observed] = {}
    for rel, p in entries.items():
        if target.snapshot and p.is_symlink():
            assert target.blobs_dir is not None
            raw, blob, exists = _link_info(p, target.blobs_dir)
            r = hashes.get(p) if exists else None
            out[rel] = Observed(rel, r.size if r else None, r.sha256 if r else None, is_link=True, link=raw,
                                blob=blob, error=(r.error if r else "dangling link"), root=r.root if r else None)
        else:
            r = hashes.get(p, HashResult(None, None, "not hashed"))
            out[rel] = Observed(rel, r.size, r.sha256, is_link=False, error=r.error, root=r.root)
    return out


def verify_targets(targets: Sequence[Target], *, workers: int | None = None,
                   progress: ProgressSink | None = None) -> tuple[TargetReport, ...]:
    """Hash every target's files in one parallel batch and diff each target with its pin."""
    listed: list[dict[str, Path]] = []
    to_hash: list[Path] = []
    rooted: set[Path] = set()  # entries whose pin has a chunk root: hashed by chunks, on every core
    for t in targets:
        entries = list_entries(t.root, skip_top=frozenset() if t.snapshot else FOLDER_SKIP)
        listed.append(entries)
        pinned = t.pin.by_path()
        for rel, p in entries.items():
            if os.path.exists(p):  # follows links; a dangling link has nothing to hash
                to_hash.append(p)
                f = pinned.get(rel)
                if f is not None and f.root is not None:
                    rooted.add(p)
    seen = _stats_before_hashing(targets)
    if progress is None:
        hashes = hash_files(to_hash, workers=workers, chunked=rooted)
    else:
        progress.begin(bytes_to_hash(targets), len(to_hash))
        try:
            hashes = hash_files(to_hash, workers=workers, progress=progress.advance, chunked=rooted)
        finally:
            progress.end()
    reports = []
    for t, entries in zip(targets, listed):
        observed = _observe(t, entries, hashes)
        reports.append(compare(t.pin.files, observed, model=t.model, commit=t.pin.commit, location=str(t.root),
                               snapshot=t.snapshot))
        _refresh_stamps(t, observed, seen)
    return tuple(reports)


def _stamp_place(t: Target) -> tuple[StampStore, Callable[[PinnedFile], tuple[str, Path]]] | None:
    """Where ``t``'s stamps live and, per file, (stamp key, the file a stamp describes)."""
    # The same places and keys as qwen_fetch.store.warm uses for a pull (without importing the pull's modules).
    if t.snapshot:
        if t.blobs_dir is None:
            return None
        blobs = t.blobs_dir
        return repo_stamps(blobs.parent), lambda f: (f.blob_name, blobs / f.blob_name)
    meta = t.root / ".cache" / "qwen-fetch"
    if not meta.is_dir():
        return None  # a folder qwen-fetch did not write: nothing of ours goes into it
    root = t.root
    return folder_stamps(meta), lambda f: (path_key(f.path), join_safe(root, f.path))


def _stats_before_hashing(targets: Sequence[Target]) -> dict[Path, tuple[FileStat, int]]:
    """Each pinned file's stat (and when it was taken) before any byte is read: a stamp describes that."""
    out: dict[Path, tuple[FileStat, int]] = {}
    for t in targets:
        place = _stamp_place(t)
        if place is None:
            continue
        for f in t.pin.files:
            path = place[1](f)[1]
            now = time.time_ns()
            st = file_stat(path)
            if st is not None:
                out[path] = (st, now)
    return out


def _refresh_stamps(t: Target, observed: dict[str, Observed], seen: dict[Path, tuple[FileStat, int]]) -> None:
    """Every file just hashed and found to match its pin gets a fresh verification stamp."""
    place = _stamp_place(t)
    if place is None:
        return
    store, where = place
    for f in t.pin.files:
        o = observed.get(f.path)
        # A root match is as good as a sha256 match: the root was recorded over bytes whose sha256 matched.
        if o is None or not matches(f, o) or (t.snapshot and o.blob != f.blob_name):
            continue
        key, path = where(f)
        if path in seen:
            st, now = seen[path]
            store.write(key, take(st, f.sha256, now_ns=now))


def bytes_to_hash(targets: Sequence[Target]) -> int:
    """About the bytes ``verify_targets`` reads (for a progress bar): a blob shared by snapshots counts once."""
    seen: set[tuple[str, str]] = set()
    total = 0
    for t in targets:
        for f in t.pin.files:
            key = (t.model, f.sha256) if t.snapshot else (str(t.root), f.path)
            if key not in seen:
                seen.add(key)
                total += f.size
    return total


# ---------------------------------------------------------------------------
# --all: the cache's structure


def cache_repos(cache_dir: Path, skipped: list[tuple[str, str]] | None = None) -> list[RepoCache]:
    """Model repos in the cache (the shared ``blobs/`` store and ``.locks`` are not repos).

    A ``models--`` entry that names no valid model id (``models--a--b--c``, ``models--x y``) or is no
    real directory is not a repo we can read: it goes to ``skipped`` (path, why) and the scan goes on.
    """
    if not cache_dir.is_dir():
        return []
    out = []
    try:
        entries = sorted(cache_dir.iterdir())
    except OSError as exc:
        if skipped is not None:
            skipped.append((str(cache_dir), f"unreadable ({exc.strerror or exc.__class__.__name__})"))
        return []
    for p in entries:
        if not p.name.startswith("models--"):
            continue
        rid = repo_id_from_folder(p.name)
        if rid is None:
            why = "its name maps to no valid model id"
        elif p.is_symlink() or not p.is_dir():
            why = "not a directory" if not p.is_symlink() else "a symlink, not a directory"
        else:
            out.append(RepoCache(cache_dir, rid))
            continue
        if skipped is not None:
            skipped.append((str(p), why))
    return out


def read_refs(repo: RepoCache) -> dict[str, str | None]:
    """Every ref file, including empty or unreadable ones (``None``)."""
    out: dict[str, str | None] = {}
    if not repo.refs_dir.is_dir():
        return out
    for p in sorted(repo.refs_dir.rglob("*")):
        if p.is_dir() or p.name.startswith("."):
            continue
        name = p.relative_to(repo.refs_dir).as_posix()
        try:
            out[name] = p.read_text(encoding="utf-8").strip() or None
        except (OSError, UnicodeDecodeError):
            out[name] = None
    return out


def lock_held(lock_path: Path) -> bool:
    """Is a running pull holding this blob's lock?  (Never creates a lock file.)"""
    if not is_regular(lock_path):  # absent, or a planted link: never opened (older filelocks truncate it)
        return False
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:
        return False
    lock.release()
    return False


def partial_blob(name: str) -> str:
    """``<blob>.incomplete`` / ``<blob>.incomplete.parts`` -> ``<blob>``."""
    base = name.removesuffix(".parts")
    return base.removesuffix(INCOMPLETE)


def scan_partials(repo: RepoCache, pinned_blobs: frozenset[str]) -> tuple[Partial, ...]:
    if not repo.blobs_dir.is_dir():
        return ()
    names = frozenset(os.listdir(repo.blobs_dir))
    blobs = frozenset(n for n in names if INCOMPLETE not in n)
    out = []
    for name in sorted(names - blobs):
        if lock_held(repo.lock_path(partial_blob(name))):
            continue  # a running pull is writing it
        p = repo.blobs_dir / name
        try:
            size = p.lstat().st_size
        except OSError:
            continue
        rel = p.relative_to(repo.cache_dir).as_posix()
        out.append(Partial(repo.repo_id, rel, size, classify_partial(name, blobs, names, pinned_blobs)))
    return tuple(out)


def odd_blobs(repo: RepoCache) -> list[BadLink]:
    """Entries of ``blobs/`` that are not regular files: a blob must hold its bytes, not lead elsewhere."""
    out = []
    try:
        names = sorted(os.listdir(repo.blobs_dir))
    except OSError:
        return out
    for name in names:
        p = repo.blobs_dir / name
        if name.startswith(".") or INCOMPLETE in name or is_regular(p):
            continue
        actual = os.readlink(p) if p.is_symlink() else None
        out.append(BadLink(f"{repo.repo_id}: blobs/{name}", BLOB_NOT_A_FILE, name, actual))
    return out


def structure_checks(cache_dir: Path, pinned: dict[str, frozenset[str]],
                     checked_snapshots: set[tuple[str, str]], skipped: list[tuple[str, str]]) -> tuple[tuple[BadLink, ...], tuple[BadRef, ...],
                                                                         tuple[Partial, ...]]:
    """Links of the snapshots no target covers, refs, and partial downloads, for every model repo.

    ``pinned``: repo id -> blobs any pin expects; ``checked_snapshots``: (repo, commit)
    pairs already diffed against a pin (their links are in those reports).
    """
    links: list[BadLink] = []
    refs: list[BadRef] = []
    partials: list[Partial] = []
    for repo in cache_repos(cache_dir, skipped):
        try:
            _check_repo(repo, pinned, checked_snapshots, links, refs, partials)
        except OSError as exc:  # one unreadable folder must not hide the rest of the cache
            skipped.append((str(repo.repo_dir), f"unreadable ({exc.strerror or exc.__class__.__name__})"))
    return (tuple(sorted(links, key=lambda b: b.path)), tuple(refs), tuple(sorted(partials, key=lambda p: p.path)))


def _check_repo(repo: RepoCache, pinned: dict[str, frozenset[str]], checked_snapshots: set[tuple[str, str]],
                links: list[BadLink], refs: list[BadRef], partials: list[Partial]) -> None:
    """One repo's refs, the links of its snapshots no target covers, odd blobs and partial files."""
    commits = repo.snapshot_commits()
    refs.extend(check_refs(repo.repo_id, read_refs(repo), commits))
    for commit in commits:
        if (repo.repo_id, commit) in checked_snapshots:
            continue
        for rel, p in list_entries(repo.snapshot_dir(commit)).items():
            shown = f"{repo.repo_id}@{commit}:{rel}"
            if p.is_symlink():
                raw, blob, exists = _link_info(p, repo.blobs_dir)
                bad = check_link(None, Observed(shown, 0 if exists else None, None, True, raw, blob))
            else:
                bad = check_link(None, Observed(shown, None, None, False))
            if bad is not None:
                links.append(bad)
    links.extend(odd_blobs(repo))
    partials.extend(scan_partials(repo, pinned.get(repo.repo_id, frozenset())))


def verify_all(cache_dir: Path, models: Sequence[tuple[str, Pin]], *, workers: int | None = None,
               progress: ProgressSink | None = None) -> VerifyReport:
    """Every pinned revision present in the cache, plus refs, all snapshot links and partial files."""
    targets = snapshot_targets(cache_dir, models)
    reports = verify_targets(targets, workers=workers, progress=progress)
    pinned: dict[str, set[str]] = {}
    for mid, pin in models:
        pinned.setdefault(mid, set()).update(f.blob_name for f in pin.files)
    skipped: list[tuple[str, str]] = []
    links, refs, partials = structure_checks(cache_dir, {k: frozenset(v) for k, v in pinned.items()},
                                             {(t.model, t.pin.commit) for t in targets}, skipped)
    return VerifyReport(targets=reports, bad_links=links, bad_refs=refs, partials=partials,
                        skipped=tuple(sorted(skipped)))


def snapshot_targets(cache_dir: Path, models: Sequence[tuple[str, Pin]]) -> list[Target]:
    """The pins whose snapshot dir exists in the cache."""
    out = []
    for mid, pin in models:
        repo = RepoCache(cache_dir, mid)
        snap = repo.snapshot_dir(pin.commit)
        if snap.is_dir():
            out.append(Target(mid, pin, snap, snapshot=True, blobs_dir=repo.blobs_dir))
    return out
