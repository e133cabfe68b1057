"""The engine executor of a pull: the plan's files that are not in place, fetched and verified.

The plain files of a fresh resolve are still on their own pool
(:mod:`qwen_fetch.ops.pull_plain`) while the engine runs; a plain file that no
source serves cancels the engine, and its own error is the one reported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from qwen_fetch.core.manifest import PinnedFile, RepoListing
from qwen_fetch.core.progress import ProgressSink
from qwen_fetch.core.pullplan import serves, split_fetch, unlisted_error
from qwen_fetch.net.jobs import EngineOptions, FetchJob, FetchOutcome
from qwen_fetch.net.location import FileLocation
from qwen_fetch.ops.pull_place import InPlace, plain_outcomes, promote
from qwen_fetch.ops.pull_plain import Locate, PlainFetch
from qwen_fetch.sources.chain import first_and_more
from qwen_fetch.store.placement import Layout
from qwen_fetch.store.space import bytes_still_needed, require_space

if TYPE_CHECKING:
    from qwen_fetch.net.pools import Pools


def locations(pf: PinnedFile, listings: Iterable[RepoListing], locate: Locate
              ) -> tuple[FileLocation | None, Callable[[], FileLocation | None]]:
    """The first source whose listing serves ``pf``, and a callable for the next (contacted only if called)."""
    def location(lst: RepoListing) -> FileLocation | None:
        return locate(lst, pf.path) if serves(lst.by_path().get(pf.path), pf) else None

    return first_and_more(iter(listings), location)


def materialise(layout: Layout, known: Sequence[PinnedFile], commit: str, revision: str,
                listings: Iterable[RepoListing], plain: PlainFetch | None, *, in_place: InPlace, locate: Locate,
                failures: Sequence[tuple[str, str]], pools: Pools, options: EngineOptions, progress: ProgressSink
                ) -> tuple[Path, list[FetchOutcome], int, tuple[PinnedFile, ...]]:
    """Get every file into place, verified; expose the snapshot last.

    ``known`` are the files whose sha256 is known (the engine fetches them);
    ``plain``, on a fresh pull, is still fetching the small git files — they are
    counted once it finishes.  Returns the target, the outcomes, how many files were
    already cached, and every file (sorted).
    """
    from qwen_fetch.net.engine import FetchCancelled, fetch_all

    layout.ensure()
    split = split_fetch(known, in_place.verified_digests(layout, known))
    jobs: list[FetchJob] = []
    unlisted: list[str] = []
    for f in split.fetch:
        layout.ensure_parent(f)
        first, more = locations(f, listings, locate)
        if first is None:
            unlisted.append(f.path)
            continue
        jobs.append(FetchJob(path=f.path, size=f.size, sha256=f.sha256, dest=layout.dest(f),
                             partial=layout.partial(f), lock=layout.lock(f), locations=(first,), more=more))
    if unlisted:
        raise unlisted_error(unlisted, failures)
    plain_bytes = plain.bytes if plain is not None else 0
    require_space(layout.local_dir if layout.local_dir is not None else layout.repo.blobs_dir,
                  plain_bytes + bytes_still_needed((j.partial, j.size) for j in jobs))
    cancel = threading.Event()
    if plain is not None:
        plain.on_failure(cancel.set)  # a plain file no source serves: stop the engine, report that
    progress.begin(sum(j.size for j in jobs) + plain_bytes, len(jobs) + (plain.count if plain is not None else 0))
    try:
        try:
            outcomes = fetch_all(jobs, options, progress, cancel=cancel, pools=pools) if jobs else []
        except FetchCancelled:
            if plain is not None and plain.failed:
                plain.files()  # raises the plain file's own error
            raise
        files: tuple[PinnedFile, ...] = tuple(known)
        written: list[FetchOutcome] = []
        reused = 0
        if plain is not None:
            files = plain.files()
            written, reused = plain_outcomes(plain, progress)
    finally:
        progress.end()
    target = promote(layout, known, outcomes, files, commit, revision)
    return target, written + list(outcomes), len(split.reuse) + reused, files
