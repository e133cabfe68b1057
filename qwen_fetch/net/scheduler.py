"""The shared queue of byte ranges and the per-file bookkeeping around it.

``fetch_all`` (engine.py) runs ``options.connections`` worker threads over one shared queue
of byte ranges (every missing block of every file, in parts of at most
``options.part_size``), handing each idle connection the next range of the
file with the fewest connections.  A worker GETs its range, writes whole
blocks to the partial file, journals and marks them done; whoever completes
the next block of a file's contiguous prefix feeds it to that file's sha256
(read back from the page cache), so a finished file needs no second full
read.  A block still arriving is written and journaled every ``step_size``
bytes (its *head*), so a killed or failed connection loses at most a step: the
next request for that block starts after its head.  An idle worker with nothing
queued steals the back half of the range in flight that would take longest to
finish (if longer than ``steal_after``).

Failures: transient ones (connect errors, timeouts, stalls, 5xx, 429) re-queue
the rest of the range after an exponential backoff with jitter; after
``max_attempts`` failures in a row on one source, or at once for a
non-transient one (wrong size, 404), the file falls back to its next location.
The coordinator (engine.py, the calling thread) takes each file's lock,
recovers its resume state and compacts block maps; the worker that completes a
file verifies and promotes it.

One module, though long: the queue, the workers' loop, the prefix hashing and the fallback
rules share one lock and one set of invariants (a block is queued, in flight or done, never two
at once); split across modules they would have to reach into each other's state.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import xxhash

from qwen_fetch.core.digests import ROOT_ALGORITHM, Digest, digest_matches
from qwen_fetch.core.progress import ProgressSink
from qwen_fetch.core.ranges import plan_ranges, retry_delay, split_point
from qwen_fetch.net.diskio import start_writeback
from qwen_fetch.net.filetask import FileTask, Phase, PieceChooser
from qwen_fetch.net.jobs import EngineOptions
from qwen_fetch.net.partstate import state_path
from qwen_fetch.store.safefs import UnsafeEntryError

_jitter = random.Random()
HASH_RUN_BLOCKS = 8  # blocks read back and hashed per call
# ... in reads this long.  Each piece costs the hashing thread two trips through the GIL (the read and the
# hash release it) and, with a chunk root, a hand-off to the thread that feeds the root: with 64 connection
# threads wanting the GIL, those trips, not sha256, can set the pace of a file's one sha256 stream, so pieces
# are long (bench/results/many-cores.md).
HASH_PIECE = 4 * 1024 * 1024
WRITEBACK_BYTES = 16 << 20  # ask the kernel to write hashed bytes back in stretches this long
THROTTLE_HOLD = 2.0  # after a 429/503 "too many", seconds before the connection limit may double again
MIN_RATE_WINDOW = 0.5  # seconds of a connection's history before its speed is trusted


@dataclass
class Assignment:
    task: FileTask
    gen: int
    start: int
    end: int  # may shrink while in flight when an idle worker steals the back half
    failures: int = 0
    not_before: float = 0.0
    pos: int = 0  # first byte of the first block not yet finished (block-aligned)
    head: int = 0  # bytes of the first block already on disk and journaled: the request starts after them
    part: int = 0  # bytes of the block at ``pos`` this connection has written and journaled so far
    started: float = 0.0  # when the body began to arrive (monotonic; 0 = not yet)
    pos0: int = 0  # ``pos`` at that moment
    slow: int = 0  # stalled or too-slow responses in a row for this range

    def eta(self, now: float) -> float:
        """Seconds this connection needs to finish its range at its speed so far."""
        elapsed = now - self.started
        if not self.started or elapsed < MIN_RATE_WINDOW:
            return 0.0  # too early to judge
        rate = (self.pos - self.pos0) / elapsed
        return (self.end - self.pos) / rate if rate > 0 else float("inf")


class Scheduler:
    def __init__(self, tasks: list[FileTask], options: EngineOptions, progress: ProgressSink,
                 cancel: threading.Event) -> None:
        self.tasks = tasks
        self.options = options
        self.progress = progress
        self.cancel = cancel
        self.cond = threading.Condition()
        self.pending: list[Assignment] = []
        self.active: list[Assignment] = []
        self.stopping = False
        self.fatal: BaseException | None = None
        # Connections allowed now: all of them, until the server answers 429/503 ("too many"); then as many as
        # it was serving at that moment, doubling again after THROTTLE_HOLD seconds without another refusal.
        self.limit = max(1, options.connections)
        self.grow_at = 0.0
        self.part_size = part_size_for(sum(t.job.size for t in tasks), options)
        self.pieces = PieceChooser()  # the pwrite size that costs less CPU here, measured as blocks are written
        self._root_pool: ThreadPoolExecutor | None = None  # feeds chunk roots beside the files' sha256s
        self._pool_lock = threading.Lock()

    def root_pool(self) -> ThreadPoolExecutor:
        """Threads that feed chunk roots while the hashing threads feed the sha256s (one per rooted file)."""
        with self._pool_lock:
            if self._root_pool is None:
                rooted = sum(1 for t in self.tasks if t.want_roots)
                self._root_pool = ThreadPoolExecutor(max_workers=max(1, rooted), thread_name_prefix="qwen-fetch-root")
            return self._root_pool

    def close(self) -> None:
        with self._pool_lock:
            if self._root_pool is not None:
                self._root_pool.shutdown(wait=True)
                self._root_pool = None

    # -- queue ------------------------------------------------------------------
    def plan(self, t: FileTask) -> None:
        """Queue every missing block of ``t`` (caller holds ``cond``)."""
        o = self.options
        done = [c is not None for c in t.sums]
        if t.stream:
            first = next((i for i, d in enumerate(done) if not d), None)
            ranges = [] if first is None else [(first * t.block_size, t.job.size)]
        else:
            ranges = plan_ranges(done, t.job.size, t.block_size, self.part_size, o.single_stream_below)
        heads = {} if t.stream else t.heads
        self.pending.extend(Assignment(t, t.gen, s, e, pos=s, head=heads.get(s // t.block_size, (0, 0))[0])
                            for s, e in ranges)
        self.pending.sort(key=lambda a: (a.task.index, a.start))
        self.cond.notify_all()

    def next_assignment(self) -> Assignment | None:
        with self.cond:
            while True:
                if self.stopping or self.cancel.is_set() or self.fatal is not None:
                    return None
                now = time.monotonic()
                if len(self.active) >= self.limit:
                    if self.limit < self.options.connections and now >= self.grow_at:
                        self.limit = min(self.options.connections, self.limit * 2)
                        self.grow_at = now + THROTTLE_HOLD
                        continue
                    self.cond.wait(max(min(self.grow_at - now, 0.5), 0.01))
                    continue
                ready = [a for a in self.pending if a.not_before <= now]
                if ready:
                    a = self._spread(ready)
                    self.pending.remove(a)
                    self._trim(a)
                    self.active.append(a)
                    return a
                wait = min([0.5] + [a.not_before - now for a in self.pending])
                stolen = self._steal()
                if stolen is not None:
                    self.active.append(stolen)
                    return stolen
                self.cond.wait(max(wait, 0.01))

    def _spread(self, ready: list[Assignment]) -> Assignment:
        """The next range of the file with the fewest connections (then in file order).

        Spreading connections over files keeps each file's in-flight window
        short, so its contiguous prefix (and the sha256 over it) advances as
        ranges land instead of all at once at the end, and several files hash
        in parallel.
        """
        busy: dict[int, int] = {}
        for a in self.active:
            busy[a.task.index] = busy.get(a.task.index, 0) + 1
        return min(ready, key=lambda a: (busy.get(a.task.index, 0), a.task.index, a.start))

    def _trim(self, a: Assignment) -> None:
        """Near the end, hand out smaller ranges, so the connections finish together (caller holds ``cond``).

        A range is cut to about half an equal share of what is left for each
        connection (never below ``tail_piece``), the rest going back to the
        queue.  Without this the last ranges handed out whole (32 MiB, 1.6 s at
        20 MB/s) end at scattered times and the pull's last second or two runs
        on a few connections; stealing cannot help there (cutting a range in
        flight abandons what the server already sent), trimming before the
        request costs nothing.
        """
        t, o = a.task, self.options
        if t.stream or t.job.size < o.single_stream_below:
            return
        left = sum(p.end - p.pos for p in self.pending) + sum(x.end - x.pos for x in self.active) + (a.end - a.pos)
        share = left // (2 * max(1, o.connections))
        floor = o.tail_piece
        piece = -(-max(share, floor) // t.block_size) * t.block_size
        cut = a.start + piece
        if a.end - cut < floor:
            return  # the rest would not be worth a request of its own
        self.pending.append(Assignment(t, a.gen, cut, a.end, a.failures, a.not_before, cut))
        self.pending.sort(key=lambda x: (x.task.index, x.start))
        a.end = cut

    def _steal(self) -> Assignment | None:
        """Split the slowest-to-finish range in flight so its tail runs on another connection.

        Only ranges expected to take longer than ``steal_after`` are split: an
        abandoned tail costs the bytes already in the socket buffers, so
        stealing from a fast connection would waste more than it saves.
        """
        now = time.monotonic()
        best: tuple[float, Assignment, int] | None = None
        for a in self.active:
            t = a.task
            if t.stream or a.gen != t.gen or t.job.size < self.options.single_stream_below:
                continue
            eta = a.eta(now)
            if eta < self.options.steal_after or (best is not None and eta <= best[0]):
                continue
            cut = split_point(a.pos, a.end, t.block_size, self.options.min_split)
            if cut is not None:
                best = (eta, a, cut)
        if best is None:
            return None
        _, victim, cut = best
        new = Assignment(victim.task, victim.gen, cut, victim.end, pos=cut)
        victim.end = cut
        return new

    def retire(self, a: Assignment) -> None:
        with self.cond:
            if a in self.active:
                self.active.remove(a)
            self.cond.notify_all()

    def requeue(self, a: Assignment, reason: str, retry_after: float | None, progressed: bool,
                throttled: bool = False, slow: bool = False) -> None:
        o = self.options
        t = a.task
        shrunk = 0
        with self.cond:
            if a in self.active:
                self.active.remove(a)
            if throttled:
                # Serve with what the server accepted; refusals from the same burst keep lowering it.
                now = time.monotonic()
                fewer = max(1, min(self.limit, len(self.active)))
                if fewer < self.limit:
                    shrunk = self.limit = fewer
                self.grow_at = now + max(THROTTLE_HOLD, retry_after or 0.0)
            if a.gen != t.gen or t.phase is not Phase.ACTIVE:
                return
            t.retries += 1
            # Refused while other connections are being served means "too many", not "broken": it does not
            # count toward giving up on this source (when nothing is being served it does).  A stalled or
            # too-slow response is no progress, whatever it delivered: a source that drips a byte now and
            # then must run out of tries.
            failures = 1 if progressed and not slow else a.failures + (0 if throttled and self.active else 1)
            slow_count = a.slow + 1 if slow else 0
            if failures >= o.max_attempts or slow_count >= max(1, o.max_slow):
                self._fail_source(t, reason, integrity=False)
                return
            delay = retry_delay(failures, retry_after, o.backoff_base, o.backoff_max, _jitter.random())
            if a.pos < a.end:
                self.pending.append(Assignment(t, t.gen, a.pos, a.end, failures, time.monotonic() + delay, a.pos,
                                               head=0 if t.stream else a.part, slow=slow_count))
                self.pending.sort(key=lambda x: (x.task.index, x.start))
            self.cond.notify_all()
        if shrunk:
            self.progress.note(f"{t.location.source} refuses more connections ({reason}); "
                               f"using {shrunk} connections for now")
        self.progress.note(f"{t.job.path}: {reason} from {t.location.source}; "
                           f"retry {failures}/{o.max_attempts - 1} in {delay:.1f}s")

    def fail_source(self, a: Assignment, reason: str, *, integrity: bool) -> None:
        with self.cond:
            if a in self.active:
                self.active.remove(a)
            if a.gen == a.task.gen and a.task.phase is Phase.ACTIVE:
                self._fail_source(a.task, reason, integrity=integrity)

    def _fail_source(self, t: FileTask, reason: str, *, integrity: bool) -> None:
        """Move ``t`` to its next location (caller holds ``cond``)."""
        t.failed_sources.append((t.location.source, reason))
        t.integrity_failure = integrity
        t.gen += 1
        t.stream = False
        self.pending = [p for p in self.pending if p.task is not t]
        if integrity:
            self.progress.advance(-t.forget())  # which bytes were wrong is unknown: start this file over
        if t.loc_index + 1 >= t.location_count and t.job.more is not None:
            # Ask for another source outside the lock: it may have to be contacted (resolved) first.
            t.looking_up = True
            threading.Thread(target=self._look_up, args=(t, t.gen, reason), daemon=True,
                             name="qwen-fetch-fallback").start()
        elif t.loc_index + 1 >= t.location_count:
            t.phase = Phase.FAILED
            self.progress.note(f"{t.job.path}: {reason} from {t.location.source}; no source left")
        else:
            old = t.location.source
            t.loc_index += 1
            self.progress.note(f"{t.job.path}: {reason} from {old}; falling back to {t.location.source}")
            self.plan(t)
        self.cond.notify_all()

    def _look_up(self, t: FileTask, gen: int, reason: str) -> None:
        """The file's known locations all failed: take the next one from ``job.more``, or fail the file."""
        assert t.job.more is not None
        try:
            loc = t.job.more()
        except Exception as exc:  # a bug in the provider: report it as this file's failure
            loc = None
            reason = f"{reason}; looking for another source: {exc}"
        with self.cond:
            t.looking_up = False
            if gen != t.gen or t.phase is not Phase.ACTIVE:
                self.cond.notify_all()
                return
            old = t.location.source
            if loc is None or self.stopping or self.cancel.is_set():
                t.phase = Phase.FAILED
                self.progress.note(f"{t.job.path}: {reason} from {old}; no source left")
            else:
                t.extra_locations.append(loc)
                t.loc_index += 1
                self.progress.note(f"{t.job.path}: {reason} from {old}; falling back to {loc.source}")
                self.plan(t)
            self.cond.notify_all()

    def to_stream(self, a: Assignment, changed: bool, etag: str | None) -> bool:
        """The source answered 200 to a range: this connection reads the whole body; others stop.

        ``False`` when another connection already took the stream (drop this response).
        """
        t = a.task
        with self.cond:
            if a.gen != t.gen:
                return False
            t.gen += 1
            t.stream = True
            if changed:
                self.progress.advance(-t.forget())
            t.etag, t.etag_source = etag, t.location.source
            self.pending = [p for p in self.pending if p.task is not t]
            a.gen, a.start, a.end, a.pos, a.head, a.part = t.gen, 0, t.job.size, 0, 0, 0
            a.started, a.pos0 = time.monotonic(), 0
        self.progress.note(f"{t.job.path}: " + ("the file changed on the server; restarting it" if changed
                                                 else f"{t.location.source} ignores Range; using one stream"))
        return True

    def record_etag(self, a: Assignment, etag: str | None) -> None:
        """Remember the validator for ``If-Range`` on resume (per source: mirrors' ETags differ)."""
        t = a.task
        with self.cond:
            a.started, a.pos0 = time.monotonic(), a.pos
            if a.gen == t.gen and etag and (t.etag != etag or t.etag_source != t.location.source):
                t.etag, t.etag_source, t.dirty = etag, t.location.source, True

    def set_fatal(self, exc: BaseException) -> None:
        with self.cond:
            if self.fatal is None:
                self.fatal = exc
            self.cond.notify_all()

    # -- blocks and hashing -----------------------------------------------------
    def wanted(self, a: Assignment, block: int) -> bool | None:
        """Should this connection write ``block`` (or skip it: done)?  ``None``: the file changed course, stop."""
        t = a.task
        with self.cond:
            if a.gen != t.gen:
                return None
            return block < t.nblocks and t.sums[block] is None and block * t.block_size >= a.start

    def read_head(self, a: Assignment, block: int, view: memoryview, summer: xxhash.xxh3_64) -> bool:
        """Fill ``view`` with the block's first bytes from the partial file (the request resumed after them)."""
        if not a.task.read_head(a.gen, block, view):
            return False
        summer.update(view)
        return True

    def write_step(self, a: Assignment, block: int, view: memoryview, end: int, summer: xxhash.xxh3_64) -> bool:
        """Write ``view[a.part:end]`` (the block's next bytes) and journal the block's first ``end`` bytes."""
        data = view[a.part:end]
        summer.update(data)
        if not a.task.write_head(a.gen, block, a.part, data, summer.intdigest(), self.pieces):
            return False
        a.part = end
        return True

    def commit_block(self, a: Assignment, block: int, data: memoryview, summer: xxhash.xxh3_64) -> bool:
        """Write the rest of ``data`` (the whole block) after the ``a.part`` bytes already written; mark it done."""
        t = a.task
        rest = data[a.part:]
        summer.update(rest)
        if not t.write_block(a.gen, block, rest, summer.intdigest(), self.cond, self.pieces, offset=a.part):
            return False
        a.part = 0
        with self.cond:
            a.pos = t.span(block)[1]
            complete = t.done_count == t.nblocks
            counted = t.heads.pop(block, (0, 0))[0]  # a resumed head: already counted as resumed
        self.progress.advance(len(data) - counted)
        self.hash_prefix(t, blocking=False)
        if complete:
            self.finalize(t, a.gen)
        return True

    def hash_prefix(self, t: FileTask, *, blocking: bool) -> None:
        """Feed the file's sha256 with every done block of its contiguous prefix (read back, in runs)."""
        if not t.hash_lock.acquire(blocking=blocking):
            return  # another thread is hashing this file; it will pick our block up
        try:
            while True:
                with self.cond:
                    i, h, fd, roots = t.hashed, t.hasher, t.fd, t.roots
                    j = i
                    while j < t.nblocks and t.sums[j] is not None and j - i < HASH_RUN_BLOCKS:
                        j += 1
                    if j == i or fd < 0:
                        return
                start, end = t.span(i)[0], t.span(j - 1)[1]
                if t.hash_buf is None:
                    t.hash_buf = bytearray(min(HASH_PIECE, max(1, t.job.size)))
                buf = memoryview(t.hash_buf)
                pos = start
                while pos < end:
                    view = buf[:min(len(buf), end - pos)]
                    try:
                        n = os.preadv(fd, [view], pos)  # into a reused buffer: no allocation per block
                    except OSError:
                        return  # closed by a stop; nothing to hash any more
                    if n != len(view):
                        return
                    # The root takes the very bytes the sha256 takes, hashed at the same time on another core.
                    fed: Future[None] | None = self.root_pool().submit(roots.update, view) if roots else None
                    h.update(view)
                    if fed is not None:
                        fed.result()
                    pos += n
                with self.cond:
                    if t.hasher is not h or t.hashed != i:
                        continue
                    t.hashed = j
                if end - t.flushed >= WRITEBACK_BYTES or end == t.job.size:
                    start_writeback(fd, t.flushed, end - t.flushed)
                    t.flushed = end
        finally:
            t.hash_lock.release()

    def finalize(self, t: FileTask, gen: int) -> None:
        """All blocks are on disk: check size and sha256, fsync, promote."""
        self.hash_prefix(t, blocking=True)
        with self.cond:
            if gen != t.gen or t.phase is not Phase.ACTIVE or t.hashed != t.nblocks:
                return
            digest = t.hasher.hexdigest()
            roots = t.roots
            root = (Digest(ROOT_ALGORITHM, roots.root()) if roots is not None and roots.consumed == t.job.size
                    else None)
            source = t.location.source
        if not digest_matches(t.job.sha256, digest):
            with self.cond:
                if gen == t.gen:
                    self._fail_source(t, f"sha256 mismatch (got {digest[:16]}...)", integrity=True)
            return
        with t.wlock:
            if gen != t.gen or t.fd < 0:
                return
            os.ftruncate(t.fd, t.job.size)
            os.fsync(t.fd)
            if not _same_file(t.fd, t.job.partial):  # the name no longer leads to the file we wrote and hashed
                self.set_fatal(UnsafeEntryError(f"{t.job.partial} was replaced while it was being written",
                                                hint="another program writes into the cache; stop it and rerun"))
                return
            os.replace(t.job.partial, t.job.dest)
            t.promoted = os.fstat(t.fd)  # the baseline a verification stamp is checked against
            _fsync_dir(t.job.dest.parent)
            t.release_files()
            try:
                os.unlink(state_path(t.job.partial))
            except FileNotFoundError:
                pass
        with self.cond:
            t.phase, t.source, t.dirty, t.root = Phase.DONE, source, False, root
            self.cond.notify_all()
        self.progress.file_done(str(t.job.path), source)


def part_size_for(total: int, o: EngineOptions) -> int:
    """Ranges small enough that every connection gets about two, never above ``part_size``.

    With a fixed 32 MiB part a 300 MB pull would keep only 9 of 16 connections busy.
    """
    return max(o.block_size, min(o.part_size, total // max(1, 2 * o.connections)))


def _same_file(fd: int, path: os.PathLike[str]) -> bool:
    try:
        a, b = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _fsync_dir(path: os.PathLike[str]) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
