"""Hash many files at disk speed: threads, large reads into reused buffers.

``hashlib`` releases the GIL while it hashes a buffer larger than 2 KiB, and
``readinto`` releases it while the kernel copies, so N threads hash N files at
once at close to N cores' worth of SHA256.

One file's sha256 is sequential, but it need not stay on one thread: the
hasher's state can move between threads as long as two never feed it at the
same time.  So work is handed out in slices (``SLICE`` bytes of one file), and
a free thread always takes the next slice of the file with the most bytes left
that no other thread holds ("longest remaining first").  That is the optimal
preemptive schedule for identical workers: the job takes max(largest file,
total / threads) plus at most one slice, instead of the busiest thread's share
of whole files (with Qwen3-VL-8B's shards, well over half the bytes on one of
two threads).  Files reached through several names (one
blob linked from two snapshots) are hashed once.

A file whose pin has a chunk root (``core.digests``) can instead be checked on
every core: each of its chunks is a job of its own (a byte range with its own
sha256, always read with ``readinto``, never mapped), and the chunk digests are
folded into the root at the end.  (Over ~400 lines: the scheduling board, the
two ways of reading and the range jobs share the job type; apart they would
only pass it around.)
"""

from __future__ import annotations

import hashlib
import io
import mmap
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen_fetch.core.digests import chunk_spans, fold_root, git_blob_header

# 1 MiB reads into a reused per-thread buffer: the buffer stays in the core's L2, so the kernel's copy out of the
# page cache is cheap and sha256 reads it back from L2 (8 MiB buffers spill to L3/DRAM and are read twice).
BUFFER = 1024 * 1024
READAHEAD = 32 * 1024 * 1024  # how far ahead of the hashing the file is requested from disk
AUTO_MIN = 256 * 1024 * 1024  # files this big are hashed the faster of two ways, found by timing both
PROBE_WINDOW = 16 * 1024 * 1024  # ... on alternating windows of this size
PROBE_PAIRS = 3  # ... this many of each
SLICE = 32 * 1024 * 1024  # a thread hashes this much of a file before it picks again (the schedule's grain)
MAX_OPEN_FACTOR = 4  # at most this many partly hashed files per thread are open at once
_clock = time.perf_counter  # what the probe times with (tests substitute their own)

READ_CHUNK = 8 * 1024 * 1024  # hash_file's reads: hashlib releases the GIL above 2 KiB


def iter_file(path: Path, chunk: int = READ_CHUNK) -> Iterable[bytes]:
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(chunk)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            yield bytes(view[:n]) if n < chunk else bytes(view)


@dataclass(frozen=True)
class FileHashes:
    size: int
    sha256: str
    git_oid: str | None


def hash_file(path: Path, *, with_git_oid: bool = False, chunk: int = READ_CHUNK) -> FileHashes:
    """Hash a local file with large reads (sha256, optionally its git blob id)."""
    size = os.stat(path).st_size
    h = hashlib.sha256()
    g = hashlib.sha1(git_blob_header(size), usedforsecurity=False) if with_git_oid else None
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(chunk)
        view = memoryview(buf)
        total = 0
        while True:
            n = f.readinto(buf)
            if not n:
                break
            total += n
            h.update(view[:n])
            if g is not None:
                g.update(view[:n])
    # If the file changed size while reading, the git id is meaningless.
    if g is not None and total != size:
        g = None
    return FileHashes(size=total, sha256=h.hexdigest(), git_oid=g.hexdigest() if g else None)


@dataclass(frozen=True)
class HashResult:
    size: int | None
    sha256: str | None
    error: str | None = None  # why the file could not be read (then size/sha256 are None)
    how: str = field(default="", compare=False)  # "read" or "map": how the bytes reached sha256
    root: str | None = None  # the chunk root, for a file hashed by chunks (then ``sha256`` is None)


ProgressFn = Callable[[int], None]  # called with a number of bytes just hashed (from worker threads)


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_local = threading.local()


def _buffer(size: int) -> bytearray:
    buf = getattr(_local, "buf", None)
    if buf is None or len(buf) != size:
        buf = bytearray(size)
        _local.buf = buf
    return buf


