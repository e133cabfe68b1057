"""The download engine's entry point: ``fetch_all``.

The calling thread is the coordinator: it takes each file's lock (without
blocking, so a file another process is fetching waits while the others go
ahead), recovers resume state, saves block maps every second, releases locks
and turns failures into one user-facing error at the end.  It keeps a bounded
window of files open (locked, partial and journal open): enough to keep every
connection busy, few enough that a repo of any number of files stays inside
the open-file limit and the scheduler's queue stays short; a file enters the
window when another leaves it.  The connections are
``options.connections`` worker threads running :func:`_worker` over the
scheduler's shared range queue (see scheduler.py for the queue, hashing and
promotion).
"""

from __future__ import annotations

import errno
import resource
import shutil
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from qwen_fetch.core.digests import wants_root
from qwen_fetch.core.errors import DiskFullError, ExitCode, IntegrityError, QFError, Ref, SourceError
from qwen_fetch.core.progress import ProgressSink
from qwen_fetch.core.units import format_bytes
from qwen_fetch.net.filetask import DiskFull, FileTask, Ledger, Phase
from qwen_fetch.net.jobs import EngineOptions, FetchJob, FetchOutcome
from qwen_fetch.net.partstate import Leftovers, block_summer, clear_leftovers
from qwen_fetch.net.pools import Pools
from qwen_fetch.net.rangeget import Opened, RangeRequest, Retryable, SourceFailed, body_reader, open_range
from qwen_fetch.net.scheduler import Assignment, Scheduler
from qwen_fetch.store.flocks import LockFolder
from qwen_fetch.store.safefs import clear_odd, is_regular

SAVE_INTERVAL = 1.0  # seconds between resume-state compactions (blocks are journaled as they finish)
COMPACT_AFTER = 512  # journal lines before the snapshot is rewritten
LOCK_POLL = 0.2  # seconds between tries for a lock another process holds
STOP_GRACE = 3.0  # seconds to let connections wind down on cancel
MIN_OPEN = 16  # files open at once, at least (see ``open_limit``)
FDS_PER_FILE = 3  # an open file holds its lock, its partial and its journal


class FetchCancelled(QFError):
    exit_code = ExitCode.INTERRUPTED
    ref = Ref.CANCELLED


def fetch_all(jobs: Sequence[FetchJob], options: EngineOptions, progress: ProgressSink,
              *, cancel: threading.Event | None = None, pools: Pools | None = None) -> list[FetchOutcome]:
    """Fetch every job into its ``dest``, verified; outcomes in job order.

    Raises :class:`IntegrityError` (some file had the wrong bytes on every
    source), :class:`SourceError` (no source could serve some file),
    :class:`DiskFullError` or :class:`FetchCancelled` — always after saving
    the resume state, with partial data kept for the next run.  The caller
    owns ``progress.begin``/``end``; the engine advances it by every byte
    verified on disk, found valid from an earlier run, or reused.  Connections come from ``pools`` (the
    caller's, shared with its sources' API calls), else from pools of its own, closed at the end.
    """
    if pools is None:
        with Pools.for_engine(options) as own:
            return fetch_all(jobs, options, progress, cancel=cancel, pools=own)
    cancel = cancel or threading.Event()
    ledger = Ledger()
    tasks = [FileTask(job, i, options.block_size, ledger, want_roots=options.roots and wants_root(job.size))
             for i, job in enumerate(jobs)]
    sched = Scheduler(tasks, options, progress, cancel)
    workers = [threading.Thread(target=_worker, args=(sched, pools), name=f"qwen-fetch-conn-{i}", daemon=True)
               for i in range(max(1, options.connections))]
    for w in workers:
        w.start()
    try:
        _coordinate(sched, tasks, ledger)
    except BaseException:
        cancel.set()
        raise
    finally:
        with sched.cond:
            sched.stopping = True
            sched.cond.notify_all()
        deadline = time.monotonic() + (STOP_GRACE if cancel.is_set() else options.stall_timeout + 5)
        for w in workers:
            w.join(timeout=max(0.0, deadline - time.monotonic()))
        sched.close()
        for t in tasks:
            try:
                _save(sched, t)
            except OSError:
                pass  # a full disk: the state is only a hint (every block is re-checked on resume)
            finally:
                t.release()
    return _outcomes_or_raise(tasks)


