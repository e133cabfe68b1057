"""Garbage collection as a plan: what to delete, why, and how many bytes it frees.

Pure.  :func:`plan_gc` takes a frozen picture of the cache (built by
:mod:`qwen_fetch.store.gc_disk` on top of ``huggingface_hub.scan_cache_dir``) and a
policy, and returns a :class:`GcPlan`; nothing is deleted until
:func:`qwen_fetch.store.gc_disk.execute` carries the plan out, in an order that keeps
the cache consistent at every step (snapshots go before the blobs they link to).

Rules, per model repo:

* a revision is kept when a lockfile pins it, when a ref (``refs/main``...) names
  it, when it is among the ``keep_last`` newest other revisions, or when it is
  newer than ``older_than``; every other revision is deleted;
* a blob is deleted when no kept revision links to it and no pin expects it;
  a blob that no snapshot at all links to (an "orphan") is only deleted once it is
  older than ``incomplete_older_than``, since a running pull writes a blob before
  it links it;
* a partial download (``.incomplete`` and its ``.parts``) is deleted once it is
  older than ``incomplete_older_than`` and no running pull holds its lock;
  at any age when its blob is complete, and so is a temporary a killed pull left
  in ``blobs/`` (``.<blob>....tmp``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_fetch.core.errors import UsageError

REVISION = "revision"
BLOB = "blob"
PARTIAL = "partial"
TRASH = "trash"
ORDER = {REVISION: 0, BLOB: 1, PARTIAL: 2, TRASH: 3}  # execution order: links before their targets

DAY = 86400.0
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(text: str) -> float:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` (a bare number is seconds) -> seconds."""
    m = _DURATION_RE.match(text.lower())
    if not m:
        raise UsageError(f"bad duration {text!r}", hint="use a number and a unit: 45s, 90m, 12h, 30d, 2w")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def human_duration(seconds: float) -> str:
    for unit, size in (("w", 7 * DAY), ("d", DAY), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


@dataclass(frozen=True)
class RevisionState:
    commit: str
    path: Path  # snapshots/<commit>
    refs: tuple[str, ...]
    blobs: frozenset[str]  # names of the blobs its links point at
    own_bytes: int  # regular files inside the snapshot dir (not links)
    last_modified: float


@dataclass(frozen=True)
class BlobState:
    name: str
    path: Path
    size: int  # lstat: a link into a shared store frees nothing here
    mtime: float


@dataclass(frozen=True)
class PartialState:
    name: str  # <blob>.incomplete or <blob>.incomplete.parts
    blob: str
    path: Path
    size: int
    mtime: float
    locked: bool  # a running pull holds the blob's lock
    # "partial" (resumable until it is old), "leftover" (its blob is complete: a run killed after promotion)
    # or "temporary" (a killed run's ``.<blob>....tmp``): the last two are collected at any age.
    kind: str = "partial"


@dataclass(frozen=True)
class RepoState:
    repo_id: str
    path: Path
    revisions: tuple[RevisionState, ...]
    blobs: tuple[BlobState, ...]
    partials: tuple[PartialState, ...] = ()
    trash: tuple[tuple[Path, int], ...] = ()  # left by an interrupted gc: (path, bytes)
    trash_blobs: frozenset[str] = frozenset()  # blobs the snapshots in the trash linked to


@dataclass(frozen=True)
class CacheState:
    cache_dir: Path
    repos: tuple[RepoState, ...]
    skipped: tuple[str, ...] = ()  # repos gc leaves alone (corrupted: huggingface_hub's warning)


@dataclass(frozen=True)
class GcPolicy:
    pinned: frozenset[tuple[str, str]]  # (repo id, commit) of every pin
    pinned_blobs: frozenset[tuple[str, str]]  # (repo id, blob name) of every pinned file
    now: float
    keep_last: int = 0
    older_than: float | None = None  # seconds
    incomplete_older_than: float = DAY
    lock_names: tuple[str, ...] = ()  # for the "why" lines


@dataclass(frozen=True)
class Action:
    kind: str  # REVISION, BLOB, PARTIAL, TRASH
    repo: str
    path: Path
    why: str
    bytes: int
    blob: str | None = None  # the blob whose lock guards it (BLOB, PARTIAL)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "repo": self.repo, "path": str(self.path), "why": self.why, "bytes": self.bytes}


@dataclass(frozen=True)
class Kept:
    kind: str
    repo: str
    name: str  # commit or blob/partial name
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "repo": self.repo, "name": self.name, "why": self.why}


@dataclass(frozen=True)
class GcPlan:
    cache_dir: Path
    actions: tuple[Action, ...]  # in execution order
    kept: tuple[Kept, ...]
    skipped: tuple[str, ...] = ()

    @property
    def bytes(self) -> int:
        return sum(a.bytes for a in self.actions)

    def to_dict(self) -> dict[str, Any]:
        return {"cache_dir": str(self.cache_dir), "bytes": self.bytes,
                "actions": [a.to_dict() for a in self.actions], "kept": [k.to_dict() for k in self.kept],
                "skipped": list(self.skipped)}


def _short(commit: str) -> str:
    return commit[:12]


