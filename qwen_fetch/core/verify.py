"""Verification as a pure diff: what the lock expects against what is on disk.

Nothing here touches the disk.  An adapter (:mod:`qwen_fetch.store.verify_disk`)
observes a snapshot or a folder (sizes, sha256, where each link points) and
hands the observations to :func:`compare`, which returns a frozen report with
every problem at once, in sorted lists, like sigstore model-transparency's
verifier: *missing*, *extra*, *mismatched* (expected / actual), plus the cache's
own structure: *bad links*, *bad refs* and *stray* partial downloads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qwen_fetch.core.digests import ROOT_ALGORITHM, digest_matches, parse_digest, root_digest
from qwen_fetch.core.manifest import PinnedFile

# Problems with a snapshot link (``snapshots/<commit>/<path>`` -> ``../../blobs/<sha256>``).
DANGLING = "dangling"  # the link's target does not exist
WRONG_BLOB = "wrong-blob"  # it points at another blob than blobs/<expected sha256>
OUTSIDE_BLOBS = "outside-blobs"  # it points somewhere other than this repo's blobs/
NOT_A_LINK = "not-a-link"  # a regular file (or directory) where a link belongs
BLOB_NOT_A_FILE = "blob-not-a-file"  # blobs/<name> is a symlink or a special file, not the bytes themselves

# Reasons a partial download is stray (``blobs/<sha256>.incomplete[.parts]``).
BLOB_COMPLETE = "blob-complete"  # the finished blob is already there: leftover
ORPHAN_PARTS = "orphan-parts"  # a .parts state file without its .incomplete
NOT_PINNED = "not-pinned"  # no pin of this repo expects that blob
RESUMABLE = "resumable"  # a pinned blob still missing: the next pull resumes it (not a failure)

# huggingface_hub names a download in progress blobs/<sha256>.incomplete; the engine keeps its resume state beside it
# in <blob>.incomplete.parts.  The cache adapters (store/) and this classification share the one spelling.
INCOMPLETE = ".incomplete"


@dataclass(frozen=True)
class Observed:
    """One entry found in a snapshot or folder.

    ``size``/``sha256`` are ``None`` when the content could not be read (a dangling
    link).  ``link`` is the raw link target (cache snapshots); ``blob`` the blob name
    it resolves to inside this repo's ``blobs/``, or ``None`` when it points elsewhere.
    """

    path: str
    size: int | None
    sha256: str | None
    is_link: bool = False
    link: str | None = None
    blob: str | None = None
    error: str | None = None  # why the content could not be read
    root: str | None = None  # the chunk root (hex), when the file was hashed by chunks instead of by sha256


def checks_root(f: PinnedFile, obs: Observed) -> bool:
    """Is ``obs`` checked against ``f``'s chunk root (both present) rather than its sha256?"""
    return f.root is not None and obs.root is not None


def matches(f: PinnedFile, obs: Observed) -> bool:
    """Do the observed bytes hold ``f``'s pinned content (by its root when both have one, else by sha256)?"""
    return f.matches(obs.size, root_digest(obs.root) if checks_root(f, obs) and obs.root is not None else obs.sha256)


@dataclass(frozen=True)
class Facts:
    size: int | None
    sha256: str | None
    root: str | None = None  # "<algorithm>:<hex>", when this file was checked by its chunk root

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"size": self.size, "sha256": self.sha256}
        if self.root is not None:
            d["root"] = self.root
        return d


@dataclass(frozen=True)
class Mismatch:
    """A file whose bytes differ from the pin: size and/or sha256."""

    path: str
    expected: Facts
    actual: Facts

    @property
    def fields(self) -> tuple[str, ...]:
        out = []
        if self.expected.size != self.actual.size:
            out.append("size")
        if self.expected.root is not None:  # checked by the root: the sha256 was not computed
            if not digest_matches(parse_digest(self.expected.root), parse_digest(self.actual.root)):
                out.append("root")
        elif self.expected.sha256 is None or not digest_matches(self.expected.sha256, self.actual.sha256):
            out.append("sha256")
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "fields": list(self.fields), "expected": self.expected.to_dict(),
                "actual": self.actual.to_dict()}