class _Job:
    """One file being hashed, slice by slice, by whichever thread holds it (never two at once).

    Two ways to get the bytes to sha256, and which is faster depends on the machine:
    ``readinto`` into a 1 MiB buffer (a copy out of the page cache into L2), or a
    mapping hashed in place (no copy, but page faults).  On a VM where page faults are
    expensive the copy wins; on other machines the mapping does
    (``bench/results/design-figures.md``).
    So by default (``use_mmap=None``) a file of ``AUTO_MIN`` bytes or more is hashed
    both ways on its first windows (the sha256 simply continues), and the faster way
    does the rest; smaller files use ``readinto``.  ``True``/``False`` force one way.
    Blobs are never rewritten in place (pull renames finished files in), so a mapping
    cannot see a file shrink under it; anything mmap refuses falls back to ``readinto``.
    """

    def __init__(self, path: Path, size_hint: int, use_mmap: bool | None, span: tuple[int, int] | None = None
                 ) -> None:
        self.path = path
        self.span = span  # a chunk's [start, end) of the file; None: the whole file
        self.left = size_hint  # estimate of the bytes still to hash (scheduling only)
        self.use_mmap = use_mmap
        self.h = hashlib.sha256()
        self.f: io.FileIO | None = None
        self.m: mmap.mmap | None = None
        self.view: memoryview | None = None
        self.size = 0  # the size when opened (a mapping covers exactly this)
        self.off = 0
        self.how = ""  # "" until decided: "read" or "map"
        self.probe_i = 0
        self.spent = {"read": 0.0, "map": 0.0}
        self.result: HashResult | None = None  # set when done

    @property
    def opened(self) -> bool:
        return self.f is not None

    def _open(self) -> None:
        self.f = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed in _finish
        self.size = os.fstat(self.f.fileno()).st_size
        if self.span is not None:  # a chunk: hash [start, end), read (a chunk is below AUTO_MIN)
            self.off, self.size = self.span[0], min(self.size, self.span[1])
            self.use_mmap = False
        self.left = self.size - self.off
        want_map = self.size and (self.use_mmap or (self.use_mmap is None and self.size >= AUTO_MIN))
        if want_map:
            try:
                self.m = mmap.mmap(self.f.fileno(), 0, access=mmap.ACCESS_READ)
            except (ValueError, OSError):
                self.m = None  # a special file, or mapping refused: read it
        if self.m is None:
            self.how = "read"
            advise = getattr(os, "posix_fadvise", None)
            try:  # tell the kernel to read ahead aggressively; harmless where unsupported
                if advise is not None:
                    advise(self.f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            except OSError:
                pass
        else:
            if hasattr(self.m, "madvise"):
                self.m.madvise(mmap.MADV_SEQUENTIAL)
            self.view = memoryview(self.m)
            self.how = "" if self.use_mmap is None else "map"

    def step(self, amount: int, buf: bytearray, chunk: int, progress: ProgressFn | None) -> None:
        """Hash about ``amount`` more bytes (at least one probe window, at most to the end); finish at the end."""
        try:
            if not self.opened:
                self._open()
            if not self.how:
                self._probe(buf, chunk, progress)
                if self.result is not None or self.how:
                    return
            assert self.f is not None
            if self.how == "map":
                assert self.view is not None
                end = min(self.off + amount, self.size)
                _span_map(self.view, self.off, end, self.h, chunk, progress)
                self.off = end
                if end >= self.size:
                    self._finish()
            else:
                if self.span is not None:
                    amount = min(amount, self.size - self.off)
                n = _span_read(self.f, self.off, amount, self.h, buf, progress)
                self.off += n
                # The end of the file (as it is now, not as it was when opened), or of the chunk.
                if n < amount or (self.span is not None and self.off >= self.size):
                    self._finish()
            self.left = max(0, self.size - self.off)
        except OSError as exc:
            self._finish(exc.strerror or str(exc))

    def _probe(self, buf: bytearray, chunk: int, progress: ProgressFn | None) -> None:
        """Hash the first windows alternately both ways, then keep the faster way."""
        assert self.f is not None and self.view is not None
        clock = _clock
        while self.probe_i < 2 * PROBE_PAIRS:
            end = min(self.off + PROBE_WINDOW, self.size)
            if end <= self.off:
                break
            how = "map" if self.probe_i % 2 else "read"
            t0 = clock()
            if how == "map":
                _span_map(self.view, self.off, end, self.h, chunk, progress)
            else:
                end = self.off + _span_read(self.f, self.off, end - self.off, self.h, buf, progress)
            self.spent[how] += clock() - t0
            self.probe_i += 1
            if end < self.off + PROBE_WINDOW and end < self.size:
                self.off = end
                self.how = "read"
                self._finish()  # the file shrank while read: stop, the size will not match
                return
            self.off = end
        self.how = "map" if self.spent["map"] < self.spent["read"] else "read"
        self.left = max(0, self.size - self.off)
        if self.off >= self.size:
            self._finish()

    def _finish(self, error: str | None = None) -> None:
        if self.view is not None:
            self.view.release()
            self.view = None
        if self.m is not None:
            self.m.close()
            self.m = None
        if self.f is not None:
            self.f.close()
            self.f = None
        self.left = 0
        if error is None:
            start = self.span[0] if self.span is not None else 0
            self.result = HashResult(self.off - start, self.h.hexdigest(), how=self.how or "read")
        else:
            self.result = HashResult(None, None, error)

    def run(self, buf: bytearray, chunk: int, progress: ProgressFn | None) -> HashResult:
        while self.result is None:
            self.step(max(SLICE, chunk), buf, chunk, progress)
        return self.result


def hash_one(path: Path, *, buffer_size: int = BUFFER, progress: ProgressFn | None = None,
             use_mmap: bool | None = None) -> HashResult:
    """sha256 and size of one file (see ``_Job`` for how the bytes reach sha256)."""
    return _Job(path, 0, use_mmap).run(_buffer(buffer_size), buffer_size, progress)


def _span_read(f: io.FileIO, start: int, length: int, h: Any, buf: bytearray,
               progress: ProgressFn | None) -> int:
    """sha256 up to ``length`` bytes from ``start`` with ``readinto``; returns the bytes read (fewer at the end)."""
    view = memoryview(buf)
    fd = f.fileno()
    f.seek(start)
    advise = getattr(os, "posix_fadvise", None)
    total = 0
    while total < length:
        want = min(len(buf), length - total)
        if advise is not None:
            # Ask for the window READAHEAD ahead now (asynchronous on a cold cache, a short walk of
            # cached pages on a warm one), so the thread seldom waits on the disk.
            try:
                advise(fd, start + total + READAHEAD, want, os.POSIX_FADV_WILLNEED)
            except OSError:
                advise = None
        n = f.readinto(view[:want])
        if not n:
            break
        h.update(view[:n])
        total += n
        if progress is not None:
            progress(n)
    return total


def _span_map(view: memoryview, start: int, end: int, h: Any, chunk: int, progress: ProgressFn | None) -> None:
    """sha256 the mapped bytes [start, end) in place."""
    obj = view.obj
    advise = getattr(obj, "madvise", None)
    size = len(view)
    for off in range(start, end, chunk):
        ahead = off + READAHEAD
        if advise is not None and ahead < size:
            # Ask for the window ahead now (asynchronous on a cold cache, nearly free on a warm one),
            # so the hashing thread seldom waits on a page fault for the disk.
            advise(mmap.MADV_WILLNEED, ahead - ahead % mmap.PAGESIZE, min(chunk, size - ahead))
        part = view[off:min(off + chunk, end)]
        h.update(part)  # releases the GIL: other threads hash meanwhile
        if progress is not None:
            progress(len(part))
        part.release()


def _identity(path: Path) -> tuple[int, int] | Path:
    try:
        st = os.stat(path)
    except OSError:
        return path
    return (st.st_dev, st.st_ino)


class _Board:
    """The jobs and who holds which: a free thread takes the free job with the most bytes left.

    Jobs come largest first; only the ones already started (at most ``max_open``, so a cache of
    100 000 small files costs a short scan per slice) and the next unstarted one are candidates.
    """

    def __init__(self, jobs: list[_Job], workers: int) -> None:
        self.jobs = jobs  # largest first
        self.lock = threading.Lock()
        self.held: set[int] = set()
        self.started: list[int] = []  # taken at least once, not finished
        self.next = 0  # the first job never taken
        self.max_open = max(2, MAX_OPEN_FACTOR * workers)

    def take(self, prev: int | None) -> int | None:
        """The next job for a thread that just released ``prev``; ``None`` when nothing is left for it."""
        with self.lock:
            jobs = self.jobs
            self.started = [i for i in self.started if jobs[i].result is None]
            best: int | None = None
            for i in self.started:
                if i not in self.held and (best is None or jobs[i].left > jobs[best].left):
                    best = i
            fresh = self.next < len(jobs) and len(self.started) < self.max_open
            if fresh and (best is None or jobs[self.next].left > jobs[best].left):
                best = self.next
            if best is not None and prev is not None and prev != best:
                pj = jobs[prev]
                if pj.result is None and prev not in self.held and pj.left + SLICE >= jobs[best].left:
                    best = prev  # as good within a slice: keep going where the caches are warm
            if best is None:
                return None
            if best == self.next:
                self.started.append(best)
                self.next += 1
            self.held.add(best)
            return best

    def release(self, i: int) -> None:
        with self.lock:
            self.held.discard(i)


def hash_files(paths: Iterable[Path], *, workers: int | None = None, buffer_size: int = BUFFER,
               progress: ProgressFn | None = None, use_mmap: bool | None = None,
               chunked: Collection[Path] = ()) -> dict[Path, HashResult]:
    """Hash every path (following links) in parallel; each underlying file is read once.

    Files reached only through ``chunked`` paths get their chunk root (``HashResult.root``) instead of a
    sha256, their chunks hashed on all threads; a file also reached through another path gets its sha256.
    """
    paths = list(dict.fromkeys(paths))
    groups: dict[tuple[int, int] | Path, list[Path]] = {}
    sizes: dict[tuple[int, int] | Path, int] = {}
    for p in paths:
        key = _identity(p)
        groups.setdefault(key, []).append(p)
        if key not in sizes:
            try:
                sizes[key] = os.stat(p).st_size
            except OSError:
                sizes[key] = 0
    order = sorted(groups, key=lambda k: -sizes[k])  # largest first
    rooted = {k for k in order if all(p in chunked for p in groups[k])} if chunked else set()
    jobs = [_Job(groups[k][0], sizes[k], use_mmap) for k in order if k not in rooted]
    chunk_jobs = {k: [_Job(groups[k][0], e - s, use_mmap, (s, e)) for s, e in chunk_spans(sizes[k])]
                  for k in order if k in rooted}
    whole = len(jobs)
    jobs += sorted((j for js in chunk_jobs.values() for j in js), key=lambda j: -j.left)
    n = max(1, min(workers or default_workers(), len(jobs) or 1))
    step = max(SLICE, buffer_size)
    if n == 1:
        for job in jobs:
            job.run(_buffer(buffer_size), buffer_size, progress)
    else:
        board = _Board(jobs, n)
        errors: list[BaseException] = []

        def worker() -> None:
            buf = _buffer(buffer_size)
            prev: int | None = None
            try:
                while (i := board.take(prev)) is not None:
                    try:
                        jobs[i].step(step, buf, buffer_size, progress)
                    finally:
                        board.release(i)
                    prev = i
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=worker, name=f"qf-hash-{t}", daemon=True) for t in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            for job in jobs:
                if job.result is None:
                    job._finish("interrupted")
            raise errors[0]
    results: dict[Path, HashResult] = {}
    for k, job in zip([k for k in order if k not in rooted], jobs[:whole]):
        assert job.result is not None
        for p in groups[k]:
            results[p] = job.result
    for k, js in chunk_jobs.items():
        for p in groups[k]:
            results[p] = _fold(js)
    return results


def _fold(chunks: list[_Job]) -> HashResult:
    """A rooted file's result from its chunks' (each chunk read to its end, or the file ended early)."""
    size = 0
    for j in chunks:
        r = j.result
        assert r is not None
        if r.error is not None or r.size is None:
            return HashResult(None, None, r.error or "unreadable")
        size += r.size
    return HashResult(size, None, how="read",
                      root=fold_root(bytes.fromhex(j.result.sha256) for j in chunks  # type: ignore[union-attr]
                                     if j.result and j.result.sha256))
