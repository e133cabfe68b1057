"""The pin rules of ``pull`` (pure): which pin governs, and whether a listing honours it."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import replace

from qwen_fetch.core.digests import digest_matches
from qwen_fetch.core.errors import IntegrityError, Ref, UsageError
from qwen_fetch.core.lockfile import Lock
from qwen_fetch.core.manifest import Pin, PinnedFile, RemoteFile, RepoListing, digest_size_conflicts


def matches(path: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """``hf download`` semantics: keep if any include matches (or none given) and no exclude matches."""
    def m(pats: Sequence[str]) -> bool:
        return any(fnmatch.fnmatchcase(path, p) or (p.endswith("/") and path.startswith(p)) for p in pats)

    return (not include or m(include)) and not m(exclude)


def pick_pin(lock: Lock, model_id: str, revision: str | None, update: bool, frozen: bool) -> Pin | None:
    """Which pin governs this pull; raise when the request contradicts the lock."""
    pins = lock.pins(model_id)
    if not pins:
        if frozen:
            raise IntegrityError(f"{model_id} has no pin in the lockfile and --frozen forbids adding one",
                                 hint=f"run `qwen-fetch lock {model_id}` and commit the lockfile",
                                 reference=Ref.MISSING_PIN)
        return None
    if update:
        if frozen:
            raise UsageError("--update and --frozen contradict each other", hint="drop one of them")
        return None
    if revision is None:
        return pins[0]
    for p in pins:  # current first; older pins allow a pinned rollback
        if revision in (p.revision, p.commit) or (len(revision) >= 7 and p.commit.startswith(revision)):
            return p
    raise IntegrityError(
        f"{model_id} is locked to {pins[0].revision}@{pins[0].commit[:12]}; --revision {revision} is not pinned",
        hint=f"to move the pin run `qwen-fetch pull {model_id} --revision {revision} --update`",
        reference=Ref.REVISION_NOT_PINNED)


def check_against_pin(listing: RepoListing, pin: Pin, wanted: Iterable[PinnedFile], optional: Sequence[str]
                      ) -> tuple[list[str], list[str]]:
    """Compare a source's listing with the pin.  Returns (problems, skipped optional extras)."""
    pinned = pin.by_path()
    wanted_paths = {f.path for f in wanted}
    # One digest, two sizes between the pin and the listing: content is fetched once per sha256,
    # so one of the two paths would be given bytes of the wrong size.
    problems: list[str] = digest_size_conflicts([(f.path, f.sha256, f.size) for f in pin.files]
                                                + [(rf.path, rf.sha256, rf.size) for rf in listing.files])
    skipped: list[str] = []
    for rf in listing.files:
        pf = pinned.get(rf.path)
        if pf is None:
            if any(fnmatch.fnmatchcase(rf.path, g) for g in optional):
                skipped.append(rf.path)
            else:
                problems.append(f"{rf.path}: not in the lock (not allowlisted)")
            continue
        if rf.path not in wanted_paths:
            continue
        if any(fnmatch.fnmatchcase(rf.path, g) for g in optional):
            continue  # a source's own variant (e.g. ModelScope's model card): other sources serve the pinned bytes
        if rf.size != pf.size:
            problems.append(f"{rf.path}: size {rf.size} listed, {pf.size} pinned")
        elif rf.digest is not None and not digest_matches(pf.digest, rf.digest):
            problems.append(f"{rf.path}: sha256 {rf.sha256} listed, {pf.sha256} pinned")
    return sorted(problems), sorted(skipped)


def content_matches(rf: RemoteFile, pf: PinnedFile) -> bool:
    """May this source's file serve this pin?  (Bytes are verified anyway.)"""
    if rf.size != pf.size:
        return False
    if rf.digest is not None:
        return digest_matches(pf.digest, rf.digest)
    if rf.git_oid is not None and pf.git_oid is not None:
        return rf.git_oid == pf.git_oid
    return True


def known_plain_contents(files: Sequence[RemoteFile], pins: Iterable[Pin]) -> list[RemoteFile]:
    """Fill in the sha256 of plain git files whose content an earlier pin already hashed.

    A hub lists no sha256 for plain (non-LFS) files, only their git blob id, so a fresh
    resolve downloads every one to hash it.  A blob id names the content (the pin was
    written after checking both ids against the bytes), so a file listed with the same
    blob id and size as a pinned one has that pin's sha256: ``pull --update`` then fetches
    only the files that changed.  The bytes are still verified against that sha256
    wherever they come from (the cache, or the hub when the blob is gone).
    """
    known = {(f.git_oid, f.size): f.sha256 for pin in pins for f in pin.files if f.git_oid and not f.lfs}
    out = []
    for rf in files:
        sha = known.get((rf.git_oid, rf.size)) if rf.sha256 is None and not rf.lfs and rf.git_oid else None
        out.append(replace(rf, sha256=sha) if sha else rf)
    return out
