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
    # Total concurrent HTTP connections across all files.  64: what aria2c -x16 opens for the four shards of
    # a Qwen3-VL-8B pull.  Behind a per-connection cap (a CDN's, a mirror's) throughput is connections x cap,
    # and on the 2-core bench machine with SHA-NI, under nginx's 20 MB/s per connection, 16/32/48/64 gave
    # 318/529/603/680 MB/s; unthrottled, 64 costs ~10 % against 16 (more threads on 2 cores).  Since the
    # tail is trimmed instead of stolen, more connections no longer abandon bytes (server sent +0.2 %).
    connections: int = 64
    part_size: int = 32 * 1024 * 1024  # ranges are split down to this size
    single_stream_below: int = 16 * 1024 * 1024  # smaller files: one request
    max_attempts: int = 8  # per range, per source, before falling back / giving up
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    stall_timeout: float = 20.0  # no bytes for this long: drop the connection, re-queue the range
    request_timeout: float = 30.0
    block_size: int = 1 << 20  # unit of the resume state's checksums (ranges are cut on blocks)
    # A block still arriving is written and its head journaled every this many bytes, so a killed pull loses
    # at most this much per connection (plus what the kernel held), not the whole block in memory.  With
    # whole blocks only, a SIGKILLed (b) bench pull lost ~1.5 MB per connection (~4.5 % of the rerun).
    step_size: int = 256 << 10
    min_split: int = 2 << 20  # an idle connection steals the tail of a range only if both halves are this big
    # Near the end ranges are handed out in shrinking shares of what is left, never below this (a request
    # per 4 MiB costs one round trip per 0.2 s at 20 MB/s: cheap, and the connections finish together).
    tail_piece: int = 4 << 20
    steal_after: float = 2.0  # ... and only if that range's connection needs longer than this (s) to finish it
