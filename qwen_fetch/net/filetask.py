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
from qwen_fetch.net.partstate import BadState, PartState, load_state, save_state, state_path, verify_partial
from qwen_fetch.net.ranges import block_count, block_span
from qwen_fetch.sources.base import FileLocation


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
    gen: int = 0
    loc_index: int = 0
    crcs: list[int | None] = field(default_factory=list)
    done_count: int = 0
    hashed: int = 0
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
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

    @property
    def state_file(self) -> os.PathLike[str]:
        return state_path(self.job.partial)

    def span(self, block: int) -> tuple[int, int]:
        return block_span(block, self.job.size, self.block_size)

    def missing_bytes(self) -> int:
        return sum(e - s for i, (s, e) in enumerate(map(self.span, range(self.nblocks))) if self.crcs[i] is None)

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
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
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
        self.crcs = [None] * self.nblocks
        if state is None:
            os.ftruncate(self.fd, 0)
            return notes
        v = verify_partial(self.fd, state)
        if v.bad_blocks:
            notes.append(f"{job.path}: {v.bad_blocks} block(s) of the partial file were missing or damaged;"
                         " fetching them again")
        if os.fstat(self.fd).st_size > job.size:
            os.ftruncate(self.fd, job.size)
        self.crcs, self.hasher, self.hashed = v.crcs, v.hasher, v.hashed_blocks
        self.done_count = sum(c is not None for c in self.crcs)
        self.resumed_bytes = job.size - self.missing_bytes()
        self.etag, self.etag_source = state.etag, state.source
        self.dirty = bool(v.bad_blocks)
        return notes

    def snapshot(self) -> PartState:
        return PartState(size=self.job.size, sha256=self.job.sha256, block_size=self.block_size,
                         crcs=tuple(self.crcs), source=self.etag_source, etag=self.etag)

    def save(self, state: PartState) -> None:
        """Write the resume state, unless the file was promoted or closed meanwhile."""
        with self.wlock:
            if self.fd >= 0:
                save_state(state_path(self.job.partial), state)

    def forget(self) -> int:
        """Drop all progress (the bytes are known bad or belong to another version); returns bytes dropped."""
        dropped = self.job.size - self.missing_bytes()
        self.crcs = [None] * self.nblocks
        self.done_count = 0
        self.hashed = 0
        self.hasher = hashlib.sha256()
        self.etag, self.etag_source = None, ""
        self.dirty = True
        return dropped

    # -- writes (worker threads) ----------------------------------------------
    def write_block(self, gen: int, block: int, data: bytes | bytearray) -> bool:
        """Write one whole block unless the file changed course; ``False`` when dropped."""
        start = block * self.block_size
        with self.wlock:
            if gen != self.gen or self.fd < 0:
                return False
            view = memoryview(data)
            try:
                while view:
                    n = os.pwrite(self.fd, view, start)
                    view, start = view[n:], start + n
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise DiskFull(str(exc)) from None
                raise
        return True
