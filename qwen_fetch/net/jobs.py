"""What the download engine is asked to do, and what it reports back (pure data)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qwen_fetch.paths import SafeRelPath
from qwen_fetch.sources.base import FileLocation


@dataclass(frozen=True)
class FetchJob:
    """Fetch one file whose size and sha256 are known in advance.

    The engine writes ``partial`` (and its part-state file beside it), checks
    size and sha256, then atomically renames ``partial`` to ``dest`` while
    holding the file lock ``lock``.  ``locations`` are tried in order: a file
    that fails, stalls or mismatches on one source is fetched from the next.
    """

    path: SafeRelPath
    size: int
    sha256: str
    dest: Path
    partial: Path
    lock: Path
    locations: tuple[FileLocation, ...]


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


@dataclass(frozen=True)
class EngineOptions:
    # Total concurrent HTTP connections across all files.  Behind a per-connection cap (a CDN's, a mirror's)
    # throughput is connections x cap until the client runs out of CPU; past that point more connections
    # only queue bytes in socket buffers.  On the 2-core bench machine with SHA-NI, under nginx's 20 MB/s
    # per connection, 40/48/56/64 gave 657/692/702/680 MB/s (16: 323, 32: 556), while a pull SIGKILLed
    # halfway and rerun fetched +0.7..1.1 % more with 48, +1.1..2.7 % with 56 and +3.2..6.5 % with 64: what
    # each connection's socket buffers held when it died.  48 x 20 MB/s is 7.7 Gbit/s, beyond most links;
    # raise it (--connections) for a lower per-connection cap on a faster link.  Unthrottled, fewer is
    # faster here (16: 715 MB/s, 64: 650).
    connections: int = 48
    part_size: int = 32 * 1024 * 1024  # ranges are split down to this size
    single_stream_below: int = 16 * 1024 * 1024  # smaller files: one request
    max_attempts: int = 8  # per range, per source, before falling back / giving up
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    stall_timeout: float = 20.0  # no bytes for this long: drop the connection, re-queue the range
    request_timeout: float = 30.0
    block_size: int = 1 << 20  # unit of the resume state's checksums (ranges are cut on blocks)
    # A block still arriving is written and its head journaled every this many bytes, so a killed pull loses
    # at most this much per connection (plus what the kernel held), not the block held in memory (~1 MiB per
    # connection with those waiting for the GIL).  64 connections in the (b) bench: rerun +5.0 % median
    # with whole blocks, +4.65 % with steps; the rest was socket buffers (see ``connections``).
    step_size: int = 256 << 10
    min_split: int = 2 << 20  # an idle connection steals the tail of a range only if both halves are this big
    # Near the end ranges are handed out in shrinking shares of what is left, never below this (a request
    # per 4 MiB costs one round trip per 0.2 s at 20 MB/s: cheap, and the connections finish together).
    tail_piece: int = 4 << 20
    steal_after: float = 2.0  # ... and only if that range's connection needs longer than this (s) to finish it