def open_limit(connections: int) -> int:
    """How many files the coordinator keeps open at once: two per connection (so small files, one request
    each, keep every connection busy while the next are prepared), within the process's open-file limit."""
    want = max(MIN_OPEN, 2 * connections)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY:
        want = min(want, max(4, (soft - connections - 64) // FDS_PER_FILE))  # 64: what else the process holds
    return want


class _Folders:
    """One :class:`LockFolder` and one :class:`Leftovers` listing per folder the jobs use (usually one each)."""

    def __init__(self) -> None:
        self._locks: dict[Path, LockFolder] = {}
        self._listed: dict[Path, Leftovers] = {}

    def locks(self, t: FileTask) -> LockFolder:
        folder = t.job.lock.parent
        if folder not in self._locks:
            self._locks[folder] = LockFolder(folder)
        return self._locks[folder]

    def listed(self, t: FileTask) -> Leftovers:
        folder = t.job.partial.parent
        if folder not in self._listed:
            self._listed[folder] = Leftovers(folder)
        return self._listed[folder]


def _coordinate(sched: Scheduler, tasks: list[FileTask], ledger: Ledger) -> None:
    """Admit files into the window in job order, release them as they finish, save block maps.

    Each pass costs the files it admits or releases plus the window, never all files: what
    finished is handed over by the ledger, not found by scanning.
    """
    queue = deque(tasks)  # not tried yet
    busy: list[FileTask] = []  # another process holds their lock: tried again every LOCK_POLL
    window: dict[int, FileTask] = {}  # index -> a file holding its lock
    limit = open_limit(sched.options.connections)
    folders = _Folders()
    last_save = retry_at = time.monotonic()
    while True:
        if sched.cancel.is_set():
            raise FetchCancelled("download cancelled", hint="rerun the same command to resume")
        if busy and time.monotonic() >= retry_at:
            queue.extendleft(reversed(busy))
            busy.clear()
        while queue and len(window) < limit:
            t = queue.popleft()
            if not t.try_lock(folders.locks(t)):
                if not busy:
                    retry_at = time.monotonic() + LOCK_POLL
                busy.append(t)
                continue
            window[t.index] = t
            _prepare(sched, t, folders.listed(t))
            _release_finished(sched, window, ledger)
        with sched.cond:
            if sched.fatal is not None:
                raise _fatal_error(sched.fatal, tasks)
            if not ledger.finished:
                if not window and not queue and not busy:
                    return
                sched.cond.wait(LOCK_POLL)
        _release_finished(sched, window, ledger)
        dirty = any(t.dirty for t in window.values())  # a new ETag or a restart: write it down now
        if dirty or time.monotonic() - last_save >= SAVE_INTERVAL:
            for t in window.values():
                _save(sched, t)
            last_save = time.monotonic()


def _release_finished(sched: Scheduler, window: dict[int, FileTask], ledger: Ledger) -> None:
    """Save and unlock the files that finished or failed, making room in the window."""
    with sched.cond:
        finished = ledger.take_finished()
    for t in finished:
        if window.pop(t.index, None) is not None:
            _save(sched, t)
            t.release()


def _prepare(sched: Scheduler, t: FileTask, listed: Leftovers) -> None:
    """We hold ``t``'s lock: reuse a finished blob, or recover the partial and queue what is missing."""
    job, progress = t.job, sched.progress
    if clear_odd(job.dest):  # a planted link is never taken for the blob: its target may change under us
        progress.note(f"{job.path}: the destination was a symlink or a special file; removed it, fetching again")
    if is_regular(job.dest):
        if job.dest.stat().st_size == job.size:
            clear_leftovers(job.partial, finished=True, listed=listed)  # a run killed between promotion and cleanup
            with sched.cond:
                t.reused, t.phase = True, Phase.DONE
            progress.advance(job.size)
            progress.file_done(str(job.path), "")
            return
        progress.note(f"{job.path}: the cached blob has the wrong size; fetching it again")
        job.dest.unlink()
    clear_leftovers(job.partial, finished=False, listed=listed)
    for note in t.open_partial():
        progress.note(note)
    t.save(sched.cond)
    if not job.locations:
        t.failed_sources.append(("", "no source offers this file"))
        with sched.cond:
            t.phase = Phase.FAILED
        return
    with sched.cond:
        need = t.missing + t.ledger.missing  # this file and every active one
    free = shutil.disk_usage(job.partial.parent).free
    if need > free:
        raise DiskFullError(f"not enough disk space: {format_bytes(need)} still needed, {format_bytes(free)} free",
                            hint="free some space or point the cache elsewhere (HF_HUB_CACHE); "
                                 "partial downloads are kept and resume",
                            context=[f"cache: {job.partial.parent}"])
    progress.advance(t.resumed_bytes)
    with sched.cond:
        t.phase = Phase.ACTIVE
        complete = t.done_count == t.nblocks
        if not complete:
            sched.plan(t)
    if complete:
        sched.finalize(t, t.gen)


def _save(sched: Scheduler, t: FileTask) -> None:
    """Rewrite the state snapshot when it changed in a way the journal cannot say, or to compact it."""
    with sched.cond:
        if t.phase not in (Phase.ACTIVE, Phase.FAILED) or t.fd < 0:
            return
        if not t.dirty and t.journal_lines < COMPACT_AFTER:
            return
    try:
        t.save(sched.cond)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # The save is atomic, so the previous state stays usable; report the full disk through
        # the one error that names the space still needed, not as a bare OSError.
        sched.set_fatal(DiskFull(str(exc)))


# -- connections ---------------------------------------------------------------

def _worker(sched: Scheduler, pools: Pools) -> None:
    while True:
        a = sched.next_assignment()
        if a is None:
            return
        try:
            _run(sched, a, pools)
        except DiskFull as exc:
            sched.set_fatal(exc)
        except Exception as exc:  # a bug: stop everything rather than hang
            sched.set_fatal(exc)


def _run(sched: Scheduler, a: Assignment, pools: Pools) -> None:
    t, o = a.task, sched.options
    with sched.cond:
        if a.gen != t.gen:
            sched.active.remove(a)
            return
        loc = t.location
        req = RangeRequest(a.start + a.head, a.end, t.job.size, t.etag if t.etag_source == loc.source else None)
    begin = a.pos + a.head
    try:
        with open_range(pools, loc, req, connect_timeout=o.request_timeout, stall_timeout=o.stall_timeout) as op:
            if op.ignored_range:
                if not sched.to_stream(a, changed=req.if_range is not None and op.etag != req.if_range,
                                       etag=op.etag):
                    sched.retire(a)  # another connection reads the whole body; do not read it twice
                    return
            else:
                sched.record_etag(a, op.etag)
            _consume(sched, a, op)
    except Retryable as exc:
        sched.requeue(a, exc.reason, exc.retry_after, progressed=a.pos + a.part > begin, throttled=exc.throttled,
                      slow=exc.slow)
    except SourceFailed as exc:
        sched.fail_source(a, exc.reason, integrity=False)
    else:
        sched.retire(a)


def _consume(sched: Scheduler, a: Assignment, op: Opened) -> None:
    """Read the body block by block into one reused buffer; skip blocks already done; stop early if
    the range shrank.  A block's bytes go to disk (and its head to the journal) every ``step_size`` bytes
    as they arrive, the rest when it is complete.  Each ``readinto`` takes what the socket holds (see
    :func:`body_reader`), so the Python work per MiB is a handful of calls whatever the chunking."""
    t = a.task
    size, bs = t.job.size, t.block_size
    step = max(1, sched.options.step_size)
    off = op.offset
    block = off // bs
    keep = sched.wanted(a, block)
    if keep is None:
        return
    readinto = body_reader(op.response)
    rate = sched.options.deadlines.guard(time.monotonic())  # a source that drips fails (TooSlow)
    buf = memoryview(bytearray(min(bs, size)))  # one block, reused: no allocation per block
    received = 0
    filled = off - block * bs  # a request resuming mid-block: the block's first bytes are on disk
    try:
        while True:
            base = block * bs
            view = buf[:min(base + bs, op.end) - base]
            summer = block_summer()
            if keep and filled and not sched.read_head(a, block, view[:filled], summer):
                return  # the file changed course
            a.part = filled if keep else 0
            while filled < len(view):
                n = readinto(view[filled:])  # what the socket holds, up to the rest of the block
                if n == 0:
                    raise Retryable(f"connection closed after {base + filled - op.offset} of "
                                    f"{op.end - op.offset} bytes")
                filled += n
                received += n
                rate.feed(n, time.monotonic())
                if (keep and filled - a.part >= step and filled < len(view)
                        and not sched.write_step(a, block, view, filled, summer)):
                    return  # the file changed course; another assignment owns it now
            off = base + len(view)
            if keep and not sched.commit_block(a, block, view, summer):
                return  # the file changed course; another assignment owns it now
            filled = 0
            if off >= op.end:
                if readinto(buf[:1]):  # a body without Content-Length that runs past the file
                    raise SourceFailed(f"the server sent more than the {op.end - op.offset} bytes it announced")
                return
            if off >= a.end or sched.cancel.is_set() or sched.stopping:
                return
            block += 1
            keep = sched.wanted(a, block)
            if keep is None:
                return  # the file changed course; another assignment owns it now
    finally:
        with sched.cond:
            t.bytes_transferred += received


# -- results ---------------------------------------------------------------------

def _outcomes_or_raise(tasks: list[FileTask]) -> list[FetchOutcome]:
    failed = [t for t in tasks if t.phase is Phase.FAILED]
    if failed:
        context = [f"{t.job.path}: " + "; ".join(f"{src or '-'}: {why}" for src, why in t.failed_sources)
                   for t in failed]
        if any(t.integrity_failure for t in failed):
            raise IntegrityError(f"{len(failed)} file(s) did not match their pinned sha256 on any source",
                                 context=context, reference=Ref.HASH_MISMATCH,
                                 hint="the sources serve other bytes than the lockfile pins: check the pin "
                                      "(qwen-fetch lock) or the mirror; nothing unverified was cached")
        raise SourceError(f"{len(failed)} file(s) could not be fetched from any source", context=context,
                          reference=Ref.FETCH_FAILED,
                          hint="partial data is kept: rerun the same command to resume, or add another "
                               "source in mirrors.yaml / pick one with --source")
    return [FetchOutcome(path=t.job.path, sha256=t.job.sha256, source=t.source,
                         bytes_transferred=t.bytes_transferred, resumed_bytes=t.resumed_bytes,
                         retries=t.retries, reused=t.reused, failed_sources=tuple(t.failed_sources),
                         promoted=t.promoted, root=t.root)
            for t in tasks]


def _fatal_error(exc: BaseException, tasks: list[FileTask]) -> BaseException:
    if isinstance(exc, DiskFull):
        need = sum(t.missing_bytes() if t.sums else t.job.size for t in tasks
                   if t.phase in (Phase.ACTIVE, Phase.WAITING))
        return DiskFullError(f"disk full: {format_bytes(need)} still needed to finish the download",
                             hint="free some space or point the cache elsewhere (HF_HUB_CACHE); "
                                  "partial downloads are kept and resume", context=[str(exc)])
    return exc