@dataclass(frozen=True)
class BadLink:
    path: str
    problem: str  # DANGLING, WRONG_BLOB, OUTSIDE_BLOBS, NOT_A_LINK
    expected: str | None  # the blob it should point at
    actual: str | None  # the raw link target (None: not a link)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "problem": self.problem, "expected": self.expected, "actual": self.actual}


@dataclass(frozen=True)
class BadRef:
    repo: str
    ref: str
    commit: str | None  # None: empty or unreadable ref file
    problem: str

    def to_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "ref": self.ref, "commit": self.commit, "problem": self.problem}


@dataclass(frozen=True)
class Partial:
    """A partial download file found in a repo's ``blobs/`` (not held by a running pull)."""

    repo: str
    path: str  # relative to the cache dir
    size: int
    reason: str  # BLOB_COMPLETE, ORPHAN_PARTS, NOT_PINNED, RESUMABLE

    @property
    def stray(self) -> bool:
        return self.reason != RESUMABLE

    def to_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "path": self.path, "size": self.size, "reason": self.reason}


@dataclass(frozen=True)
class TargetReport:
    """The comparison of one pinned revision with one snapshot or folder."""

    model: str
    commit: str
    location: str  # the snapshot dir or the folder
    kind: str  # "snapshot" or "folder"
    files_checked: int
    bytes_hashed: int
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    mismatched: tuple[Mismatch, ...] = ()
    bad_links: tuple[BadLink, ...] = ()
    by_root: int = 0  # pinned files read and checked by their chunk root ...
    by_sha256: int = 0  # ... and by their sha256

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.mismatched or self.bad_links)

    @property
    def checked_by(self) -> dict[str, int]:
        """How many files were checked with which digest."""
        return {"sha256": self.by_sha256, ROOT_ALGORITHM: self.by_root}

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "commit": self.commit, "location": self.location, "kind": self.kind,
            "ok": self.ok, "files_checked": self.files_checked, "bytes_hashed": self.bytes_hashed,
            "checked_by": self.checked_by, "missing": list(self.missing), "extra": list(self.extra),
            "mismatched": [m.to_dict() for m in self.mismatched],
            "bad_links": [b.to_dict() for b in self.bad_links],
        }


@dataclass(frozen=True)
class VerifyReport:
    """Everything ``qwen-fetch verify`` found, in one place."""

    targets: tuple[TargetReport, ...]
    bad_links: tuple[BadLink, ...] = ()  # --all: links of unpinned snapshots (path includes repo/commit)
    bad_refs: tuple[BadRef, ...] = ()
    partials: tuple[Partial, ...] = ()
    # --all: folders of the cache that could not be read as a model repo, (path, why); reported, left alone
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def stray(self) -> tuple[Partial, ...]:
        return tuple(p for p in self.partials if p.stray)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.targets) and not (self.bad_links or self.bad_refs or self.stray)

    def counts(self) -> dict[str, int]:
        return {
            "missing": sum(len(t.missing) for t in self.targets),
            "extra": sum(len(t.extra) for t in self.targets),
            "mismatched": sum(len(t.mismatched) for t in self.targets),
            "bad_links": sum(len(t.bad_links) for t in self.targets) + len(self.bad_links),
            "bad_refs": len(self.bad_refs),
            "stray": len(self.stray),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": self.counts(),
            "files_checked": sum(t.files_checked for t in self.targets),
            "bytes_hashed": sum(t.bytes_hashed for t in self.targets),
            "targets": [t.to_dict() for t in self.targets],
            "bad_links": [b.to_dict() for b in self.bad_links],
            "bad_refs": [r.to_dict() for r in self.bad_refs],
            "stray": [p.to_dict() for p in self.stray],
            "partials": [p.to_dict() for p in self.partials if not p.stray],
            "skipped": [{"path": p, "reason": why} for p, why in self.skipped],
        }


