"""One file being downloaded: its partial file, block map, running sha256 and lock.

All mutable fields are guarded by the scheduler's lock, except the partial
file's writes (``wlock``) and the incremental hash (``hash_lock``).  ``gen``
(generation) is bumped whenever the file changes course — a fallback to the
next source, a restart after an ETag or sha256 change, a switch to a single
stream — so writes and block marks from connections of an older generation
are dropped instead of landing on top of newer bytes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from dataclasses import dataclass, field
from enum import Enum

import filelock

from qwen_fetch.net.jobs import FetchJob
from qwen_fetch.net.partstate import (BadState, PartState, block_sum, journal_line, load_state, save_state,
                                      state_path, verify_partial)
from qwen_fetch.net.ranges import block_count, block_span
from qwen_fetch.sources.base import FileLocation


# Writes go to the page cache in pieces this long: the kernel's copy of a 1 MiB write evicts its own
# source from a 1 MiB L2 cache half-way, and on the bench VM 1 MiB pwrites cost twice the CPU of 256 KiB
# ones (14 % of a pull's CPU was that copy).
WRITE_PIECE = 256 * 1024


class Phase(Enum):
    WAITING = "waiting"  # lock not yet held
    ACTIVE = "active"
    DONE = "done"
    FAILED = "failed"


class DiskFull(Exception):
    """ENOSPC while writing a partial file."""


@dataclass
class FileTask:
    job: FetchJob
    index: int
    block_size: int
    phase: Phase = Phase.WAITING
    lock: filelock.FileLock | None = None
    fd: int = -1
    journal_fd: int = -1  # append-only handle on the state file
    journal_lines: int = 0  # blocks journaled since the last snapshot
    gen: int = 0
    loc_index: int = 0
    sums: list[int | None] = field(default_factory=list)
    done_count: int = 0
    hashed: int = 0
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    hash_buf: bytearray | None = None  # reused read-back buffer (under hash_lock)
    flushed: int = 0  # bytes before this offset were handed to writeback
    etag: str | None = None
    etag_source: str = ""
    stream: bool = False  # the source ignores Range: one connection reads the whole body
    dirty: bool = False
    bytes_transferred: int = 0
    resumed_bytes: int = 0
    retries: int = 0
    reused: bool = False
    source: str = ""
    failed_sources: list[tuple[str, str]] = field(default_factory=list)
    integrity_failure: bool = False  # the last source to fail served the wrong bytes
    wlock: threading.Lock = field(default_factory=threading.Lock)
    hash_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def nblocks(self) -> int:
        return block_count(self.job.size, self.block_size)

    @property
    def location(self) -> FileLocation:
        return self.job.locations[self.loc_index]

    def span(self, block: int) -> tuple[int, int]:
        return block_span(block, self.job.size, self.block_size)

    def missing_bytes(self) -> int:
        return sum(e - s for i, (s, e) in enumerate(map(self.span, range(self.nblocks))) if self.sums[i] is None)

    # -- lock and resume (coordinator thread) ---------------------------------
    def try_lock(self) -> bool:
        self.job.lock.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(self.job.lock))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            return False
        self.lock = lock
        return True

    def release(self) -> None:
        with self.wlock:  # a late write from a stopping worker must not hit a reused fd number
            self.release_files()
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def open_partial(self) -> list[str]:
        """Open (or create) the partial file and recover what an earlier run left; returns notes."""
        notes: list[str] = []
        job = self.job
        job.partial.parent.mkdir(parents=True, exist_ok=True)
        try:
            state = load_state(state_path(job.partial), size=job.size, sha256=job.sha256,
                               block_size=self.block_size)
        except BadState as exc:
            notes.append(f"{job.path}: discarding resume state ({exc})")
            state = None
        self.fd = os.open(job.partial, os.O_RDWR | os.O_CREAT, 0o644)
        self.sums = [None] * self.nblocks
        if state is None:
            os.ftruncate(self.fd, 0)
            self.dirty = True
            return notes
        v = verify_partial(self.fd, state)
        if v.bad_blocks:
            notes.append(f"{job.path}: {v.bad_blocks} block(s) of the partial file were missing or damaged;"
                         " fetching them again")
        if os.fstat(self.fd).st_size > job.size:
            os.ftruncate(self.fd, job.size)
        self.sums, self.hasher, self.hashed = v.sums, v.hasher, v.hashed_blocks
        self.done_count = sum(c is not None for c in self.sums)
        self.resumed_bytes = job.size - self.missing_bytes()
        self.etag, self.etag_source = state.etag, state.source
        self.dirty = True  # start a fresh snapshot + journal at once
        return notes

    def snapshot(self) -> PartState:
        return PartState(size=self.job.size, sha256=self.job.sha256, block_size=self.block_size,
                         sums=tuple(self.sums), source=self.etag_source, etag=self.etag)

    def save(self, cond: threading.Condition) -> None:
        """Compact the resume state into a fresh snapshot, unless the file was promoted or closed meanwhile."""
        with self.wlock:  # no block can be journaled between the snapshot and the new journal handle
            if self.fd < 0:
                return
            with cond:
                state = self.snapshot()
                self.dirty = False
            self._close_journal()
            self.journal_fd = save_state(state_path(self.job.partial), state)
            self.journal_lines = 0

    def _close_journal(self) -> None:
        if self.journal_fd >= 0:
            os.close(self.journal_fd)
            self.journal_fd = -1

    def release_files(self) -> None:
        """Close the partial and the journal (caller holds ``wlock``)."""
        self.hash_buf = None
        self._close_journal()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def forget(self) -> int:
        """Drop all progress (the bytes are known bad or belong to another version); returns bytes dropped."""
        dropped = self.job.size - self.missing_bytes()
        self.sums = [None] * self.nblocks
        self.done_count = 0
        self.hashed = 0
        self.hasher = hashlib.sha256()
        self.flushed = 0
        self.etag, self.etag_source = None, ""
        self.dirty = True
        return dropped

    # -- writes (worker threads) ----------------------------------------------
    def write_block(self, gen: int, block: int, data: memoryview, cond: threading.Condition) -> bool:
        """Write one whole block, journal and mark it, unless the file changed course (``False``).

        Holding ``wlock`` from the generation check through the write means a
        connection of an older generation can never write after a newer one.
        """
        start = block * self.block_size
        checksum = block_sum(data)
        with self.wlock:
            if gen != self.gen or self.fd < 0:
                return False
            view = memoryview(data)
            try:
                while view:
                    n = os.pwrite(self.fd, view[:WRITE_PIECE], start)
                    view, start = view[n:], start + n
                if self.journal_fd >= 0:
                    os.write(self.journal_fd, journal_line(block, checksum))
                    self.journal_lines += 1
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise DiskFull(str(exc)) from None
                raise
            with cond:
                if gen != self.gen:
                    return False
                if self.sums[block] is None:
                    self.sums[block] = checksum
                    self.done_count += 1
        return True
