"""The per-blob lock files of one folder, taken with ``flock(2)`` at a few system calls each.

A pull takes a lock for every file twice (to fetch it, then to link it into the
snapshot).  ``filelock.FileLock`` spends many system calls on each acquisition: it
resolves the path component by component, probes whether the folder supports
``flock`` and creates the folder; :func:`qwen_fetch.store.safefs.cache_lock` adds a
``make_dirs`` walk from the root.  For a repo of many small files that was a large
share of a pull.  Here the folder is checked (a real directory below the root) once
per :class:`LockFolder`; each lock is then an ``lstat``, an ``open`` with
``O_NOFOLLOW``, an ``fstat`` and a ``flock``.

These are the locks filelock takes on Unix (``flock`` on a file left in place), so
they exclude ``gc``, other pulls and huggingface_hub exactly as before.  Where the
file system refuses ``flock`` (some network file systems), every lock of the folder
goes through filelock instead, which then falls back to its soft lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qwen_fetch.store.safefs import cache_lock, make_dirs

POLL = 0.05  # seconds between tries of a lock another process holds (filelock's default)
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_BUSY = (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)
_UNSUPPORTED = (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK)


class HeldLock:
    """One lock this process holds; :meth:`release` gives it back (once)."""

    def __init__(self, fd: int = -1, fallback: Any = None) -> None:
        self._fd = fd
        self._fallback = fallback  # a held filelock.FileLock where flock is not supported

    def release(self) -> None:
        if self._fallback is not None:
            self._fallback.release()
            self._fallback = None
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # closing the only descriptor drops the flock


class LockFolder:
    """The lock files of ``folder`` (created, and checked to be real below ``root``, on first use)."""

    def __init__(self, folder: Path, root: Path | None = None) -> None:
        self.folder = folder
        self._root = root
        self._ready = False
        self._flockless = False

    def path(self, name: str) -> Path:
        return self.folder / name

    def _ensure(self) -> None:
        if not self._ready:
            if self._root is not None:
                make_dirs(self._root, self.folder)
            else:
                self.folder.mkdir(parents=True, exist_ok=True)
            self._ready = True

    def try_acquire(self, name: str) -> HeldLock | None:
        """The lock ``name``, without waiting; ``None`` when another holder has it."""
        self._ensure()
        path = os.path.join(self.folder, name)
        while not self._flockless:
            _clear_odd(path)  # a planted link or FIFO is removed, never opened
            fd = os.open(path, _FLAGS, 0o644)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):  # planted between the check and the open
                    os.close(fd)
                    fd = -1
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno in _BUSY:
                        return None
                    if exc.errno not in _UNSUPPORTED:
                        raise
                    self._flockless = True
                    break
                if os.fstat(fd).st_nlink == 0:
                    continue  # unlinked by another process before we locked it: lock the file now there
                held, fd = HeldLock(fd), -1
                return held
            finally:
                if fd >= 0:
                    os.close(fd)
        return self._try_filelock(name)

    def _try_filelock(self, name: str) -> HeldLock | None:
        from filelock import Timeout

        lock = cache_lock(self.path(name), self._root)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return None
        return HeldLock(fallback=lock)

    def acquire(self, name: str) -> HeldLock:
        """The lock ``name``, waiting for it as long as another holder has it."""
        while True:
            held = self.try_acquire(name)
            if held is not None:
                return held
            time.sleep(POLL)

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        held = self.acquire(name)
        try:
            yield
        finally:
            held.release()


def _clear_odd(path: str) -> None:
    """Unlink a link, FIFO, socket or device at ``path`` (never its target); a directory stays (the open fails)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
