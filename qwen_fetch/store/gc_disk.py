"""The disk side of ``gc``: picture the cache, then carry out a plan safely.

The picture comes from ``huggingface_hub.scan_cache_dir`` (revisions, refs,
which blob each snapshot file links to); what it does not report (blobs no
snapshot links to, ``.parts`` files, locks) is read here.  A repo that
huggingface_hub calls corrupted (a dangling link, a ref to a missing snapshot)
is left alone: run ``qwen-fetch verify --all`` to see why.

Execution order keeps the cache consistent if interrupted at any point:

1. each doomed snapshot dir is *renamed* (atomic) into ``<repo>/.gc-trash/`` -
   ``hf cache ls`` and loaders never see half a snapshot;
2. blobs are unlinked, each under its per-blob lock taken without waiting (a blob a
   pull is writing or linking is skipped), and only if no snapshot links to it
   *now* (a pull may have linked it since the plan was made);
3. partial downloads, under the same locks;
4. the trash is removed.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_fetch.core.digests import is_lower_hex, is_sha1, is_sha256
from qwen_fetch.core.gc import (
    BLOB,
    PARTIAL,
    REVISION,
    TRASH,
    Action,
    BlobState,
    CacheState,
    GcPlan,
    PartialState,
    RepoState,
    RevisionState,
)
from qwen_fetch.store.hfcache import INCOMPLETE, RepoCache, repo_id_from_folder
from qwen_fetch.store.safefs import cache_lock, make_dirs
from qwen_fetch.store.verify_disk import list_entries, lock_held, partial_blob

TRASH_DIR = ".gc-trash"


def _tree_bytes(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size if not path.is_symlink() else 0
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _blob_states(repo: RepoCache) -> tuple[tuple[BlobState, ...], tuple[PartialState, ...]]:
    blobs: list[BlobState] = []
    partials: list[PartialState] = []
    if not repo.blobs_dir.is_dir():
        return (), ()
    names = sorted(os.listdir(repo.blobs_dir))
    complete = {n for n in names if not n.startswith(".") and INCOMPLETE not in n}
    for name in names:
        p = repo.blobs_dir / name
        try:
            st = p.lstat()
        except OSError:
            continue
        temp = temporary_blob(name)
        if temp is not None:
            partials.append(PartialState(name, temp, p, st.st_size, st.st_mtime, lock_held(repo.lock_path(temp)),
                                         kind="temporary"))
        elif INCOMPLETE in name and not name.startswith("."):
            blob = partial_blob(name)
            partials.append(PartialState(name, blob, p, st.st_size, st.st_mtime, lock_held(repo.lock_path(blob)),
                                         kind="leftover" if blob in complete else "partial"))
        elif not name.startswith("."):
            blobs.append(BlobState(name, p, st.st_size, st.st_mtime))
    return tuple(blobs), tuple(partials)


def temporary_blob(name: str) -> str | None:
    """The blob whose temporary ``name`` is, or None when it is no temporary of ours.

    What a killed pull leaves: a state save's ``.<blob>.incomplete.parts.<8 hex>.tmp``, a small
    file's ``.<blob>.<8 hex>.tmp``.  Blob names are sha256s (git sha1s in caches huggingface_hub wrote).
    """
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    stem, _, token = name[1:-len(".tmp")].rpartition(".")
    blob = stem.removesuffix(".incomplete.parts")
    return blob if is_lower_hex(token, 8) and (is_sha256(blob) or is_sha1(blob)) else None


def scan_state(cache_dir: Path) -> CacheState:
    """The cache as gc sees it (model repos only; datasets and spaces are not ours to collect)."""
    from huggingface_hub import scan_cache_dir

    if not cache_dir.is_dir():
        return CacheState(cache_dir=cache_dir, repos=())
    info = scan_cache_dir(cache_dir)
    root = Path(info.cache_dir or cache_dir.resolve())
    repos = []
    odd: list[str] = []
    for r in sorted(info.repos, key=lambda r: r.repo_id):
        if r.repo_type != "model":
            continue
        if repo_id_from_folder(Path(r.repo_path).name) is None:
            odd.append(f"{r.repo_path}: its name maps to no valid model id")  # reported, never deleted
            continue
        try:
            repos.append(_repo_state(root, r))
        except OSError as exc:  # one unreadable folder must not stop gc for the rest of the cache
            odd.append(f"{r.repo_path}: unreadable ({exc.strerror or exc.__class__.__name__})")
    skipped = tuple(sorted([str(w) for w in info.warnings] + odd))
    return CacheState(cache_dir=root, repos=tuple(repos), skipped=skipped)


def _repo_state(root: Path, r: Any) -> RepoState:
    """One model repo of ``scan_cache_dir``'s answer, with what it does not report (blobs, partials, trash)."""
    repo = RepoCache(root, r.repo_id)
    blobs_dir = Path(os.path.abspath(repo.blobs_dir))
    revisions = []
    for rev in r.revisions:
        linked = frozenset(f.blob_path.name for f in rev.files if f.blob_path.parent == blobs_dir)
        own = sum(f.size_on_disk for f in rev.files if f.blob_path == f.file_path)
        revisions.append(RevisionState(rev.commit_hash, Path(rev.snapshot_path), tuple(sorted(rev.refs)),
                                       linked, own, rev.last_modified))
    blobs, partials = _blob_states(repo)
    trash_dir = repo.repo_dir / TRASH_DIR
    trash = tuple((p, _tree_bytes(p)) for p in sorted(trash_dir.iterdir())) if trash_dir.is_dir() else ()
    return RepoState(r.repo_id, repo.repo_dir, tuple(sorted(revisions, key=lambda v: v.commit)),
                     blobs, partials, trash, frozenset(_links_under(trash_dir)))


