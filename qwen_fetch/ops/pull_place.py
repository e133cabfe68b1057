"""What a pull finds in place, and how the verified files are laid out: the promotion executor.

Nothing is exposed before every file is verified: the snapshot links and the ref
(or, in a ``--local-dir``, the copies of repeated content) are written last, by
:meth:`~qwen_fetch.store.placement.Layout.finish`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from qwen_fetch.core.digests import Digest
from qwen_fetch.core.manifest import PinnedFile
from qwen_fetch.core.progress import ProgressSink
from qwen_fetch.net.jobs import FetchOutcome
from qwen_fetch.ops.pull_plain import PlainFetch
from qwen_fetch.store.placement import Layout, quarantine
from qwen_fetch.store.warm import CacheCheck, check_in_place, stamp_promoted


class InPlace:
    """The destinations this run found (or made) verified, or damaged: each is checked or hashed once."""

    def __init__(self, progress: ProgressSink, *, reverify: bool) -> None:
        self.progress = progress
        self.reverify = reverify  # hash every file, even one a verification stamp vouches for
        self.verified: set[Path] = set()
        self.damaged: set[Path] = set()  # found not to hold their pinned bytes, still in place
        self.trusted = 0  # cached files a stamp vouched for (not read)
        self.rehashed = 0  # cached files hashed by this run

    def check(self, layout: Layout, files: Sequence[PinnedFile], *, quarantine_bad: bool = True) -> CacheCheck:
        """Which files are in place and verified.  A damaged copy is removed (to be fetched again) unless
        ``quarantine_bad`` is false: before a listing has been checked against the pin, nothing changes."""
        todo = [f for f in files if layout.dest(f) not in self.verified and layout.dest(f) not in self.damaged]
        check = check_in_place(layout, todo, rehash=self.reverify)
        self.trusted += len(check.trusted)
        self.rehashed += len(check.rehashed)
        self.verified.update(layout.dest(f) for f in check.trusted + check.rehashed)
        self.damaged.update(layout.dest(f) for f in check.bad)
        bad = tuple(f for f in files if layout.dest(f) in self.damaged)
        if quarantine_bad:
            for f in bad:
                self.progress.note(f"{f.path}: cached copy does not match its pin; fetching it again")
                quarantine(layout.dest(f))
            self.damaged.difference_update(layout.dest(f) for f in bad)
        return replace(check, bad=bad)

    def verified_digests(self, layout: Layout, files: Sequence[PinnedFile]) -> set[Digest]:
        """Digests of the files in place and intact: vouched for by a stamp, or re-hashed (never trust bytes
        we did not verify); a damaged copy is removed and fetched again."""
        self.check(layout, files)
        return {f.digest for f in files if layout.dest(f) in self.verified}


def plain_outcomes(plain: PlainFetch, progress: ProgressSink) -> tuple[list[FetchOutcome], int]:
    """Outcomes of the plain files (each put in place, verified, as its fetch ended) and how many were
    cached already."""
    mine = plain.fetched_files()
    written: list[FetchOutcome] = []
    for f in mine:
        got = plain.results[f.path]
        if got.written:
            written.append(FetchOutcome(path=f.path, sha256=f.sha256, source=got.source,
                                        bytes_transferred=f.size, resumed_bytes=0, retries=0, reused=False))
        progress.file_done(str(f.path), "")
    return written, len(mine) - len(written)  # the rest was cached already (or shares a written blob)


def promote(layout: Layout, known: Sequence[PinnedFile], outcomes: Sequence[FetchOutcome],
            files: Sequence[PinnedFile], commit: str, revision: str) -> Path:
    """Stamp what the engine verified and promoted, then expose every file: the target folder."""
    by_path = {f.path: f for f in known}
    stamp_promoted(layout, [(by_path[x.path], x.promoted) for x in outcomes
                            if x.promoted is not None and x.path in by_path])
    # Every byte is verified: now (and only now) expose the snapshot.
    return layout.finish(files, commit, revision)
