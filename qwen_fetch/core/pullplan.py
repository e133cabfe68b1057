"""Pull as a plan (pure): which pin governs, whether a listing honours it, what to reuse, fetch or skip.

As with gc (:mod:`qwen_fetch.core.gc`, carried out by :mod:`qwen_fetch.store.gc_disk`),
the decisions are made here on frozen data and carried out elsewhere:
:mod:`qwen_fetch.ops.pull` resolves the listings and orchestrates,
:mod:`qwen_fetch.ops.pull_plain` hashes the plain git files of a fresh resolve,
:mod:`qwen_fetch.ops.pull_fetch` runs the engine and :mod:`qwen_fetch.ops.pull_place`
lays the verified files out.

* With a pin, the pinned commit is asked for and the primary listing must honour the
  pin: every listed file allowlisted, with the pinned size and digest (all-or-nothing,
  :func:`plan_pinned`, exit 3).
* Without one, the selected files are pinned from the listing; those listed without a
  sha256 (plain git files) are fetched and hashed first (:func:`plan_fresh`).
* Then the files already in place and verified are reused and the rest fetched, each
  content once (:func:`split_fetch`), from sources whose listing serves it (:func:`serves`).

Every comparison of a digest with its pin goes through :meth:`PinnedFile.matches` or
:func:`qwen_fetch.core.digests.digest_matches`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from qwen_fetch.core.digests import Digest, digest_matches
from qwen_fetch.core.errors import IntegrityError, Ref, UsageError
from qwen_fetch.core.lockfile import Lock
from qwen_fetch.core.manifest import Pin, PinnedFile, RemoteFile, RepoListing, SourceRevision
from qwen_fetch.core.pins import check_against_pin, content_matches, known_plain_contents, matches, pick_pin

MAX_PLAIN_FILE = 64 * 1024 * 1024  # git (non-LFS) files are small; refuse a huge one
MAX_LISTED_PROBLEMS = 50


@dataclass(frozen=True)
class PullRequest:
    """What was asked for, as far as it decides the plan."""

    model_id: str
    revision: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    update: bool = False
    frozen: bool = False

    def selects(self, path: str) -> bool:
        """``--include`` / ``--exclude``, with ``hf download``'s semantics."""
        return matches(path, self.include, self.exclude)

    def wanted(self, pin: Pin) -> list[PinnedFile]:
        """The pinned files this pull is about."""
        return [f for f in pin.files if self.selects(f.path)]


def choose_pin(lock: Lock, req: PullRequest) -> Pin | None:
    """The pin that governs this pull (``None``: resolve afresh and write one); raises when the request
    contradicts the lock."""
    return pick_pin(lock, req.model_id, req.revision, req.update, req.frozen)


def check_pinned_commit(pin: Pin, source: str, commit: str, model_id: str, hint: str) -> None:
    """The pin's own source must resolve the pinned revision to the pinned commit (``hint``: what the
    source's kind says such a move means: a branch moved on a hub addressed by name, or a stale mirror)."""
    if source == pin.source and commit != pin.commit:
        raise IntegrityError(f"source {source!r} resolved {model_id} to commit {commit}, but the lock pins {pin.commit}",
                             hint=hint, reference=Ref.COMMIT_MISMATCH)


def is_optional(path: str, globs: Sequence[str]) -> bool:
    """Is ``path`` among a source's optional files (published by that hub only, e.g. ModelScope's
    ``configuration.json``)?"""
    return any(fnmatch.fnmatchcase(path, g) for g in globs)


def serves(rf: RemoteFile | None, pf: PinnedFile) -> bool:
    """May the source that listed ``rf`` serve ``pf``'s content?  (Its bytes are verified anyway.)"""
    return rf is not None and content_matches(rf, pf)


