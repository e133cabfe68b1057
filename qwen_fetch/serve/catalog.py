"""What ``qwen-fetch serve`` may serve: revisions and files of a local HF cache.

The HTTP layer (:mod:`qwen_fetch.serve.server`) only asks this module three things:
which commit a revision names, what a commit holds, and whether a file may be
sent right now.  Every answer is either data or a :class:`Refusal` that maps
onto the hub's ``X-Error-Code`` (``RepoNotFound`` / ``RevisionNotFound`` /
``EntryNotFound``).

Two modes:

* **open** (no lock): every snapshot in the cache, as the cache names it.  Blob
  names are trusted (a sha256-named blob is served with that sha256 as ETag);
  plain files' git blob ids are hashed once and memoised.
* **locked** (``--lock``): only pinned revisions, and only once the whole
  snapshot has been re-hashed against the pin (all-or-nothing: one bad, missing
  or extra file refuses the snapshot).  Each file's ``stat`` (device, inode,
  size, mtime and ctime) is recorded before it is hashed; a blob that is not
  provably unchanged since (:func:`qwen_fetch.store.stamps.unchanged`, the rule
  ``pull``'s verification stamps use) is re-hashed before a byte of it is sent.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from qwen_fetch.core.digests import digest_matches, git_blob_header, is_sha1, is_sha256
from qwen_fetch.core.errors import QFError
from qwen_fetch.core.lockfile import Lock
from qwen_fetch.core.manifest import Pin
from qwen_fetch.core.paths import SafeRelPath, UnsafePathError, safe_relpath
from qwen_fetch.core.revisions import is_commit_id, revision_problem
from qwen_fetch.store.hasher import hash_file
from qwen_fetch.store.hfcache import RepoCache, check_repo_id
from qwen_fetch.store.stamps import FileStat, unchanged
from qwen_fetch.store.verify_disk import list_entries

# What the Hub's default .gitattributes stores in LFS (when no lock says otherwise).
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".msgpack", ".h5", ".npz",
                ".npy", ".pkl", ".tar", ".gz", ".zip", ".zst", ".model", ".tflite", ".ot", ".arrow", ".parquet")
LFS_MIN_SIZE = 10 * 1024 * 1024
OPEN_TTL = 2.0  # seconds an open-mode snapshot listing is reused (a running pull may add files)

Fingerprint = tuple[FileStat, int]  # a blob's stat and when it was taken (time.time_ns, before the stat)


class Refusal(Exception):
    """Not served.  ``code`` is the hub's ``X-Error-Code``."""

    def __init__(self, code: str, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.commit = commit


def guess_lfs(path: str, size: int) -> bool:
    return path.lower().endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer file the Hub stores in git for an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def git_oid_of(data: bytes) -> str:
    return hashlib.sha1(git_blob_header(len(data)) + data, usedforsecurity=False).hexdigest()


def fingerprint(path: Path) -> Fingerprint:
    taken = time.time_ns()
    return (FileStat.of(os.stat(path)), taken)


@dataclass(frozen=True)
class ServedFile:
    path: SafeRelPath
    disk: Path  # the blob, resolved
    size: int
    sha256: str | None  # content sha256 (always known for LFS files)
    git_oid: str  # git blob id: of the content (plain files) or of the LFS pointer (LFS files)
    lfs: bool
    seen: Fingerprint  # stat when listed / verified

    @property
    def etag(self) -> str:
        """What the Hub sends: sha256 for LFS files, the git blob id for plain files."""
        assert self.sha256 is not None or not self.lfs
        return self.sha256 if self.lfs and self.sha256 else self.git_oid

    @property
    def pointer_size(self) -> int:
        assert self.sha256 is not None
        return len(lfs_pointer(self.sha256, self.size))


@dataclass(frozen=True)
class Snapshot:
    repo_id: str
    commit: str
    files: tuple[ServedFile, ...]  # sorted by path
    built: float = field(default=0.0, compare=False)
    _index: dict[str, ServedFile] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index.update((f.path, f) for f in self.files)  # one lookup per request, whatever the repo size

    def file(self, path: str) -> ServedFile | None:
        return self._index.get(path)


# ---------------------------------------------------------------------------
# building snapshots


class OidMemo:
    """Git blob ids / sha256 of local files, memoised by ``stat`` fingerprint (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._memo: dict[tuple[str, FileStat], tuple[str, str]] = {}

    def hashes(self, path: Path, fp: Fingerprint) -> tuple[str, str]:
        key = (str(path), fp[0])
        with self._lock:
            hit = self._memo.get(key)
        if hit is not None:
            return hit
        h = hash_file(path, with_git_oid=True)
        if h.git_oid is None:  # changed while reading
            raise Refusal("EntryNotFound", f"{path.name} changed while being hashed")
        if not unchanged(fp[0], fp[1], fp[0]):
            return h.sha256, h.git_oid  # racy: a change later in this clock tick would keep the same stat
        with self._lock:
            self._memo[key] = (h.sha256, h.git_oid)
        return h.sha256, h.git_oid


def _blob_of(repo: RepoCache, entry: Path) -> Path | None:
    """The blob a snapshot entry resolves to, if it lies inside this repo's ``blobs/``."""
    try:
        real = Path(os.path.realpath(entry))
    except OSError:
        return None
    blobs = Path(os.path.realpath(repo.blobs_dir))
    if real.parent != blobs or not real.is_file():
        return None
    return real


def open_snapshot(repo: RepoCache, commit: str, memo: OidMemo) -> Snapshot:
    """List a cached snapshot as the cache names it (open mode)."""
    files: list[ServedFile] = []
    for rel, entry in sorted(list_entries(repo.snapshot_dir(commit)).items()):
        try:
            path = safe_relpath(rel)
        except UnsafePathError:
            continue
        blob = _blob_of(repo, entry)
        if blob is None:  # dangling, or pointing outside blobs/: never served
            continue
        fp = fingerprint(blob)
        size = fp[0].size
        name = blob.name
        if is_sha1(name):  # huggingface_hub names plain files by git blob id
            files.append(ServedFile(path, blob, size, None, name, False, fp))
        elif is_sha256(name) and guess_lfs(path, size):
            files.append(ServedFile(path, blob, size, name, git_oid_of(lfs_pointer(name, size)), True, fp))
        else:
            sha, oid = memo.hashes(blob, fp)
            files.append(ServedFile(path, blob, size, sha, oid, False, fp))
    return Snapshot(repo.repo_id, commit, tuple(files), built=time.monotonic())


def pinned_snapshot(repo: RepoCache, pin: Pin, memo: OidMemo) -> tuple[Snapshot | None, str]:
    """Verify a snapshot against its pin (re-hash everything); ``(None, why)`` when it fails."""
    from qwen_fetch.store.verify_disk import Target, verify_targets

    snap_dir = repo.snapshot_dir(pin.commit)
    if not snap_dir.is_dir():
        return None, "not in the cache"
    # Stat before hashing: a change during or after the hash moves ctime, and fresh() re-hashes.
    seen: dict[str, tuple[Path, Fingerprint]] = {}
    for pf in pin.files:
        blob = _blob_of(repo, repo.snapshot_file(pin.commit, pf.path))
        if blob is not None:
            try:
                seen[pf.path] = (blob, fingerprint(blob))
            except OSError:
                pass
    target = Target(repo.repo_id, pin, snap_dir, snapshot=True, blobs_dir=repo.blobs_dir)
    report = verify_targets([target])[0]
    if not report.ok:
        parts = [f"{len(v)} {k}" for k, v in (("missing", report.missing), ("extra", report.extra),
                                              ("mismatched", report.mismatched), ("bad links", report.bad_links)) if v]
        first = (list(report.missing) + list(report.extra) + [m.path for m in report.mismatched]
                 + [b.path for b in report.bad_links])[:3]
        return None, f"failed verification against the lock ({', '.join(parts)}: {', '.join(first)})"
    files: list[ServedFile] = []
    for pf in pin.files:
        blob = _blob_of(repo, repo.snapshot_file(pin.commit, pf.path))
        if blob is None or pf.path not in seen or seen[pf.path][0] != blob:
            return None, f"{pf.path}: link does not resolve into blobs/"
        fp = seen[pf.path][1]
        if pf.lfs:
            oid = git_oid_of(lfs_pointer(pf.sha256, pf.size))
        else:
            oid = pf.git_oid or memo.hashes(blob, fp)[1]
        files.append(ServedFile(pf.path, blob, pf.size, pf.sha256, oid, pf.lfs, fp))
    return Snapshot(repo.repo_id, pin.commit, tuple(sorted(files, key=lambda f: f.path)),
                    built=time.monotonic()), "verified"


# ---------------------------------------------------------------------------
# the catalogue


class Catalog:
    """Thread-safe answers for the HTTP layer."""

    def __init__(self, cache_dir: Path, lock: Lock | None = None) -> None:
        self.cache_dir = cache_dir
        self.lock = lock
        self.memo = OidMemo()
        self._mu = threading.Lock()
        self._snapshots: dict[tuple[str, str], Snapshot] = {}
        self._refused: dict[tuple[str, str], str] = {}  # locked mode: (repo, commit) -> why
        self._verifying: dict[tuple[str, str], threading.Lock] = {}
        self._rechecked: dict[str, Fingerprint] = {}  # blob -> fingerprint re-hashed good after a change

    @property
    def locked(self) -> bool:
        return self.lock is not None

    def repo(self, repo_id: str) -> RepoCache:
        try:
            check_repo_id(repo_id)
        except QFError:
            raise Refusal("RepoNotFound", f"{repo_id!r} is not a model id") from None
        repo = RepoCache(self.cache_dir, repo_id)
        if not repo.snapshots_dir.is_dir() or (self.lock is not None and not self.lock.pins(repo_id)):
            raise Refusal("RepoNotFound", f"{repo_id} is not served here")
        return repo

    def resolve(self, repo_id: str, revision: str) -> str:
        """Revision (branch, tag or commit) -> commit, or :class:`Refusal`."""
        repo = self.repo(repo_id)
        if self.lock is not None:
            for pin in self.lock.pins(repo_id):
                if revision in (pin.revision, pin.commit):
                    return pin.commit
            raise Refusal("RevisionNotFound", f"{repo_id}@{revision} is not pinned in the lock served here")
        if revision_problem(revision) is not None:  # never a path outside refs/
            raise Refusal("RevisionNotFound", f"{revision!r} is not a branch, tag or commit")
        commit = revision if is_commit_id(revision) else repo.read_ref(revision)
        if commit is None or not is_commit_id(commit) or not repo.snapshot_dir(commit).is_dir():
            raise Refusal("RevisionNotFound", f"{repo_id}@{revision} is not in the cache")
        return commit

    def snapshot(self, repo_id: str, commit: str) -> Snapshot:
        key = (repo_id, commit)
        with self._mu:
            snap = self._snapshots.get(key)
            why = self._refused.get(key)
        if why is not None:
            raise Refusal("RevisionNotFound", f"{repo_id}@{commit[:12]}: {why}", commit)
        if snap is not None and (self.locked or time.monotonic() - snap.built < OPEN_TTL):
            return snap
        repo = self.repo(repo_id)
        if self.lock is None:
            snap = open_snapshot(repo, commit, self.memo)
            with self._mu:
                self._snapshots[key] = snap
            return snap
        pin = next((p for p in self.lock.pins(repo_id) if p.commit == commit), None)
        if pin is None:
            raise Refusal("RevisionNotFound", f"{repo_id}@{commit[:12]} is not pinned")
        with self._mu:
            gate = self._verifying.setdefault(key, threading.Lock())
        with gate:  # concurrent first requests wait for one verification
            with self._mu:
                if key in self._snapshots:
                    return self._snapshots[key]
                if key in self._refused:
                    raise Refusal("RevisionNotFound", f"{repo_id}@{commit[:12]}: {self._refused[key]}", commit)
            got, why = pinned_snapshot(repo, pin, self.memo)
            with self._mu:
                if got is None and repo.snapshot_dir(commit).is_dir():  # absent: a later pull may add it
                    self._refused[key] = why
                elif got is not None:
                    self._snapshots[key] = got
        if got is None:
            raise Refusal("RevisionNotFound", f"{repo_id}@{commit[:12]}: {why}", commit)
        return got

    def refuse(self, repo_id: str, commit: str, why: str) -> None:
        with self._mu:
            self._snapshots.pop((repo_id, commit), None)
            self._refused[(repo_id, commit)] = why

    def fresh(self, snap: Snapshot, f: ServedFile) -> ServedFile:
        """The file, re-checked if its blob changed since it was listed; :class:`Refusal` if it is now bad."""
        try:
            fp = fingerprint(f.disk)
        except OSError:
            raise Refusal("EntryNotFound", f"{f.path}: blob vanished from the cache", snap.commit) from None
        now = fp[0]
        if self.lock is None:
            if now == f.seen[0]:  # open mode trusts blob names; only a replaced blob is refused
                return f
            raise Refusal("EntryNotFound", f"{f.path}: blob changed; retry", snap.commit)
        with self._mu:
            again = self._rechecked.get(str(f.disk))
        if unchanged(*f.seen, now) or (again is not None and unchanged(*again, now)):
            return f
        h = hash_file(f.disk)
        if h.size != f.size or f.sha256 is None or not digest_matches(f.sha256, h.sha256):
            self.refuse(snap.repo_id, snap.commit, f"{f.path} changed on disk and no longer matches the lock")
            raise Refusal("RevisionNotFound", f"{snap.repo_id}@{snap.commit[:12]}: {f.path} no longer matches the lock",
                          snap.commit)
        with self._mu:
            self._rechecked[str(f.disk)] = fp
        return f  # same bytes (touched, copied back): keep serving

    def verify_all(self) -> list[tuple[str, Pin, str]]:
        """Locked mode: verify every pin now.  Returns (model, pin, "verified" or why not)."""
        out: list[tuple[str, Pin, str]] = []
        if self.lock is None:
            return out
        for mid, pins in self.lock.models:
            for pin in pins:
                try:
                    self.snapshot(mid, pin.commit)
                    out.append((mid, pin, "verified"))
                except Refusal as r:
                    out.append((mid, pin, r.message))
        return out

    def repos(self) -> list[str]:
        from qwen_fetch.store.verify_disk import cache_repos

        return [r.repo_id for r in cache_repos(self.cache_dir)]
