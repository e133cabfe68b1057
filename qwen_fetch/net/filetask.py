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
import stat
import threading
import time
from dataclasses import dataclass, field
from enum import Enum

from qwen_fetch.core.digests import ChunkRoots, Digest
from qwen_fetch.core.ranges import block_count, block_span
from qwen_fetch.net.jobs import FetchJob
from qwen_fetch.net.location import FileLocation
from qwen_fetch.net.partstate import (
    BadState,
    PartState,
    head_line,
    journal_line,
    load_state,
    save_state,
    state_path,
    verify_partial,
)
from qwen_fetch.store.flocks import HeldLock, LockFolder
from qwen_fetch.store.safefs import open_file, remove_file

# Writes go to the page cache in pieces of one of these sizes, whichever is cheaper here (``PieceChooser``).
# On a VM that reports free memory to its host, which sizes are dear depends on the VM's memory at the time
# (most likely large folios taken from reported memory, whose pages fault back in on first touch): inside a
# pull 256 KiB can be the cheaper for the first tens of MiB and far dearer later.  Elsewhere 256 KiB is the
# cheaper throughout.  Figures: `bench/results/design-figures.md` and `bench/results/write_piece.md`.
WRITE_PIECES = (16 * 1024, 256 * 1024)
PROBE_BYTES = 16 << 20  # written in each piece size (alternating, write by write) before choosing
REPROBE_AFTER = 256 << 20  # ... and written with the chosen size before comparing again
TIMED_WRITE = WRITE_PIECES[-1]  # writes shorter than the largest piece (a file's short end) are not timed
# What the chooser times writes with: this thread's CPU time (user + system), not wall time, which with 64
# connection threads is mostly waiting for the GIL between the pieces (tests substitute their own clock).
_clock = time.thread_time


class PieceChooser:
    """Times block writes in each of ``WRITE_PIECES`` and writes with the cheaper, re-checking as the pull goes.

    Shared by all connections of one ``fetch_all``.  Writes alternate sizes until each size has written
    ``PROBE_BYTES``; then the size with the lower CPU time per byte writes the next ``REPROBE_AFTER`` bytes,
    and the comparison starts over.  A pwrite into the page cache is CPU work (the copy, the page
    allocation), so the writing thread's CPU time is its cost.  The re-check matters: on a VM that reports
    free memory to its host the first tens of MiB land in recently freed (still backed) memory, where 256 KiB
    pieces are the cheaper, and only later, once the page cache takes memory the VM gave back, do they cost more.
    """

    def __init__(self) -> None:
        self.chosen: int | None = None
        self._spent = dict.fromkeys(WRITE_PIECES, 0.0)
        self._bytes = dict.fromkeys(WRITE_PIECES, 0)
        self._since = 0  # bytes written with ``chosen`` since it was chosen
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            if self.chosen is not None:
                return self.chosen
            return min(WRITE_PIECES, key=lambda p: self._bytes[p])  # the size with the fewest bytes so far

    def record(self, piece: int, nbytes: int, seconds: float) -> None:
        if nbytes <= 0:
            return
        with self._lock:
            if self.chosen is not None:
                self._since += nbytes
                if self._since >= REPROBE_AFTER:  # compare again
                    self.chosen, self._since = None, 0
                    self._spent = dict.fromkeys(WRITE_PIECES, 0.0)
                    self._bytes = dict.fromkeys(WRITE_PIECES, 0)
                return
            self._spent[piece] += seconds
            self._bytes[piece] += nbytes
            if all(b >= PROBE_BYTES for b in self._bytes.values()):
                self.chosen = min(WRITE_PIECES, key=lambda p: self._spent[p] / self._bytes[p])


