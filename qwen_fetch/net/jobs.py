"""What the download engine is asked to do, and what it reports back (pure data)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from qwen_fetch.core.digests import Digest
from qwen_fetch.core.paths import SafeRelPath
from qwen_fetch.net.deadline import DEFAULT_MIN_RATE, DEFAULT_RATE_WINDOW, DEFAULT_TIMEOUT, Deadlines
from qwen_fetch.net.location import FileLocation


@dataclass(frozen=True)
class FetchJob:
    """Fetch one file whose size and sha256 are known in advance.

    The engine writes ``partial`` (and its part-state file beside it), checks
    size and sha256, then atomically renames ``partial`` to ``dest`` while
    holding the file lock ``lock``.  ``locations`` are tried in order: a file
    that fails, stalls or mismatches on one source is fetched from the next.
    Past the last of them the engine asks ``more`` (when given) for another
    location, so a further source is contacted only once this file needs it;
    ``more`` is called outside the scheduler's lock and returns None when no
    source is left.
    """

    path: SafeRelPath
    size: int
    sha256: str
    dest: Path
    partial: Path
    lock: Path
    locations: tuple[FileLocation, ...]
    more: Callable[[], FileLocation | None] | None = None


@dataclass(frozen=True)
class FetchOutcome:
    path: SafeRelPath
    sha256: str
    source: str  # the source that served the verified bytes ("" when reused)
    bytes_transferred: int  # body bytes received over the network for this file, all attempts
    resumed_bytes: int  # bytes found valid on disk from an earlier run
    retries: int
    reused: bool  # dest already existed (another process or an earlier run finished it)
    failed_sources: tuple[tuple[str, str], ...] = ()  # (source, reason) tried before the one that served
    promoted: os.stat_result | None = None  # fstat right after this run renamed it into place
    root: Digest | None = None  # the chunk root of the verified bytes (files of more than one chunk)


CONNECTIONS_PER_CPU = 24
MAX_DEFAULT_CONNECTIONS = 64
# Small files a fresh pull fetches beside the engine (their sha256 is unknown until their bytes are in).
SMALL_FETCHES = 8


def default_connections(cpus: int | None = None) -> int:
    """24 connections per CPU this process may run on, at most 64 (48 on 2 cores, 64 from 3 up).

    Behind a per-connection cap (a CDN's, a mirror's) throughput is connections x cap until the client runs
    out of CPU; past that point more connections only queue bytes in socket buffers, which a killed pull
    then has to fetch again.  Behind a 20 MB/s per-connection cap, 2 cores saturate before 64 connections
    while more cores still gain from 64 (``bench/results/design-figures.md``).  64 x 20 MB/s is 10 Gbit/s;
    ``--connections`` goes higher for a lower per-connection cap on a faster link.
    """
    if cpus is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_CONNECTIONS, CONNECTIONS_PER_CPU * cpus))


def pool_size(connections: int) -> int:
    """Idle connections kept per origin: one per engine connection plus the small-file fetches beside them,
    so every connection a pull has open can go back to the pool."""
    return max(1, connections) + SMALL_FETCHES


@dataclass(frozen=True)
class EngineOptions:
    # Total concurrent HTTP connections across all files (see ``default_connections``).
    connections: int = field(default_factory=default_connections)
    part_size: int = 32 * 1024 * 1024  # ranges are split down to this size
    single_stream_below: int = 16 * 1024 * 1024  # smaller files: one request
    max_attempts: int = 8  # per range, per source, before falling back / giving up
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    # No response headers, or no body bytes, for this long: drop the connection, re-queue the range.
    stall_timeout: float = DEFAULT_TIMEOUT
    request_timeout: float = DEFAULT_TIMEOUT  # connect (at most 10 s) and API calls
    # A body slower than this (bytes/s, averaged over ``rate_window`` seconds) is dropped like a stalled one;
    # a source that drips a byte now and then would otherwise reset the stall timeout forever.
    min_rate: int = DEFAULT_MIN_RATE
    rate_window: float = DEFAULT_RATE_WINDOW
    max_slow: int = 2  # stalled or too-slow responses in a row for one range before the file leaves the source
    block_size: int = 1 << 20  # unit of the resume state's checksums (ranges are cut on blocks)
    # A block still arriving is written and its head journaled every this many bytes, so a killed pull loses
    # at most this much per connection (plus what the kernel held), not the block held in memory (~1 MiB per
    # connection with those waiting for the GIL).  The rest of what a killed pull loses is socket buffers
    # (see ``connections``; figures in ``bench/results/design-figures.md``).
    step_size: int = 256 << 10
    min_split: int = 2 << 20  # an idle connection steals the tail of a range only if both halves are this big
    # Near the end ranges are handed out in shrinking shares of what is left, never below this (a request
    # per 4 MiB costs one round trip per 0.2 s at 20 MB/s: cheap, and the connections finish together).
    tail_piece: int = 4 << 20
    steal_after: float = 2.0  # ... and only if that range's connection needs longer than this (s) to finish it
    # Compute each big file's chunk root (core.digests) from the bytes its sha256 is fed, on a second core, so
    # the lock can record it and ``verify`` check it on every core (figures: bench/results/many-cores.md).
    roots: bool = True

    @property
    def deadlines(self) -> Deadlines:
        return Deadlines(timeout=self.stall_timeout, min_rate=self.min_rate, window=self.rate_window)

    @classmethod
    def from_deadlines(cls, d: Deadlines, connections: int | None = None) -> EngineOptions:
        """Default options with the timeouts and minimum rate of ``d`` (and ``connections`` if given)."""
        base = cls() if connections is None else cls(connections=connections)
        return replace(base, stall_timeout=d.timeout, request_timeout=d.timeout, min_rate=d.min_rate,
                       rate_window=d.window)
