"""The sources of one pull, contacted in priority order and only when needed.

``pull`` resolves the revision on the first source that answers (the primary);
the sources after it are *fallbacks*: each is contacted — its listing resolved —
only when some file needs it (the primary failed that file, or does not list
matching content), and then once for the whole pull.  A pull against a healthy
first source sends nothing to any other source.

:class:`LazyListings` is that sequence of listings: iterating it yields the
primary first, then resolves the next source when (and only if) the iteration
gets there.  Many threads iterate it at once (the small files fetched in the
background, the engine looking for a fallback), so each source is resolved at
most once, under its own lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from qwen_fetch.core.errors import QFError
from qwen_fetch.core.manifest import RepoListing
from qwen_fetch.sources.config import SourceConfig

T = TypeVar("T")
U = TypeVar("U")
Resolve = Callable[[SourceConfig], RepoListing]
OnFailure = Callable[[SourceConfig, QFError], None]


class LazyListings:
    """``primary`` and then, on demand, the listings of ``rest`` (in order); failed sources are skipped."""

    def __init__(self, primary: RepoListing, rest: Sequence[SourceConfig], resolve: Resolve,
                 on_failure: OnFailure) -> None:
        self.primary = primary
        self._rest = tuple(rest)
        self._resolve = resolve
        self._on_failure = on_failure
        self._locks = [threading.Lock() for _ in self._rest]
        self._done: list[bool] = [False] * len(self._rest)
        self._results: list[RepoListing | None] = [None] * len(self._rest)

    def __iter__(self) -> Iterator[RepoListing]:
        yield self.primary
        for i in range(len(self._rest)):
            listing = self._get(i)
            if listing is not None:
                yield listing

    def _get(self, i: int) -> RepoListing | None:
        with self._locks[i]:
            if not self._done[i]:
                sc = self._rest[i]
                try:
                    self._results[i] = self._resolve(sc)
                except QFError as exc:
                    self._on_failure(sc, exc)
                self._done[i] = True
            return self._results[i]

    def contacted(self) -> list[RepoListing]:
        """The fallback listings resolved so far (never contacts a source)."""
        return [r for done, r in zip(self._done, self._results) if done and r is not None]


def first_and_more(candidates: Iterator[T], pick: Callable[[T], U | None]) -> tuple[U | None, Callable[[], U | None]]:
    """Split a lazy search: the first match now, and a thread-safe callable that continues it later."""
    lock = threading.Lock()

    def more() -> U | None:
        with lock:
            for c in candidates:
                hit = pick(c)
                if hit is not None:
                    return hit
            return None

    return more(), more
