"""Hash many files at disk speed: threads, large reads into reused buffers.

``hashlib`` releases the GIL while it hashes a buffer larger than 2 KiB, and
``readinto`` releases it while the kernel copies, so N threads hash N files at
once at close to N cores' worth of SHA256.  One file's sha256 is inherently
sequential, so the unit of work is a file; the largest files go first (LPT
scheduling), which keeps the tail short when a few big shards dominate.
Files reached through several names (one blob linked from two snapshots) are
hashed once.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# 1 MiB reads into a reused per-thread buffer: the buffer stays in the core's L2, so the kernel's copy out of the
# page cache is cheap and sha256 reads it back from L2 (8 MiB buffers spill to L3/DRAM and are read twice).
BUFFER = 1024 * 1024
READAHEAD = 32 * 1024 * 1024  # how far ahead of the hashing the file is requested from disk
AUTO_MIN = 256 * 1024 * 1024  # files this big are hashed the faster of two ways, found by timing both
PROBE_WINDOW = 16 * 1024 * 1024  # ... on alternating windows of this size
PROBE_PAIRS = 3  # ... this many of each
_clock = time.perf_counter  # what the probe times with (tests substitute their own)


@dataclass(frozen=True)
class HashResult:
    size: int | None
    sha256: str | None
    error: str | None = None  # why the file could not be read (then size/sha256 are None)
    how: str = field(default="", compare=False)  # "read" or "map": how the bytes reached sha256


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


def hash_one(path: Path, *, buffer_size: int = BUFFER, progress: ProgressFn | None = None,
             use_mmap: bool | None = None) -> HashResult:
    """sha256 and size of one file.

    Two ways to get the bytes to sha256, and which is faster depends on the machine:
    ``readinto`` into a 1 MiB buffer (a copy out of the page cache into L2), or a
    mapping hashed in place (no copy, but page faults).  Measured with two threads on
    two cores: on a 2-vCPU VM the copy won by 8-12 % (faults on the mapping are
    expensive there), on a 16-core host pinned to two cores the mapping won by 12 %.
    So by default (``use_mmap=None``) a file of ``AUTO_MIN`` bytes or more is hashed
    both ways on its first windows (the sha256 simply continues), and the faster way
    does the rest; smaller files use ``readinto``.  ``True``/``False`` force one way.
    Blobs are never rewritten in place (pull renames finished files in), so a mapping
    cannot see a file shrink under it; anything mmap refuses falls back to ``readinto``.
    """
    h = hashlib.sha256()
    buf = _buffer(buffer_size)
    try:
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            m = None
            if size and (use_mmap or (use_mmap is None and size >= AUTO_MIN)):
                try:
                    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                except (ValueError, OSError):
                    m = None  # a special file, or mapping refused: read it
            if m is None:
                total, how = _span_read(f, 0, None, h, buf, progress), "read"
            else:
                with m:
                    if hasattr(m, "madvise"):
                        m.madvise(mmap.MADV_SEQUENTIAL)
                    view = memoryview(m)
                    try:
                        total, how = _hash_either(f, view, size, h, buf, buffer_size, progress,
                                                  probe=use_mmap is None)
                    finally:
                        view.release()
    except OSError as exc:
        return HashResult(None, None, exc.strerror or str(exc))
    return HashResult(total, h.hexdigest(), how=how)


def _hash_either(f: io.FileIO, view: memoryview, size: int, h: Any, buf: bytearray, chunk: int,
                 progress: ProgressFn | None, *, probe: bool) -> tuple[int, str]:
    """Hash a mapped file, either all mapped or (``probe``) after timing both ways on its first windows."""
    clock = _clock
    off = 0
    if probe:
        spent = {"read": 0.0, "map": 0.0}
        for i in range(2 * PROBE_PAIRS):
            end = min(off + PROBE_WINDOW, size)
            if end <= off:
                break
            how = "map" if i % 2 else "read"
            t0 = clock()
            if how == "map":
                _span_map(view, off, end, h, chunk, progress)
            else:
                end = off + _span_read(f, off, end - off, h, buf, progress)
            spent[how] += clock() - t0
            if end < off + PROBE_WINDOW and end < size:
                return end, "read"  # the file shrank while read: stop, the size will not match
            off = end
        how = "map" if spent["map"] < spent["read"] else "read"
    else:
        how = "map"
    if how == "map":
        _span_map(view, off, size, h, chunk, progress)
        return size, how
    return off + _span_read(f, off, None, h, buf, progress), how


def _span_read(f: io.FileIO, start: int, length: int | None, h: Any, buf: bytearray,
               progress: ProgressFn | None) -> int:
    """sha256 ``length`` bytes (``None``: to the end) from ``start`` with ``readinto``; returns the bytes read."""
    view = memoryview(buf)
    fd = f.fileno()
    f.seek(start)
    advise = getattr(os, "posix_fadvise", None)
    try:  # tell the kernel to read ahead aggressively; harmless where unsupported
        if advise is not None:
            advise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    except OSError:
        advise = None
    total = 0
    while length is None or total < length:
        want = len(buf) if length is None else min(len(buf), length - total)
        if advise is not None:
            # Ask for the window READAHEAD ahead now (asynchronous on a cold cache, a short walk of
            # cached pages on a warm one), so the thread seldom waits on the disk.
            advise(fd, start + total + READAHEAD, want, os.POSIX_FADV_WILLNEED)
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


def hash_files(paths: Iterable[Path], *, workers: int | None = None, buffer_size: int = BUFFER,
               progress: ProgressFn | None = None, use_mmap: bool | None = None) -> dict[Path, HashResult]:
    """Hash every path (following links) in parallel; each underlying file is read once."""
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
    order = sorted(groups, key=lambda k: -sizes[k])  # largest first: shortest tail
    n = max(1, min(workers or default_workers(), len(order) or 1))
    results: dict[Path, HashResult] = {}
    if n == 1:
        for key in order:
            r = hash_one(groups[key][0], buffer_size=buffer_size, progress=progress, use_mmap=use_mmap)
            for p in groups[key]:
                results[p] = r
        return results
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="qf-hash") as pool:
        futures = {key: pool.submit(hash_one, groups[key][0], buffer_size=buffer_size, progress=progress,
                                    use_mmap=use_mmap) for key in order}
        for key, fut in futures.items():
            r = fut.result()
            for p in groups[key]:
                results[p] = r
    return results