def _plan_revisions(repo: RepoState, policy: GcPolicy) -> tuple[list[RevisionState], list[Kept], list[Action]]:
    kept: list[Kept] = []
    kept_revs: list[RevisionState] = []
    free: list[RevisionState] = []
    for rev in repo.revisions:
        if (repo.repo_id, rev.commit) in policy.pinned:
            kept.append(Kept(REVISION, repo.repo_id, rev.commit, "pinned by a lockfile"))
            kept_revs.append(rev)
        elif rev.refs:
            kept.append(Kept(REVISION, repo.repo_id, rev.commit, "target of ref " + ", ".join(sorted(rev.refs))))
            kept_revs.append(rev)
        else:
            free.append(rev)
    free.sort(key=lambda r: (-r.last_modified, r.commit))  # newest first
    actions: list[Action] = []
    locks = ", ".join(policy.lock_names) or "no lockfile"
    for i, rev in enumerate(free):
        age = policy.now - rev.last_modified
        if i < policy.keep_last:
            kept.append(Kept(REVISION, repo.repo_id, rev.commit, f"one of the {policy.keep_last} newest (--keep-last)"))
            kept_revs.append(rev)
        elif policy.older_than is not None and age < policy.older_than:
            kept.append(Kept(REVISION, repo.repo_id, rev.commit,
                             f"newer than {human_duration(policy.older_than)} (--older-than)"))
            kept_revs.append(rev)
        else:
            actions.append(Action(REVISION, repo.repo_id, rev.path,
                                  f"not pinned ({locks}) and no ref; last modified {human_duration(max(age, 0))} ago",
                                  rev.own_bytes))
    return kept_revs, kept, actions


_LEFTOVER_WHY = {"leftover": "left over: its blob is complete, no running pull holds it",
                 "temporary": "temporary file of a killed pull, no running pull holds it"}


def _plan_repo(repo: RepoState, policy: GcPolicy) -> tuple[list[Action], list[Kept]]:
    kept_revs, kept, actions = _plan_revisions(repo, policy)
    deleted = {a.path for a in actions}
    live = set().union(*(r.blobs for r in kept_revs)) if kept_revs else set()
    users: dict[str, list[str]] = {}
    for rev in repo.revisions:
        if rev.path in deleted:
            for b in rev.blobs:
                users.setdefault(b, []).append(_short(rev.commit))
    for b in repo.trash_blobs:  # an interrupted gc removed their snapshots already
        users.setdefault(b, []).append("removed by an interrupted gc")
    for blob in sorted(repo.blobs, key=lambda b: b.name):
        if blob.name in live:
            continue
        if (repo.repo_id, blob.name) in policy.pinned_blobs:
            kept.append(Kept(BLOB, repo.repo_id, blob.name, "pinned by a lockfile (not linked yet)"))
        elif blob.name in users:
            actions.append(Action(BLOB, repo.repo_id, blob.path,
                                  "only used by deleted revision(s) " + ", ".join(sorted(users[blob.name])),
                                  blob.size, blob.name))
        elif policy.now - blob.mtime >= policy.incomplete_older_than:
            actions.append(Action(BLOB, repo.repo_id, blob.path, "linked from no snapshot", blob.size, blob.name))
        else:
            kept.append(Kept(BLOB, repo.repo_id, blob.name,
                             "linked from no snapshot but recent: a running pull may link it"))
    for part in sorted(repo.partials, key=lambda p: p.name):
        age = policy.now - part.mtime
        if part.locked:
            kept.append(Kept(PARTIAL, repo.repo_id, part.name, "a running pull holds it"))
        elif part.kind in _LEFTOVER_WHY:
            actions.append(Action(PARTIAL, repo.repo_id, part.path, _LEFTOVER_WHY[part.kind], part.size, part.blob))
        elif age < policy.incomplete_older_than:
            kept.append(Kept(PARTIAL, repo.repo_id, part.name,
                             f"newer than {human_duration(policy.incomplete_older_than)} (--incomplete-older-than)"))
        else:
            actions.append(Action(PARTIAL, repo.repo_id, part.path,
                                  f"partial download, {human_duration(age)} old, no running pull holds it",
                                  part.size, part.blob))
    for path, size in repo.trash:
        actions.append(Action(TRASH, repo.repo_id, path, "left by an interrupted gc", size))
    return actions, kept


def plan_gc(state: CacheState, policy: GcPolicy) -> GcPlan:
    """Decide what to delete (and why) without touching anything."""
    if policy.keep_last < 0:
        raise UsageError("--keep-last must be 0 or more", hint="e.g. --keep-last 1")
    actions: list[Action] = []
    kept: list[Kept] = []
    for repo in sorted(state.repos, key=lambda r: r.repo_id):
        a, k = _plan_repo(repo, policy)
        actions.extend(a)
        kept.extend(k)
    actions.sort(key=lambda a: (ORDER[a.kind], a.repo, str(a.path)))
    kept.sort(key=lambda k: (k.repo, k.kind, k.name))
    return GcPlan(cache_dir=state.cache_dir, actions=tuple(actions), kept=tuple(kept), skipped=state.skipped)