@dataclass(frozen=True)
class PullPlan:
    """What one pull fetches and pins: decided before any file byte is transferred."""

    revision: str
    commit: str
    source: str  # the primary: the source whose listing the plan was checked against
    pin: Pin | None  # the pin that governs; None: a fresh resolve, which writes a pin
    known: tuple[PinnedFile, ...]  # files whose digest is known (pinned, or listed with one), by path
    to_hash: tuple[RemoteFile, ...] = ()  # fresh resolve: listed without a sha256, so fetched to be hashed
    listed: tuple[RemoteFile, ...] = ()  # fresh resolve: every selected file as listed, in listing order
    skipped: tuple[str, ...] = ()  # extras a source lists beside the pin, and optional files nobody serves

    @property
    def hash_bytes(self) -> int:
        return sum(rf.size for rf in self.to_hash)


def plan_pinned(req: PullRequest, pin: Pin, primary: RepoListing, listings: Iterable[RepoListing], *,
                primary_optional: Sequence[str], pin_optional: Sequence[str]) -> PullPlan:
    """The plan under ``pin``, after checking the primary listing against it (:class:`IntegrityError`
    ``not-allowlisted`` listing every problem; nothing is fetched then).

    ``primary_optional``: the optional files of the primary source when it is not the pin's own
    (listed beside the pin, they are skipped, not a failure).  ``pin_optional``: those of the pin's
    source; a wanted one that no listing in ``listings`` serves is skipped.  ``listings`` is
    iterated only for those files, and only as far as the first that serves each.
    """
    wanted = req.wanted(pin)
    problems, skipped = check_against_pin(primary, pin, wanted, primary_optional)
    if problems:
        more = len(problems) - MAX_LISTED_PROBLEMS
        raise IntegrityError(f"source {primary.source!r} does not match the lock for {req.model_id}",
                             context=problems[:MAX_LISTED_PROBLEMS] + ([f"... and {more} more"] if more > 0 else []),
                             hint="nothing was downloaded; if the change is intended run with --update and review "
                                  "the lockfile diff",
                             reference=Ref.NOT_ALLOWLISTED)
    unavailable = [f for f in wanted if is_optional(f.path, pin_optional)
                   and not any(serves(lst.by_path().get(f.path), f) for lst in listings)]
    return PullPlan(revision=pin.revision, commit=pin.commit, source=primary.source, pin=pin,
                    known=tuple(f for f in wanted if f not in unavailable),
                    skipped=tuple(sorted(set(skipped) | {f.path for f in unavailable})))


def plan_fresh(req: PullRequest, primary: RepoListing, revision: str, earlier: Iterable[Pin]) -> PullPlan:
    """The plan of a resolve without a pin: the selected files of ``primary``, to be pinned.

    Files an ``earlier`` pin already hashed (same git blob id and size) take that pin's sha256,
    so ``--update`` fetches only what changed; the others without a sha256 are hashed first.
    """
    listed = [rf for rf in primary.files if req.selects(rf.path)]
    listed = known_plain_contents(listed, earlier)
    if not listed:
        raise UsageError(f"no file of {req.model_id}@{revision} matches --include/--exclude",
                         hint="check the globs (they match repository paths, e.g. '*.json')")
    to_hash = [rf for rf in listed if needs_hashing(rf)]
    too_big = [rf.path for rf in to_hash if rf.size > MAX_PLAIN_FILE]
    if too_big:
        raise IntegrityError(f"{too_big[0]}: a {MAX_PLAIN_FILE >> 20} MiB+ file without a sha256 in the hub metadata",
                             hint="the mirror is broken or hostile; try another --source")
    hashed = {rf.path for rf in to_hash}
    known = sorted((PinnedFile(path=rf.path, size=rf.size, sha256=rf.sha256, lfs=rf.lfs, git_oid=rf.git_oid)
                    for rf in listed if rf.path not in hashed and rf.sha256 is not None), key=lambda f: f.path)
    return PullPlan(revision=revision, commit=primary.commit, source=primary.source, pin=None,
                    known=tuple(known), to_hash=tuple(to_hash), listed=tuple(listed))


def needs_hashing(rf: RemoteFile) -> bool:
    """Must ``rf``'s bytes be read before it can be pinned?  When no sha256 is listed, and for a plain
    file listed without its git blob id (which would name its cache entry)."""
    return rf.sha256 is None or (not rf.lfs and rf.git_oid is None)