@dataclass(frozen=True)
class GcResult:
    done: tuple[Action, ...]
    skipped: tuple[tuple[Action, str], ...]  # (action, why it was not carried out)

    @property
    def freed(self) -> int:
        return sum(a.bytes for a in self.done)

    def to_dict(self) -> dict[str, Any]:
        return {"freed": self.freed, "done": [a.to_dict() for a in self.done],
                "skipped": [{**a.to_dict(), "skipped_because": why} for a, why in self.skipped]}


def _links_under(root: Path) -> set[str]:
    """Names of the blobs that links anywhere under ``root`` point at."""
    if not root.is_dir():
        return set()
    return {os.path.basename(os.readlink(p)) for p in list_entries(root).values() if p.is_symlink()}


def _linked_now(repo_dir: Path) -> set[str]:
    """Blob names that some snapshot of this repo links to at this moment."""
    return _links_under(repo_dir / "snapshots")


def _try_lock(path: Path) -> Any:
    """The per-blob lock, taken without waiting; ``None`` when a pull holds it."""
    from filelock import Timeout

    lock = cache_lock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def execute(plan: GcPlan, *, on_done: Callable[[Action], None] | None = None) -> GcResult:
    """Carry out ``plan`` in its safe order; report what was done and what was skipped."""
    done: list[Action] = []
    skipped: list[tuple[Action, str]] = []
    trash: list[tuple[Action, Path]] = []
    linked: dict[str, set[str]] = {}

    def finish(a: Action) -> None:
        done.append(a)
        if on_done is not None:
            on_done(a)

    for a in plan.actions:
        repo = RepoCache(plan.cache_dir, a.repo)
        if a.kind == REVISION:
            if not a.path.is_dir():
                skipped.append((a, "already gone"))
                continue
            snap_lock = _try_lock(repo.snapshot_lock_path(a.path.name))
            if snap_lock is None:
                skipped.append((a, "a running pull is linking it"))
                continue
            try:
                if a.path.name in repo.refs().values():  # a pull finished it after the plan was made
                    skipped.append((a, "a ref names it now"))
                    continue
                dest = repo.repo_dir / TRASH_DIR / f"{a.path.name}.{secrets.token_hex(4)}"
                make_dirs(repo.repo_dir, dest.parent)
                os.replace(a.path, dest)  # atomic: the snapshot vanishes whole
            finally:
                snap_lock.release()
            trash.append((a, dest))
            finish(a)
        elif a.kind in (BLOB, PARTIAL):
            assert a.blob is not None
            lock = _try_lock(repo.lock_path(a.blob))
            if lock is None:
                skipped.append((a, "a running pull holds its lock"))
                continue
            try:
                if a.kind == BLOB:
                    if a.repo not in linked:  # after the snapshots above are gone
                        linked[a.repo] = _linked_now(repo.repo_dir)
                    if a.blob in linked[a.repo]:
                        skipped.append((a, "a snapshot links to it now"))
                        continue
                if not a.path.exists() and not a.path.is_symlink():
                    skipped.append((a, "already gone"))
                    continue
                _unlink(a.path)
                finish(a)
            finally:
                lock.release()
        elif a.kind == TRASH:
            if a.path.is_dir() and not a.path.is_symlink():
                shutil.rmtree(a.path, ignore_errors=True)
            else:
                _unlink(a.path)
            finish(a)
    for _a, dest in trash:
        shutil.rmtree(dest, ignore_errors=True)
    for repo_id in sorted({a.repo for a in plan.actions}):  # no empty trash dir is left behind
        try:
            (RepoCache(plan.cache_dir, repo_id).repo_dir / TRASH_DIR).rmdir()
        except OSError:
            pass
    return GcResult(done=tuple(done), skipped=tuple(skipped))
