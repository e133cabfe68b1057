"""The plain git files of a fresh resolve, fetched and hashed in the background so that they can be pinned.

The hub lists no sha256 for them, so their bytes are needed before they can be
pinned; fetching them while the engine already moves the LFS shards (whose
sha256 is listed) keeps a slow first request — a 7 MB tokenizer.json behind
a 20 MB/s-per-connection CDN — from delaying everything else.  Each streams to
disk (:mod:`qwen_fetch.net.plainfile`) and, once its bytes match the listing, is
put in place under its blob's lock (``layout``; ``None`` for ``lock``, which
only hashes), so memory never holds a whole file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from qwen_fetch.core.errors import IntegrityError, Ref, SourceError
from qwen_fetch.core.manifest import PinnedFile, RemoteFile, RepoListing
from qwen_fetch.core.progress import ProgressSink
from qwen_fetch.core.pullplan import PullPlan, hashed_pin, plain_mismatch
from qwen_fetch.net.jobs import SMALL_FETCHES, EngineOptions
from qwen_fetch.net.location import FileLocation
from qwen_fetch.net.plainfile import FetchedPlain, PlainSink
from qwen_fetch.store.placement import Layout

if TYPE_CHECKING:
    from qwen_fetch.net.pools import Pools

Locate = Callable[[RepoListing, str], FileLocation]  # a listing and a path -> where to GET it


def fetch_plain(listings: Iterable[RepoListing], rf: RemoteFile, folder: Path | None, locate: Locate,
                pools: Pools, options: EngineOptions, progress: ProgressSink) -> tuple[PlainSink, str]:
    """Download a small git file from the first source that serves matching bytes: an open sink (an
    unnamed file in ``folder``, hashed on the way, that the caller closes) and the source's name.

    Each source gets the engine's retry policy; the next source is contacted only
    when this one failed.  Wrong bytes anywhere make it an integrity error (exit 3);
    sources that could not serve at all (HTTP errors, timeouts) a source error (exit 4).
    """
    from qwen_fetch.net.smallget import SmallGetError, get_small

    errors: list[str] = []
    wrong_bytes = False
    sink = PlainSink(folder, rf.size)
    try:
        for lst in listings:
            other = lst.by_path().get(rf.path)
            if other is None or other.size != rf.size:
                continue
            try:
                get_small(pools, locate(lst, rf.path), rf.size, options, sink, note=progress.note)
            except SmallGetError as exc:
                errors.append(f"{lst.source}: {exc.reason}")
                wrong_bytes = wrong_bytes or exc.integrity
                continue
            problem = plain_mismatch(rf, sink.written, sink.sha256, sink.git_oid)
            if problem is not None:
                errors.append(f"{lst.source}: {problem}")
                wrong_bytes = True
                continue
            progress.advance(sink.written)
            return sink, lst.source
    except BaseException:
        sink.close()
        raise
    sink.close()
    if wrong_bytes:
        raise IntegrityError(f"{rf.path}: no source served bytes matching its listing", context=errors,
                             hint="the mirror is broken or hostile; try another --source")
    raise SourceError(f"{rf.path} could not be fetched from any source", context=errors, reference=Ref.FETCH_FAILED,
                      hint="the sources may be down or overloaded: rerun later, or add another source in "
                           "mirrors.yaml / pick one with --source")


class PlainFetch:
    """The plan's files to hash, fetched on a pool of their own while the engine runs."""

    def __init__(self, plan: PullPlan, listings: Iterable[RepoListing], locate: Locate, pools: Pools,
                 options: EngineOptions, progress: ProgressSink, layout: Layout | None) -> None:
        self._plan = plan
        self._need = {rf.path for rf in plan.to_hash}
        self.bytes = plan.hash_bytes
        self.count = len(plan.to_hash)
        self.results: dict[str, FetchedPlain] = {}
        self._files: tuple[PinnedFile, ...] | None = None
        self._listings, self._locate, self._pools = listings, locate, pools
        self._options, self._progress = options, progress
        self._layout = layout
        if layout is not None:
            layout.ensure()  # the sinks live in the folder their blobs go to
        self._ex = ThreadPoolExecutor(max_workers=SMALL_FETCHES, thread_name_prefix="qwen-fetch-plain")
        self._futures = {rf.path: self._ex.submit(self._fetch, rf) for rf in plan.to_hash}
        self._failed = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        for fut in self._futures.values():
            fut.add_done_callback(self._done)

    def _fetch(self, rf: RemoteFile) -> FetchedPlain:
        """Fetch and verify one file; put it in place at once (no open file waits for the end of the pull)."""
        folder = self._layout.tmp_dir if self._layout is not None else None
        sink, source = fetch_plain(self._listings, rf, folder, self._locate, self._pools, self._options,
                                   self._progress)
        try:
            pf = hashed_pin(rf, sink.sha256, sink.git_oid)
            written = self._layout.place_plain(pf, sink) if self._layout is not None else False
            return FetchedPlain(pf, source, written)
        finally:
            sink.close()

    def _done(self, fut: Future[FetchedPlain]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            with self._lock:
                self._failed.set()
                callbacks = list(self._callbacks)
            for cb in callbacks:
                cb()

    def on_failure(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._callbacks.append(callback)
            failed = self._failed.is_set()
        if failed:
            callback()

    @property
    def failed(self) -> bool:
        return self._failed.is_set()

    def files(self) -> tuple[PinnedFile, ...]:
        """Every file of the plan, pinned (waits for the fetches; raises the first failure in listing order)."""
        if self._files is not None:
            return self._files
        pinned = list(self._plan.known)
        for rf in self._plan.listed:
            if rf.path not in self._need:
                continue
            got = self._futures[rf.path].result()
            self.results[rf.path] = got
            pinned.append(got.pinned)
        self._files = tuple(sorted(pinned, key=lambda f: f.path))
        return self._files

    def fetched_files(self) -> list[PinnedFile]:
        return [f for f in self.files() if f.path in self._need]

    def close(self) -> None:
        self._ex.shutdown(wait=True, cancel_futures=True)