def hashed_pin(rf: RemoteFile, sha256: str, git_oid: str | None) -> PinnedFile:
    """The pin of a file hashed on its way in (``git_oid``: the blob id of the bytes received)."""
    return PinnedFile(path=rf.path, size=rf.size, sha256=sha256, lfs=rf.lfs,
                      git_oid=rf.git_oid or (None if rf.lfs else git_oid))


def plain_mismatch(rf: RemoteFile, size: int, sha256: str, git_oid: str | None) -> str | None:
    """Why ``size`` bytes hashing to ``sha256`` / ``git_oid`` cannot be the listed ``rf``, or None."""
    if size != rf.size:
        return f"got {size} bytes, listed {rf.size}"
    if rf.git_oid is not None and git_oid != rf.git_oid:
        return f"git blob id {git_oid} != listed {rf.git_oid}"
    if rf.digest is not None and not digest_matches(rf.digest, sha256):
        return f"sha256 {sha256} != listed {rf.sha256}"
    return None


@dataclass(frozen=True)
class FetchSplit:
    """The known files by what a pull does with them."""

    reuse: tuple[PinnedFile, ...]  # in place and verified (or the same content as such a file)
    fetch: tuple[PinnedFile, ...]  # one per content: ``Layout.finish`` puts it at every other path


def split_fetch(files: Sequence[PinnedFile], in_place: Collection[Digest]) -> FetchSplit:
    """Reuse every file whose content is in place (``in_place``: the digests found verified), fetch the
    rest once per content: two jobs for one digest would share one partial file."""
    reuse = tuple(f for f in files if f.digest in in_place)
    fetch: list[PinnedFile] = []
    seen: set[Digest] = set()
    for f in files:
        if f.digest in in_place or f.digest in seen:
            continue
        seen.add(f.digest)
        fetch.append(f)
    return FetchSplit(reuse=reuse, fetch=tuple(fetch))


def unlisted_error(paths: Iterable[str], failures: Sequence[tuple[str, str]]) -> IntegrityError:
    """No source lists these pinned files with their content: the pull cannot honour the pin."""
    return IntegrityError(f"no source lists pinned file(s) with matching content: {', '.join(sorted(paths)[:5])}",
                          context=[f"{n}: {r}" for n, r in failures],
                          hint="the sources changed since the lock was written; check --source or update the pin")


def with_roots(files: Sequence[PinnedFile], fetched: Mapping[str, Digest], earlier: Iterable[Pin]
               ) -> tuple[PinnedFile, ...]:
    """``files`` with the chunk roots this pull computed over their verified bytes (``fetched``: sha256 ->
    root), or an earlier pin recorded for the same content (so a file not fetched again keeps its root)."""
    roots = {(p.sha256, p.size): p.root for pin in earlier for p in pin.files if p.root is not None}
    return tuple(replace(f, root=fetched.get(f.sha256) or roots.get((f.sha256, f.size))) if f.root is None else f
                 for f in files)


def new_pin(plan: PullPlan, files: Sequence[PinnedFile], fallbacks: Iterable[RepoListing], previous: Pin | None,
            req: PullRequest) -> Pin:
    """The pin a fresh resolve writes: ``files`` at the plan's commit, with how every other source
    contacted names it.  A partial pull (``--include``/``--exclude``) of the commit ``previous``
    already pins keeps that pin's other files."""
    pin = Pin(revision=plan.revision, commit=plan.commit, source=plan.source, files=tuple(files),
              sources=tuple(sorted((lst.source, SourceRevision(lst.revision, lst.commit))
                                   for lst in fallbacks if lst.commit != plan.commit)))
    if (req.include or req.exclude) and previous is not None and previous.commit == plan.commit:
        merged = {f.path: f for f in previous.files}
        merged.update({f.path: f for f in files})
        pin = replace(pin, files=tuple(sorted(merged.values(), key=lambda f: f.path)))
    return pin