def check_link(expected_blob: str | None, obs: Observed) -> BadLink | None:
    """The link problem of one snapshot entry, if any (``expected_blob=None``: any blob will do)."""
    if not obs.is_link:
        return BadLink(obs.path, NOT_A_LINK, expected_blob, None)
    if obs.blob is None:
        return BadLink(obs.path, OUTSIDE_BLOBS, expected_blob, obs.link)
    if obs.size is None:
        return BadLink(obs.path, DANGLING, expected_blob, obs.link)
    if expected_blob is not None and obs.blob != expected_blob:
        return BadLink(obs.path, WRONG_BLOB, expected_blob, obs.link)
    return None


def compare(
    expected: Sequence[PinnedFile],
    observed: Mapping[str, Observed],
    *,
    model: str,
    commit: str,
    location: str,
    snapshot: bool,
) -> TargetReport:
    """Diff one pin's files with what a snapshot (``snapshot=True``) or a folder holds.

    Each path lands in at most one of missing / extra / mismatched; a snapshot entry
    may in addition have a link problem (a link swapped to another blob is both a
    bad link and a mismatch, since that is what a loader would read).
    """
    want: dict[str, PinnedFile] = {f.path: f for f in expected}
    missing = sorted(p for p in want if p not in observed)
    extra = sorted(p for p in observed if p not in want)
    mismatched: list[Mismatch] = []
    bad_links: list[BadLink] = []
    hashed = 0
    by_root = by_sha = 0
    for path in sorted(p for p in observed if p in want):
        f, obs = want[path], observed[path]
        if snapshot:
            bad = check_link(f.blob_name, obs)
            if bad is not None:
                bad_links.append(bad)
        by = checks_root(f, obs)
        expect = Facts(f.size, f.sha256, str(f.root) if by and f.root is not None else None)
        actual = Facts(obs.size, obs.sha256, f"{ROOT_ALGORITHM}:{obs.root}" if by else None)
        if obs.size is None or (obs.sha256 is None and not by):
            if not snapshot:  # a folder entry we could not read (a dangling link in a local dir)
                mismatched.append(Mismatch(path, expect, actual))
            continue
        hashed += obs.size
        by_root += by
        by_sha += not by
        if not matches(f, obs):
            mismatched.append(Mismatch(path, expect, actual))
    return TargetReport(
        model=model, commit=commit, location=location, kind="snapshot" if snapshot else "folder",
        files_checked=len(observed), bytes_hashed=hashed, missing=tuple(missing), extra=tuple(extra),
        mismatched=tuple(mismatched), bad_links=tuple(bad_links), by_root=by_root,
        by_sha256=by_sha,
    )


def check_refs(repo: str, refs: Mapping[str, str | None], snapshots: Iterable[str]) -> tuple[BadRef, ...]:
    """Refs that are empty or name a commit with no snapshot (``hf cache ls`` rejects such a repo)."""
    have = set(snapshots)
    out = []
    for ref, commit in sorted(refs.items()):
        if not commit:
            out.append(BadRef(repo, ref, None, "empty-or-unreadable"))
        elif commit not in have:
            out.append(BadRef(repo, ref, commit, "no-snapshot"))
    return tuple(out)


def classify_partial(name: str, blobs: frozenset[str], partial_names: frozenset[str],
                     pinned_blobs: frozenset[str]) -> str:
    """Why a partial download file (``<blob>.incomplete`` or ``<blob>.incomplete.parts``) is there.

    ``blobs``: complete blob names in the same ``blobs/``; ``partial_names``: every file
    name there (to pair ``.parts`` with its ``.incomplete``); ``pinned_blobs``: blobs any pin
    of this repo expects.
    """
    base = name
    if base.endswith(".parts"):
        base = base[: -len(".parts")]
        if base not in partial_names:
            return ORPHAN_PARTS
    blob = base.removesuffix(INCOMPLETE)
    if blob in blobs:
        return BLOB_COMPLETE
    if blob not in pinned_blobs:
        return NOT_PINNED
    return RESUMABLE