def _odd_partial(path: os.PathLike[str]) -> str | None:
    """Why an existing partial file cannot be ours to write into (a link, a device, a second name), or None."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return "a symlink"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_nlink != 1:
        return "a hard link to another file"
    return None


class Phase(Enum):
    WAITING = "waiting"  # lock not yet held
    ACTIVE = "active"
    DONE = "done"
    FAILED = "failed"


class DiskFull(Exception):
    """ENOSPC while writing a partial file."""


class Ledger:
    """What the coordinator needs about all files of one fetch without walking them (guarded by the
    scheduler's lock): the bytes every active file still has to write (the disk-space check's need),
    and the files that stopped being active since the coordinator last looked (their locks to release).

    Summing over every file each time one starts, or scanning every file each time one finishes,
    made a pull of many files quadratic; the files keep these up to date as they change.
    """

    def __init__(self) -> None:
        self.missing = 0
        self.finished: list[FileTask] = []

    def take_finished(self) -> list[FileTask]:
        done, self.finished = self.finished, []
        return done


@dataclass
class FileTask:
    job: FetchJob
    index: int
    block_size: int
    ledger: Ledger = field(default_factory=Ledger)
    _phase: Phase = Phase.WAITING
    lock: HeldLock | None = None
    missing: int = 0  # bytes not on disk yet (``missing_bytes()``, kept as blocks land); guarded like ``sums``
    fd: int = -1
    journal_fd: int = -1  # append-only handle on the state file
    journal_lines: int = 0  # blocks journaled since the last snapshot
    gen: int = 0
    loc_index: int = 0
    sums: list[int | None] = field(default_factory=list)
    # Unfinished blocks whose first bytes an earlier run wrote and journaled: block -> (length, running sum).
    # Counted as resumed (progress, ``resumed_bytes``) until the block is finished.  Never longer than what is
    # on disk: a head is a prefix, and a block's bytes are written once per generation.  Guarded by the
    # scheduler's lock like ``sums``.
    heads: dict[int, tuple[int, int]] = field(default_factory=dict)
    # Heads journaled by this run: block -> (generation, length, sum), so a snapshot keeps them (guarded by
    # ``wlock``).  A head written before the last ``forget`` (generation below ``kept_since``) is ignored.
    live_heads: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    kept_since: int = 0
    done_count: int = 0
    hashed: int = 0
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    hash_buf: bytearray | None = None  # reused read-back buffer (under hash_lock)
    # The chunk root fed with the same bytes as ``hasher`` (files of more than one chunk, when the pull records
    # roots), replaced together with it.
    want_roots: bool = False
    roots: ChunkRoots | None = None
    flushed: int = 0  # bytes before this offset were handed to writeback
    etag: str | None = None
    etag_source: str = ""
    stream: bool = False  # the source ignores Range: one connection reads the whole body
    dirty: bool = False
    bytes_transferred: int = 0
    resumed_bytes: int = 0
    retries: int = 0
    reused: bool = False
    promoted: os.stat_result | None = None  # fstat of the file right after its rename into place
    root: Digest | None = None  # the chunk root of the promoted bytes (when ``roots`` computed one)
    source: str = ""
    failed_sources: list[tuple[str, str]] = field(default_factory=list)
    integrity_failure: bool = False  # the last source to fail served the wrong bytes
    extra_locations: list[FileLocation] = field(default_factory=list)  # from ``job.more``, as they were needed
    looking_up: bool = False  # a thread is asking ``job.more`` for the next location
    wlock: threading.Lock = field(default_factory=threading.Lock)
    hash_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def phase(self) -> Phase:
        return self._phase

    @phase.setter
    def phase(self, value: Phase) -> None:
        """Set under the scheduler's lock: the ledger counts active files' missing bytes and collects the
        files that finished or failed."""
        old, self._phase = self._phase, value
        if old is value:
            return
        if old is Phase.ACTIVE:
            self.ledger.missing -= self.missing
        if value is Phase.ACTIVE:
            self.ledger.missing += self.missing
        if value in (Phase.DONE, Phase.FAILED):
            self.ledger.finished.append(self)

    def _set_missing(self, n: int) -> None:
        if self._phase is Phase.ACTIVE:
            self.ledger.missing += n - self.missing
        self.missing = n

    @property
    def nblocks(self) -> int:
        return block_count(self.job.size, self.block_size)

    @property
    def location(self) -> FileLocation:
        known = self.job.locations
        i = self.loc_index
        return known[i] if i < len(known) else self.extra_locations[i - len(known)]

    @property
    def location_count(self) -> int:
        return len(self.job.locations) + len(self.extra_locations)

    def span(self, block: int) -> tuple[int, int]:
        return block_span(block, self.job.size, self.block_size)

    def missing_bytes(self) -> int:
        """Bytes not on disk yet: the unfinished blocks less their resumed heads."""
        blocks = sum(e - s for i, (s, e) in enumerate(map(self.span, range(self.nblocks))) if self.sums[i] is None)
        return blocks - sum(n for b, (n, _) in self.heads.items() if self.sums[b] is None)

    # -- lock and resume (coordinator thread) ---------------------------------
    def try_lock(self, locks: LockFolder) -> bool:
        """Take the file's lock (``job.lock``, a file of ``locks``) without waiting; False when another has it."""
        self.lock = locks.try_acquire(self.job.lock.name)
        return self.lock is not None

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
        odd = _odd_partial(job.partial)
        if odd is not None:
            # Planted, not ours: the link (or extra name) is removed, its target never opened.
            notes.append(f"{job.path}: the partial file was {odd}; removed it and starting over")
            state = None
        if state is None:
            # Start from a new, empty file: removed and created, not truncated.  ext4 marks a file truncated to
            # length 0 for writeback when it is closed (auto_da_alloc), and a process's files are closed when it
            # dies: a SIGKILLed pull then lingered in that writeback (throttled by the block layer) with every
            # socket still open and receiving, bytes its rerun had to fetch again.
            remove_file(job.partial)
        self.fd = open_file(job.partial, os.O_RDWR | os.O_CREAT)
        self.sums = [None] * self.nblocks
        self.missing = job.size
        self.roots = ChunkRoots() if self.want_roots else None
        if state is None:
            self.dirty = True
            return notes
        v = verify_partial(self.fd, state, self.roots)
        if v.bad_blocks:
            notes.append(f"{job.path}: {v.bad_blocks} block(s) of the partial file were missing or damaged;"
                         " fetching them again")
        if os.fstat(self.fd).st_size > job.size:
            os.ftruncate(self.fd, job.size)
        self.sums, self.hasher, self.hashed, self.heads = v.sums, v.hasher, v.hashed_blocks, v.heads
        self.done_count = sum(c is not None for c in self.sums)
        self.missing = self.missing_bytes()
        self.resumed_bytes = job.size - self.missing
        self.etag, self.etag_source = state.etag, state.source
        self.dirty = True  # start a fresh snapshot + journal at once
        return notes

    def snapshot(self) -> PartState:
        """The resume state now (caller holds ``wlock`` and the scheduler's lock)."""
        heads = dict(self.heads)
        heads.update((b, (n, c)) for b, (g, n, c) in self.live_heads.items() if g >= self.kept_since)
        return PartState(size=self.job.size, sha256=self.job.sha256, block_size=self.block_size,
                         sums=tuple(self.sums), source=self.etag_source, etag=self.etag,
                         heads=tuple((b, n, c) for b, (n, c) in sorted(heads.items()) if self.sums[b] is None))

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
        """Drop all progress (the bytes are known bad or belong to another version); returns bytes dropped.

        The caller holds the scheduler's lock and has bumped ``gen`` already.
        """
        dropped = self.job.size - self.missing
        self._set_missing(self.job.size)
        self.sums = [None] * self.nblocks
        self.heads = {}
        self.kept_since = self.gen  # callers bump ``gen`` first: heads of earlier generations are void
        self.done_count = 0
        self.hashed = 0
        self.hasher = hashlib.sha256()
        self.roots = ChunkRoots() if self.want_roots else None
        self.flushed = 0
        self.etag, self.etag_source = None, ""
        self.dirty = True
        return dropped

    # -- writes (worker threads) ----------------------------------------------
    def read_head(self, gen: int, block: int, view: memoryview) -> bool:
        """Read the first ``len(view)`` bytes of ``block`` back (a request that resumes mid-block)."""
        with self.wlock:
            if gen != self.gen or self.fd < 0:
                return False
            return os.preadv(self.fd, [view], block * self.block_size) == len(view)

    def write_head(self, gen: int, block: int, offset: int, data: memoryview, length_sum: int,
                   pieces: PieceChooser | None = None) -> bool:
        """Write ``data`` at ``offset`` of ``block`` and journal the block's first ``offset + len(data)`` bytes
        with their running sum ``length_sum``; ``False`` (nothing written) when the file changed course."""
        with self.wlock:
            if gen != self.gen or self.fd < 0:
                return False
            self._pwrite(block * self.block_size + offset, data, pieces)
            if self.journal_fd >= 0:
                self._journal(head_line(block, offset + len(data), length_sum))
            self.live_heads[block] = (gen, offset + len(data), length_sum)
        return True

    def write_block(self, gen: int, block: int, data: memoryview, checksum: int, cond: threading.Condition,
                    pieces: PieceChooser | None = None, offset: int = 0) -> bool:
        """Write the rest of ``block`` (``data``, from ``offset``), journal and mark the block done, unless the
        file changed course (``False``).  ``checksum`` is the whole block's.

        Holding ``wlock`` from the generation check through the write means a
        connection of an older generation can never write after a newer one.
        """
        with self.wlock:
            if gen != self.gen or self.fd < 0:
                return False
            self._pwrite(block * self.block_size + offset, data, pieces)
            self.live_heads.pop(block, None)
            if self.journal_fd >= 0:
                self._journal(journal_line(block, checksum))
                self.journal_lines += 1
            with cond:
                if gen != self.gen:
                    return False
                if self.sums[block] is None:
                    s, e = self.span(block)
                    self._set_missing(self.missing - (e - s) + self.heads.get(block, (0, 0))[0])
                    self.sums[block] = checksum
                    self.done_count += 1
        return True

    def _pwrite(self, start: int, data: memoryview, pieces: PieceChooser | None) -> None:
        """Write ``data`` at ``start`` in the pieces ``pieces`` chooses, timing writes of a step or more (caller
        holds ``wlock``)."""
        view = memoryview(data)
        piece = pieces.next() if pieces is not None else WRITE_PIECES[0]
        t0 = _clock()
        try:
            while view:
                n = os.pwrite(self.fd, view[:piece], start)
                view, start = view[n:], start + n
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(str(exc)) from None
            raise
        if pieces is not None and len(data) >= TIMED_WRITE:
            pieces.record(piece, len(data), _clock() - t0)

    def _journal(self, line: bytes) -> None:
        try:
            os.write(self.journal_fd, line)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(str(exc)) from None
            raise
